"""LogMel against librosa and torchaudio, frame counts, padding, CMVN, level normalisation
(whole utterance and running), old checkpoints, autocast and CUDA, LogMelStream, and
SpecAugment."""

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
    LogMelStream,
    SpecAugment,
    SpecAugmentConfig,
    mel_spectrogram_settings,
    num_frames,
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


LEVELS = {"fixed": {"normalize_level": False}, "utterance": {}, "running": {"level_window_s": 0.2}}


@pytest.mark.parametrize("level", list(LEVELS))
def test_padded_frames_are_zero(level):
    cfg = FeatureConfig(n_mels=40, **LEVELS[level])
    batch, lens, _, _ = batch_and_single(cfg)
    assert lens.tolist() == [round(0.43 * 16000) // 160 + 1, 16000 // 160 + 1]
    assert batch.shape == (2, int(lens.max()), 40)
    assert (batch[0, lens[0] :] == 0).all()
    assert (batch[0, : lens[0]] != 0).any(dim=-1).all()


@pytest.mark.parametrize("level", list(LEVELS))
def test_batched_equals_unbatched_on_valid_frames(level):
    cfg = FeatureConfig(n_mels=40, **LEVELS[level])
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


def test_running_level_makes_features_level_invariant_and_follows_a_change_of_level():
    cfg = FeatureConfig(n_mels=40, level_window_s=0.1)  # 10 hops
    y = torch.from_numpy(tone_and_noise(16000, 0.6, level=0.05))
    lens = torch.tensor([len(y)])
    lm = LogMel(cfg)
    quiet, _ = lm(y[None], lens)
    loud, _ = lm(10 * y[None], lens)
    torch.testing.assert_close(loud, quiet, atol=1e-4, rtol=1e-4)
    # The second half 10x louder: once the window holds only loud audio, the features are
    # those of the steady signal again (one gain for the whole would leave the halves ln(100)
    # apart); just after the step they are still scaled for the quiet audio before it.
    half = len(y) // 2
    stepped = torch.cat((y[:half], 10 * y[half:]))
    feats, _ = lm(stepped[None], lens)
    step = half // cfg.hop_length
    settled = step + 12  # 10 hops after the step, and the STFT's reach
    torch.testing.assert_close(feats[0, settled:], quiet[0, settled:], atol=1e-3, rtol=1e-3)
    assert (feats[0, step + 3] - quiet[0, step + 3]).mean() > 0.5  # 4 loud hops of 10: ln 2.5


@pytest.mark.parametrize(
    ("level", "win_ms", "reach"),
    [("fixed", 25.0, 200), ("running", 25.0, 200), ("fixed", 10.0, 80), ("running", 10.0, 160)],
)
def test_a_frame_depends_on_no_audio_past_its_reach(level, win_ms, reach):
    """Streamable features: frame t reads audio up to t * hop + reach only: the window's right
    half (n_fft 256 holds a 160-sample window 48 samples in: 80 past the centre), and with a
    running level at least the frame's own hop."""
    cfg = FeatureConfig(n_mels=40, win_ms=win_ms, **LEVELS[level])
    lm = LogMel(cfg)
    assert LogMelStream(lm).reach == reach
    y = torch.from_numpy(tone_and_noise(16000, 0.5))
    t = 20
    cut = t * cfg.hop_length + reach
    changed = y.clone()
    changed[cut:] = torch.randn(len(y) - cut)
    a, _ = lm(y[None], torch.tensor([len(y)]))
    b, _ = lm(changed[None], torch.tensor([len(y)]))
    assert torch.equal(a[0, : t + 1], b[0, : t + 1])
    assert not torch.equal(a[0, t + 1], b[0, t + 1])


def stream_features(stream: LogMelStream, y: torch.Tensor, chunk: int) -> torch.Tensor:
    pieces = [stream.accept(y[i : i + chunk]) for i in range(0, len(y), chunk)]
    return torch.cat([*pieces, stream.accept(y[:0], final=True)])


@pytest.mark.parametrize("level", ["fixed", "running"])
@pytest.mark.parametrize("chunk", [1, 37, 160, 1601, 20000])
def test_stream_gives_the_frames_of_the_whole_waveform(level, chunk):
    cfg = FeatureConfig(sample_rate=8000, n_mels=23, **LEVELS[level])
    lm = LogMel(cfg)
    lm.cmvn_mean.copy_(torch.linspace(-3, 3, cfg.n_mels))
    lm.cmvn_std.copy_(torch.linspace(0.5, 2, cfg.n_mels))
    y = torch.from_numpy(tone_and_noise(8000, 0.4 if chunk == 1 else 1.3))
    y *= torch.linspace(0.05, 3.0, len(y))  # a rising level, so the running level matters
    whole, lens = lm(y[None], torch.tensor([len(y)]))
    stream = LogMelStream(lm)
    got = stream_features(stream, y, chunk)
    assert got.shape == whole[0].shape and stream.frames == int(lens[0])
    torch.testing.assert_close(got, whole[0], atol=1e-5, rtol=1e-5)
    stream.reset()  # a second stream gives the same again
    torch.testing.assert_close(stream_features(stream, y, 997), whole[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("level", ["fixed", "running"])
def test_stream_gives_each_frame_as_soon_as_its_audio_is_in(level):
    cfg = FeatureConfig(n_mels=40, **LEVELS[level])
    stream = LogMelStream(LogMel(cfg))
    y = torch.from_numpy(tone_and_noise(16000, 0.3))
    arrivals = []  # samples in when each frame came out
    for i in range(len(y)):
        arrivals += [i + 1] * len(stream.accept(y[i : i + 1]))
    assert arrivals == [t * 160 + stream.reach for t in range(len(arrivals))]
    assert len(arrivals) == (len(y) - stream.reach) // 160 + 1


def test_stream_refuses_whole_utterance_level_normalisation():
    with pytest.raises(ValueError, match=r"level_window_s > 0.*normalize_level false"):
        LogMelStream(LogMel(FeatureConfig(n_mels=40)))


def test_level_window_must_not_be_negative():
    with pytest.raises(ValueError, match="level_window_s"):
        FeatureConfig(level_window_s=-1.0)
    assert FeatureConfig(level_window_s=0.004).level_window_blocks == 1  # at least one hop
    assert FeatureConfig(normalize_level=False, level_window_s=3.0).level_window_blocks == 0


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
