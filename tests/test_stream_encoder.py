"""StreamingEncoder: a left-to-right model's log-probs over audio in pieces equal its offline
log-probs (within 1e-4, the same greedy text) for any chunking; frames come out as soon as the
audio they depend on is in; bidirectional and whole-utterance-level models are refused; a small
left-to-right model with a lookahead learns, and streams as it transcribes offline."""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.audio import load_audio
from asr.checkpoint import load_checkpoint, save_checkpoint
from asr.config import load_config
from asr.data import read_manifest
from asr.decoding.greedy import GreedyDecoder
from asr.features import FeatureConfig
from asr.model import ModelConfig, Recogniser
from asr.stream.encoder import StreamingEncoder
from asr.tokenizers import CharTokenizer
from asr.transcribe import Transcriber
from tests.conftest import TEXTS, tiny_overrides

SAMPLE_RATE = 16000
TOLERANCE = 1e-4
# chunk sizes in samples: one sample (on a short signal), 10 ms, 37 ms, 100 ms, 320 ms, all
CHUNKS = {"1-sample": 1, "10ms": 160, "37ms": 592, "100ms": 1600, "320ms": 5120, "whole": None}
LEVELS = {"fixed": {"normalize_level": False}, "running": {"level_window_s": 0.3}}
TOKENIZER = CharTokenizer.from_texts(TEXTS)


def signal_of(seconds: float, seed: int = 0) -> np.ndarray:
    """(S,) float32: a rising tone and noise whose level climbs from -46 to -10 dBFS."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * (200 + 1500 * t / seconds) * t) + 0.3 * rng.standard_normal(t.size)
    return (tone * np.geomspace(0.005, 0.3, t.size)).astype(np.float32)


@functools.cache
def random_model(
    rnn_type: str = "gru",
    subsample: int = 2,
    lookahead: int = 0,
    level: str = "fixed",
    conv_channels: int = 4,
) -> Recogniser:
    """A left-to-right recogniser with random weights (a random lookahead too), CMVN from the
    test signal, and its recurrent and output weights scaled up so that the best unit changes
    from frame to frame (greedy decoding gives varied text)."""
    torch.manual_seed(0)
    features = FeatureConfig(sample_rate=SAMPLE_RATE, n_mels=20, **LEVELS[level])
    model_cfg = ModelConfig(
        n_mels=20,
        vocab_size=TOKENIZER.vocab_size,
        subsample=subsample,
        conv_channels=conv_channels,
        rnn_type=rnn_type,
        hidden_size=16,
        num_layers=2,
        bidirectional=False,
        lookahead_frames=lookahead,
    )
    model = Recogniser(features, model_cfg)
    wav = torch.from_numpy(signal_of(1.0))
    model.features.fit_cmvn([(wav[None], torch.tensor([len(wav)]))])
    with torch.no_grad():
        for name, weight in model.acoustic.rnn.named_parameters():
            if name.startswith("weight"):
                weight.mul_(6.0)
        model.acoustic.output.weight.mul_(4.0)
        if lookahead:
            model.acoustic.lookahead.weight.normal_()
    return model.eval()


def offline(model: Recogniser, wav: np.ndarray) -> torch.Tensor:
    """The model's log-probs of the whole signal at once: (T', V)."""
    with torch.no_grad():
        log_probs, lengths = model(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
    return log_probs[0, : lengths[0]]


def streamed(encoder: StreamingEncoder, wav: np.ndarray, chunk: int | None) -> torch.Tensor:
    """The encoder's log-probs of the signal fed `chunk` samples at a time, then flushed."""
    chunk = chunk or len(wav)
    pieces = [encoder.accept(wav[i : i + chunk]) for i in range(0, len(wav), chunk)]
    return torch.cat([*pieces, encoder.flush()])


def greedy_text(log_probs: torch.Tensor, tokenizer=TOKENIZER) -> str:
    lengths = torch.tensor([len(log_probs)])
    (hyp,) = GreedyDecoder(tokenizer).decode(log_probs[None], lengths)[0]
    return hyp.text


