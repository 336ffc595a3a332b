"""LogMel against librosa and torchaudio, frame counts, padding, CMVN, level normalisation,
old checkpoints, autocast and CUDA, and SpecAugment with its frequency warp (VTLP)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
import torchaudio

from asr.features import (
    ChunkedMelSpectrogram,
    FeatureConfig,
    LogMel,
    SpecAugment,
    SpecAugmentConfig,
    hz_to_mel,
    mel_spectrogram_settings,
    mel_to_hz,
    num_frames,
    warp_frequency,
)


def tone_and_noise(rate: int, seconds: float, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """A tone plus a little noise: every mel band has power well above the log floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    x = level * np.sin(2 * np.pi * 440 * t) + 0.05 * level * rng.standard_normal(t.size)
    return x.astype(np.float32)


def pad_batch(wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(w) for w in wavs])
    batch = torch.zeros(len(wavs), int(lens.max()))
    for i, w in enumerate(wavs):
        batch[i, : len(w)] = w
    return batch, lens


@pytest.mark.parametrize(
    "cfg",
    [
        FeatureConfig(normalize_level=False),
        FeatureConfig(normalize_level=False, n_mels=40, f_min=20.0, f_max=7600.0),
        FeatureConfig(sample_rate=8000, n_mels=23, normalize_level=False),
    ],
    ids=["default", "40mel-band-limited", "8k"],
)
def test_log_mel_matches_librosa(cfg):
    y = tone_and_noise(cfg.sample_rate, 0.7)
    ref = librosa.feature.melspectrogram(
        y=y,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.win_length,
        window="hann",
        center=True,
        pad_mode="constant",  # zero edges, as LogMel pads (so batching cannot change them)
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=True,
        norm=None,
    )  # (n_mels, T)
    feats, lens = LogMel(cfg)(torch.from_numpy(y)[None], torch.tensor([len(y)]))
    ours = feats[0].numpy().T  # (n_mels, T)
    assert ours.shape == ref.shape
    assert lens.tolist() == [ref.shape[1]]
    not_tiny = ref > 1e-6
    assert not_tiny.mean() > 0.99
    np.testing.assert_allclose(ours[not_tiny], np.log(ref[not_tiny]), atol=1e-3)


def test_fft_sizes():
    cfg = FeatureConfig()
    assert (cfg.win_length, cfg.hop_length, cfg.n_fft) == (400, 160, 512)
    cfg = FeatureConfig(sample_rate=8000)
    assert (cfg.win_length, cfg.hop_length, cfg.n_fft) == (200, 80, 256)


@pytest.mark.parametrize("num_samples", [1, 159, 160, 257, 479, 480, 481, 8000, 8123])
def test_shape_is_samples_over_hop_plus_one(num_samples):
    cfg = FeatureConfig(n_mels=40)
    wav = torch.from_numpy(tone_and_noise(cfg.sample_rate, num_samples / cfg.sample_rate))
    assert len(wav) == num_samples
    feats, lens = LogMel(cfg)(wav[None], torch.tensor([num_samples]))
    expected = num_samples // cfg.hop_length + 1
    assert feats.shape == (1, expected, 40)
    assert lens.tolist() == [expected]
    assert num_frames(torch.tensor([num_samples]), cfg.hop_length).tolist() == [expected]


def batch_and_single(cfg: FeatureConfig):
    short = torch.from_numpy(tone_and_noise(cfg.sample_rate, 0.43, seed=1, level=0.2))
    long = torch.from_numpy(tone_and_noise(cfg.sample_rate, 1.0, seed=2, level=0.5))
    lm = LogMel(cfg)
    # A non-trivial CMVN, so "padded frames are zero" cannot hold by accident.
    lm.cmvn_mean.copy_(torch.linspace(-3, 3, cfg.n_mels))
    lm.cmvn_std.copy_(torch.linspace(0.5, 2, cfg.n_mels))
    wavs, wav_lens = pad_batch([short, long])
    batch, batch_lens = lm(wavs, wav_lens)
    single, single_lens = lm(short[None], torch.tensor([len(short)]))
    return batch, batch_lens, single, single_lens


@pytest.mark.parametrize(("normalize_level", "utterance_cmn"), [(False, False), (True, True)])
def test_padded_frames_are_zero(normalize_level, utterance_cmn):
    cfg = FeatureConfig(n_mels=40, normalize_level=normalize_level, utterance_cmn=utterance_cmn)
    batch, lens, _, _ = batch_and_single(cfg)
    assert lens.tolist() == [round(0.43 * 16000) // 160 + 1, 16000 // 160 + 1]
    assert batch.shape == (2, int(lens.max()), 40)
    assert (batch[0, lens[0] :] == 0).all()
    assert (batch[0, : lens[0]] != 0).any(dim=-1).all()


@pytest.mark.parametrize(
    ("normalize_level", "utterance_cmn"), [(False, False), (True, False), (True, True)]
)
def test_batched_equals_unbatched_on_valid_frames(normalize_level, utterance_cmn):
    cfg = FeatureConfig(n_mels=40, normalize_level=normalize_level, utterance_cmn=utterance_cmn)
    batch, lens, single, single_lens = batch_and_single(cfg)
    n = int(single_lens[0])
    assert int(lens[0]) == n == single.shape[1]
    torch.testing.assert_close(batch[0, :n], single[0], atol=1e-4, rtol=1e-4)


def test_fit_cmvn_standardises_the_data_it_saw():
    cfg = FeatureConfig(n_mels=40)
    lm = LogMel(cfg)
    rng = np.random.default_rng(0)
    batches = []
    for b in range(3):
        wavs = [
            torch.from_numpy(tone_and_noise(16000, rng.uniform(0.2, 0.8), seed=10 * b + i))
            for i in range(3)
        ]
        batches.append(pad_batch(wavs))
    frames = lm.fit_cmvn(batches)
    assert frames == sum(int(num_frames(lens, cfg.hop_length).sum()) for _, lens in batches)
    valid = []
    for wavs, lens in batches:
        feats, frame_lens = lm(wavs, lens)
        mask = torch.arange(feats.shape[1])[None] < frame_lens[:, None]
        valid.append(feats[mask])
    x = torch.cat(valid).double()  # (N, n_mels)
    assert x.shape == (frames, 40)
    torch.testing.assert_close(x.mean(0), torch.zeros(40, dtype=torch.float64), atol=1e-3, rtol=0)
    torch.testing.assert_close(
        x.std(0, correction=0), torch.ones(40, dtype=torch.float64), atol=1e-3, rtol=0
    )


CONFIGS = [
    FeatureConfig(),
    FeatureConfig(n_mels=40, f_min=20.0, f_max=7600.0),
    FeatureConfig(sample_rate=8000, n_mels=23),
    FeatureConfig(n_mels=3),  # fewer filters than filterbank bands
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "40mel-band-limited", "8k", "3mel"])
@pytest.mark.parametrize("chunk_frames", [1, 7, 2048])
def test_chunked_mel_equals_torchaudio(cfg, chunk_frames):
    mel = ChunkedMelSpectrogram(cfg)
    mel.CHUNK_FRAMES = chunk_frames  # 1: more rows than a chunk holds; 7: a ragged last chunk
    rate = cfg.sample_rate
    wavs, _ = pad_batch(
        [torch.from_numpy(tone_and_noise(rate, s, seed=i)) for i, s in enumerate([0.31, 0.5, 0.02])]
    )
    ours = mel(wavs)
    reference = torchaudio.transforms.MelSpectrogram.forward(mel, wavs)  # torch.stft, dense fb
    assert ours.shape == reference.shape == (3, cfg.n_mels, wavs.shape[1] // cfg.hop_length + 1)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6 * float(reference.max()))


@pytest.mark.parametrize("chunk_frames", [1, 7, 2048])
def test_chunked_mel_leaves_out_padded_frames_only(chunk_frames):
    """Given frame counts, each row's own frames are torchaudio's, whatever the order of
    lengths in the batch and however chunks fall across row ends; chunks wholly past a row's
    end are not computed (0)."""
    cfg = FeatureConfig()
    mel = ChunkedMelSpectrogram(cfg)
    mel.CHUNK_FRAMES = chunk_frames
    rate = cfg.sample_rate
    seconds = [0.2, 0.61, 0.02, 0.45]  # unsorted
    wavs, wav_lens = pad_batch(
        [torch.from_numpy(tone_and_noise(rate, s, seed=i)) for i, s in enumerate(seconds)]
    )
    frame_lens = num_frames(wav_lens, cfg.hop_length)
    ours = mel(wavs, frame_lens)  # (B, n_mels, T)
    assert ours.shape == mel(wavs).shape
    for row, n in enumerate(frame_lens.tolist()):
        alone = torchaudio.transforms.MelSpectrogram.forward(
            mel, wavs[row : row + 1, : wav_lens[row]]
        )
        torch.testing.assert_close(
            ours[row, :, :n], alone[0], rtol=1e-5, atol=1e-6 * float(alone.max())
        )
        # a chunk is at most chunk_frames long: none after the one holding the last frame
        assert not ours[row, :, n - 1 + chunk_frames :].any()


def test_chunked_mel_takes_its_bands_from_a_loaded_filterbank():
    cfg = FeatureConfig(n_mels=40)
    mel = ChunkedMelSpectrogram(cfg)
    state = mel.state_dict()
    state["mel_scale.fb"] = torch.rand_like(state["mel_scale.fb"])  # nonzero everywhere
    mel.load_state_dict(state)
    wavs = torch.from_numpy(tone_and_noise(cfg.sample_rate, 0.3))[None]
    reference = torchaudio.transforms.MelSpectrogram.forward(mel, wavs)
    torch.testing.assert_close(mel(wavs), reference, rtol=1e-5, atol=0)


def test_old_checkpoints_load_and_give_the_same_features():
    """Checkpoints saved when LogMel held a plain torchaudio MelSpectrogram."""
    cfg = FeatureConfig(n_mels=40, normalize_level=False)
    old = torchaudio.transforms.MelSpectrogram(**mel_spectrogram_settings(cfg))
    state = {f"mel.{k}": v for k, v in old.state_dict().items()}
    state |= {"cmvn_mean": torch.linspace(-3, 3, 40), "cmvn_std": torch.linspace(0.5, 2, 40)}
    lm = LogMel(cfg)
    assert set(lm.state_dict()) == set(state)
    lm.load_state_dict(state)  # strict
    y = torch.from_numpy(tone_and_noise(cfg.sample_rate, 0.6))
    feats, _ = lm(y[None], torch.tensor([len(y)]))
    log_mel = old(y[None]).clamp(min=1e-10).log().transpose(1, 2)  # (1, T, n_mels)
    expected = (log_mel - state["cmvn_mean"]) / state["cmvn_std"]
    torch.testing.assert_close(feats, expected, atol=1e-4, rtol=0)


def autocast_dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if device == "cpu" else torch.float16


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
        ),
    ],
)
def test_features_in_float32_under_autocast_and_on_each_device(device):
    cfg = FeatureConfig(n_mels=40)
    wavs, lens = pad_batch(
        [torch.from_numpy(tone_and_noise(16000, s, seed=i)) for i, s in enumerate([0.7, 0.25])]
    )
    on_cpu, cpu_lens = LogMel(cfg)(wavs, lens)
    lm = LogMel(cfg).to(device)
    with torch.autocast(device, dtype=autocast_dtype(device)):
        feats, frame_lens = lm(wavs.to(device), lens.to(device))
    assert feats.dtype == torch.float32
    assert torch.equal(frame_lens.cpu(), cpu_lens)
    # Another FFT library on the GPU: close, not equal.
    torch.testing.assert_close(feats.cpu(), on_cpu, atol=1e-3 if device == "cuda" else 1e-5, rtol=0)