def assert_streams_as_offline(
    model: Recogniser, wav: np.ndarray, chunk: int | None
) -> torch.Tensor:
    """Streamed log-probs within TOLERANCE of offline, the same greedy text; returns the
    offline log-probs."""
    expected = offline(model, wav)
    encoder = StreamingEncoder(model)
    got = streamed(encoder, wav, chunk)
    assert got.shape == expected.shape and encoder.frames_emitted == len(expected)
    assert (got - expected).abs().max() <= TOLERANCE
    assert greedy_text(got) == greedy_text(expected)
    return expected


@pytest.mark.parametrize("chunk", list(CHUNKS))
@pytest.mark.parametrize("lookahead", [0, 3])
@pytest.mark.parametrize("subsample", [1, 2, 4])
@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_streamed_equals_offline(rnn_type, subsample, lookahead, chunk):
    model = random_model(rnn_type, subsample, lookahead, level="running" if lookahead else "fixed")
    wav = signal_of(0.2 if chunk == "1-sample" else 1.3, seed=1)
    expected = assert_streams_as_offline(model, wav, CHUNKS[chunk])
    if chunk != "1-sample":  # (the short signal's frames are few)
        # The best unit changes from frame to frame: the comparison of texts means something.
        assert len(expected.argmax(-1).unique()) >= 2


@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize("chunk", ["1-sample", "37ms", "whole"])
def test_streamed_equals_offline_without_front_end_and_for_each_level(level, chunk):
    model = random_model("gru", subsample=1, lookahead=2, level=level, conv_channels=0)
    wav = signal_of(0.2 if chunk == "1-sample" else 1.3, seed=2)
    assert_streams_as_offline(model, wav, CHUNKS[chunk])


@pytest.mark.parametrize(("subsample", "lookahead"), [(1, 0), (2, 0), (2, 3), (4, 1)])
def test_each_frame_comes_out_as_soon_as_its_audio_is_in(subsample, lookahead):
    """Frame j (span [j, j + 1) frames) comes out once the audio reaches lookahead_seconds past
    its end: the STFT window's right half, a frame per conv layer, the lookahead's frames."""
    encoder = StreamingEncoder(random_model("gru", subsample, lookahead, "running"))
    frame = subsample * 160
    # Past frame j's span, the audio up to the centre of the last feature frame it reads, and
    # the STFT window's 200 samples past that centre: feature frame j + 2 at subsample 1 (one
    # frame per stride-1 conv layer: 1 hop past the span), 2 j + 3 at subsample 2 (1 hop
    # past), 4 j + 3 at subsample 4 (1 hop before its end); then the lookahead's frames.
    centre = {1: 160, 2: 160, 4: -160}[subsample]
    expected = (centre + 200 + lookahead * frame) / SAMPLE_RATE
    assert encoder.lookahead_seconds == pytest.approx(expected)
    wav = signal_of(0.25, seed=3)
    arrivals = []  # samples in when each frame came out
    for i in range(len(wav)):
        arrivals += [i + 1] * len(encoder.accept(wav[i : i + 1]))
    delay = round(encoder.lookahead_seconds * SAMPLE_RATE)
    assert arrivals == [(j + 1) * frame + delay for j in range(len(arrivals))]
    assert len(arrivals) == (len(wav) - delay) // frame


def test_reset_starts_a_new_stream_and_flush_ends_one():
    model = random_model("lstm", 2, 2, "running")
    wav = signal_of(0.7, seed=4)
    encoder = StreamingEncoder(model)
    first = streamed(encoder, wav, 592)
    assert len(encoder.flush()) == 0  # nothing more after the end
    with pytest.raises(RuntimeError, match="reset"):
        encoder.accept(wav[:160])
    encoder.reset()
    assert encoder.frames_emitted == 0
    torch.testing.assert_close(streamed(encoder, wav, 1600), first, atol=1e-5, rtol=0)
    # Mid-stream reset: the audio before it leaves no trace.
    encoder.reset()
    encoder.accept(signal_of(0.3, seed=5))
    encoder.reset()
    torch.testing.assert_close(streamed(encoder, wav, 160), first, atol=1e-5, rtol=0)


def test_samples_as_a_tensor_or_a_column_and_bad_shapes_refused():
    model = random_model()
    wav = signal_of(0.5)
    expected = offline(model, wav)
    encoder = StreamingEncoder(model)
    got = torch.cat(
        [encoder.accept(torch.from_numpy(wav[:3000])), encoder.accept(wav[3000:, None])]
    )
    got = torch.cat([got, encoder.flush()])
    assert (got - expected).abs().max() <= TOLERANCE
    encoder.reset()
    with pytest.raises(ValueError, match=r"expected \(S,\) mono samples, got shape \(100, 2\)"):
        encoder.accept(np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="expected float samples"):
        encoder.accept(np.zeros(100, np.int16))


def save_model(path: Path, model: Recogniser) -> Path:
    state = {
        "config": {
            "features": asdict(model.features.cfg),
            "model": asdict(model.acoustic.cfg),
        },
        "tokenizer": TOKENIZER.state_dict(),
        "model": model.state_dict(),
    }
    save_checkpoint(path, state)
    return path


def test_from_checkpoint_path_or_loaded_state(tmp_path):
    model = random_model("gru", 4, 2, "running")
    path = save_model(tmp_path / "m.pt", model)
    wav = signal_of(0.9, seed=6)
    expected = offline(model, wav)
    for source in (path, str(path), load_checkpoint(path)):
        encoder = StreamingEncoder.from_checkpoint(source)
        assert encoder.sample_rate == SAMPLE_RATE and encoder.frame_seconds == pytest.approx(0.04)
        assert encoder.tokenizer.vocab_size == TOKENIZER.vocab_size
        assert (streamed(encoder, wav, 592) - expected).abs().max() <= TOLERANCE


def test_a_bidirectional_model_is_refused_with_the_way_to_stream_it(tmp_path):
    cfg = ModelConfig(n_mels=20, vocab_size=TOKENIZER.vocab_size, hidden_size=8, num_layers=1)
    model = Recogniser(FeatureConfig(n_mels=20, normalize_level=False), cfg)
    message = "the model is bidirectional: stream it with re-decoding (StreamingRecognizer)"
    with pytest.raises(ValueError) as err:
        StreamingEncoder(model)
    assert str(err.value) == message
    path = save_model(tmp_path / "bi.pt", model)
    with pytest.raises(ValueError) as err:
        StreamingEncoder.from_checkpoint(path)
    assert str(err.value) == f"{path}: {message}"


def test_whole_utterance_level_normalisation_is_refused(tmp_path):
    model = Recogniser(FeatureConfig(n_mels=20), random_model().acoustic.cfg)
    path = save_model(tmp_path / "utt.pt", model)
    with pytest.raises(ValueError, match=f"{path}: its features scale each utterance") as err:
        StreamingEncoder.from_checkpoint(path)
    assert "level_window_s > 0" in str(err.value) and "normalize_level false" in str(err.value)


@pytest.mark.slow
def test_a_trained_left_to_right_model_learns_and_streams_as_it_transcribes(
    tone_manifest: Path, tmp_path: Path
):
    from asr.training.trainer import train

    cfg = load_config(
        None,
        [
            *tiny_overrides(tone_manifest),
            "features.level_window_s=3.0",
            "model.bidirectional=false",
            "model.lookahead_frames=4",
            "model.subsample=2",
            "model.conv_channels=8",
            "model.num_layers=1",
            "train.epochs=80",
            "train.validate_every_epochs=80",
            "train.spec_augment=false",
        ],
    )
    result = train(cfg, tmp_path / "exp")
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.2 * first, (first, last)
    best = tmp_path / "exp" / "best.pt"
    transcriber = Transcriber.from_checkpoint(best, device="cpu")
    encoder = StreamingEncoder.from_checkpoint(best)
    utts = read_manifest(tone_manifest)
    right = 0
    for i, utt in enumerate(utts):
        text = transcriber.transcribe(utt.audio_filepath)
        right += text == utt.text
        wav = load_audio(utt.audio_filepath, encoder.sample_rate).numpy()
        expected = offline(encoder.model, wav)
        encoder.reset()
        got = streamed(encoder, wav, [80, 296, 800][i % 3])  # 10, 37, 100 ms at 8 kHz
        assert (got - expected).abs().max() <= TOLERANCE
        assert greedy_text(got, encoder.tokenizer) == greedy_text(expected, encoder.tokenizer)
        assert greedy_text(got, encoder.tokenizer) == text
    assert right >= len(utts) - 1, right