def test_fit_cmvn_without_frames_raises():
    with pytest.raises(ValueError, match="no frames"):
        LogMel(FeatureConfig(n_mels=40)).fit_cmvn([])


def test_normalize_level_makes_features_level_invariant():
    y = torch.from_numpy(tone_and_noise(16000, 0.5, level=0.05))
    lens = torch.tensor([len(y)])
    lm = LogMel(FeatureConfig(n_mels=40, normalize_level=True))
    quiet, _ = lm(y[None], lens)
    loud, _ = lm(10 * y[None], lens)
    torch.testing.assert_close(loud, quiet, atol=1e-4, rtol=1e-4)
    # Without it, 10x the amplitude is 100x the power: log-mel rises by ln(100) everywhere.
    lm = LogMel(FeatureConfig(n_mels=40, normalize_level=False))
    quiet, _ = lm(y[None], lens)
    loud, _ = lm(10 * y[None], lens)
    torch.testing.assert_close(loud - quiet, torch.full_like(quiet, np.log(100)), atol=1e-3, rtol=0)


def test_utterance_cmn_zeroes_each_utterances_mean_and_removes_a_fixed_channel():
    short = torch.from_numpy(tone_and_noise(16000, 0.43, seed=1, level=0.2))
    long = torch.from_numpy(tone_and_noise(16000, 1.0, seed=2, level=0.5))
    lm = LogMel(FeatureConfig(n_mels=40, utterance_cmn=True))
    feats, lens = lm.raw(*pad_batch([short, long]))
    for row, n in zip(feats, lens.tolist(), strict=True):
        torch.testing.assert_close(row[:n].mean(0), torch.zeros(40), atol=1e-4, rtol=0)
    # A first-order high-pass (y[n] - 0.9 y[n-1], 20 dB down at 0 Hz) multiplies each band's
    # power by about |H(f)|^2: an offset per band in log-mel, which the utterance's mean takes out.
    filtered = torch.cat([long[:1], long[1:] - 0.9 * long[:-1]])
    lens = torch.tensor([len(long)])
    for cmn, low, high in [(False, 1.5, 10.0), (True, 0.0, 0.1)]:
        lm = LogMel(FeatureConfig(n_mels=40, utterance_cmn=cmn))
        gap = (lm(filtered[None], lens)[0] - lm(long[None], lens)[0]).abs().mean()
        assert low <= gap <= high, (cmn, gap)


def spec_augment_input() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(6, 200, 80) + 1.0  # (B, T, F), nowhere zero


def test_spec_augment_eval_is_identity():
    x = spec_augment_input()
    sa = SpecAugment(SpecAugmentConfig()).eval()
    assert torch.equal(sa(x), x)


def test_spec_augment_train_masks_whole_bands_and_frames_with_zero():
    cfg = SpecAugmentConfig(freq_masks=2, freq_width=10, time_masks=2, time_width=20)
    x = spec_augment_input()
    sa = SpecAugment(cfg).train()
    torch.manual_seed(1)
    y = sa(x)
    assert y.shape == x.shape
    assert not torch.equal(y, x)
    assert ((y == x) | (y == 0)).all()  # values are kept or zeroed, never altered
    zero = y == 0
    zero_bands = zero.all(dim=1)  # (B, F): a frequency mask covers every frame
    zero_frames = zero.all(dim=2)  # (B, T): a time mask covers every channel
    explained = zero_bands[:, None, :] | zero_frames[:, :, None]
    assert torch.equal(zero, explained)  # every zero belongs to a whole band or frame
    max_frames = cfg.time_masks * min(cfg.time_width, cfg.time_max_ratio * x.shape[1])
    assert (zero_bands.sum(1) <= cfg.freq_masks * cfg.freq_width).all()
    assert (zero_frames.sum(1) <= max_frames).all()
    # Masks are drawn per utterance.
    assert len({tuple(m.nonzero().flatten().tolist()) for m in zero_bands}) > 1


def test_spec_augment_with_no_masks_is_identity_in_train_mode():
    x = spec_augment_input()
    sa = SpecAugment(SpecAugmentConfig(freq_masks=0, time_masks=0)).train()
    assert torch.equal(sa(x), x)


def tone_features(cfg: FeatureConfig, hz: float) -> torch.Tensor:
    """(1, 50, n_mels) log-mel of a pure tone at `hz`: one peak, at the filter nearest `hz`."""
    t = torch.arange(cfg.sample_rate // 2) / cfg.sample_rate
    wav = (0.3 * torch.sin(2 * torch.pi * hz * t))[None]
    feats, _ = LogMel(cfg).raw(wav, torch.tensor([wav.shape[1]]))
    return feats[:, :50]


def test_mel_scale_round_trip_and_torchaudio_filter_centres():
    hz = torch.tensor([0.0, 440.0, 1000.0, 8000.0], dtype=torch.float64)
    assert torch.allclose(mel_to_hz(hz_to_mel(hz)), hz)
    # Filter m of torchaudio's filterbank peaks at the bin nearest centre m, as warp_frequency
    # assumes: centres equally spaced in HTK mel between the edges.
    cfg = FeatureConfig(n_mels=40)
    fb = LogMel(cfg).mel.mel_scale.fb  # (n_fft // 2 + 1, n_mels)
    lo, hi = hz_to_mel(torch.tensor(0.0)), hz_to_mel(torch.tensor(8000.0))
    centres = mel_to_hz(lo + (hi - lo) / 41 * torch.arange(1, 41))
    bin_hz = cfg.sample_rate / cfg.n_fft
    assert (fb.argmax(0) - (centres / bin_hz).round()).abs().max() <= 1


def test_frequency_warp_moves_a_tone_by_the_factor_and_keeps_the_top_edge():
    cfg = FeatureConfig(n_mels=80)
    feats = tone_features(cfg, 1000.0)
    peak = int(feats[0, 10].argmax())
    same = warp_frequency(feats, torch.tensor([1.0]), cfg, boundary=0.6)
    assert torch.allclose(same, feats, atol=1e-5)
    for factor in (0.9, 1.1):
        warped = warp_frequency(feats, torch.tensor([factor]), cfg, boundary=0.6)
        moved = int(warped[0, 10].argmax())
        # Channel f reads frequency factor * f: the 1000 Hz peak now sits at 1000 / factor.
        expected = int(tone_features(cfg, 1000.0 / factor)[0, 10].argmax())
        assert abs(moved - expected) <= 1 and moved != peak, (factor, peak, moved, expected)
        # The top filter reads (about) itself: the edge stays put.
        assert torch.allclose(warped[..., -1], feats[..., -1], atol=0.5)


def test_spec_augment_warp_is_per_utterance_and_keeps_padding_zero():
    cfg = SpecAugmentConfig(freq_masks=0, time_masks=0, freq_warp=0.1)
    features = FeatureConfig(n_mels=80)
    x = spec_augment_input()
    x[0, 150:] = 0  # padded frames of a shorter utterance
    sa = SpecAugment(cfg, features).train()
    torch.manual_seed(2)
    y = sa(x)
    assert y.shape == x.shape
    assert (y[0, 150:] == 0).all()
    # Each output is a blend of two neighbouring channels of its input, so stays in its range.
    assert (y[:, :150] >= 1.0 - 1e-6).all() and (y <= 2.0 + 1e-6).all()
    # One factor per utterance: its own warp reproduces it, and the utterances differ.
    torch.manual_seed(2)
    factors = torch.empty(6).uniform_(0.9, 1.1)
    assert torch.allclose(y, warp_frequency(x, factors, features, boundary=0.6))
    assert len({round(f, 6) for f in factors.tolist()}) == 6
    assert torch.equal(sa.eval()(x), x)


def test_spec_augment_warp_refuses_bad_settings():
    with pytest.raises(ValueError, match="needs the feature settings"):
        SpecAugment(SpecAugmentConfig(freq_warp=0.1))
    with pytest.raises(ValueError, match=r"freq_warp must be in \[0, 1\)"):
        SpecAugment(SpecAugmentConfig(freq_warp=1.5), FeatureConfig())
