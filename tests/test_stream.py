"""Live streaming recognition (asr.stream): finals equal to offline transcripts of the same
audio whatever the chunking, partials that only grow until the final replaces them, both modes
(re-decoding for a bidirectional model, incremental for a left-to-right one), and
`asr transcribe --stream`."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.cli import main
from asr.features import FeatureConfig
from asr.model import ModelConfig, Recogniser
from asr.segmenter import SegmenterConfig
from asr.stream import StreamingRecognizer, StreamResult
from asr.stream.endpoint import StreamingVad
from asr.stream.recognizer import as_float_samples
from asr.tokenizers import CharTokenizer
from asr.transcribe import Transcriber
from tests.conftest import make_tone_corpus, tiny_overrides, tone_utterance
from tests.serve_fixtures import RATE, tiny_model

SAID = ["abc", "cab", "a b", "bca"]  # the stream's utterances, in order


def noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    return (0.003 * rng.standard_normal(int(seconds * RATE))).astype(np.float32)


def spoken_stream(texts: list[str], pause: float = 0.9, seed: int = 1) -> np.ndarray:
    """(S,) float32 at RATE: tone utterances of `texts` after 0.3 s of noise, each followed by
    `pause` seconds of noise."""
    rng = np.random.default_rng(seed)
    pieces = [noise(0.3, rng)]
    for text in texts:
        pieces += [tone_utterance(text, RATE, rng), noise(pause, rng)]
    return np.concatenate(pieces)


def run(
    recognizer: StreamingRecognizer, audio: np.ndarray, chunk_seconds: float
) -> tuple[list[StreamResult], list[tuple[str, str]]]:
    """Feed `audio` in chunks -> (finals, events); events are ("partial", text) after each
    chunk without a final and ("final", text) for each final, in order."""
    step = max(1, round(chunk_seconds * recognizer.sample_rate))
    finals: list[StreamResult] = []
    events: list[tuple[str, str]] = []
    for i in range(0, len(audio), step):
        if recognizer.accept_waveform(audio[i : i + step]):
            finals.append(recognizer.final())
            events.append(("final", finals[-1].text))
        else:
            events.append(("partial", recognizer.partial()))
    for result in recognizer.finish():
        finals.append(result)
        events.append(("final", result.text))
    return finals, events


def span(audio: np.ndarray, result: StreamResult) -> np.ndarray:
    return audio[round(result.start * RATE) : round(result.end * RATE)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The tiny bidirectional model the serve tests share (trained once per process)."""
    return tiny_model(tmp_path_factory).checkpoint


@pytest.fixture(scope="module")
def transcriber(checkpoint) -> Transcriber:
    return Transcriber.from_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def stream() -> np.ndarray:
    return spoken_stream(SAID)


@pytest.fixture(scope="module")
def redecoded(checkpoint, stream) -> tuple[list[StreamResult], list[tuple[str, str]]]:
    return run(StreamingRecognizer.from_checkpoint(checkpoint), stream, 0.1)


def test_redecode_finals_equal_offline_transcripts_of_their_segments(
    checkpoint, transcriber, stream, redecoded
):
    assert StreamingRecognizer.from_checkpoint(checkpoint).mode == "redecode"
    finals, _ = redecoded
    assert len(finals) == len(SAID)  # one segment per utterance, cut in the pauses
    ends = [0.0]
    for result in finals:
        assert result.text == transcriber.transcribe(span(stream, result), RATE)
        assert result.start >= ends[-1] and result.end > result.start
        ends.append(result.end)
        assert [w.word for w in result.words] == result.text.split()
        for w in result.words:
            assert result.start <= w.start < w.end <= result.end and 0 < w.conf <= 1
    # the words are timed from the stream's start: the segment's own words, shifted
    rec = transcriber.recognise_batch(
        torch.from_numpy(span(stream, finals[1]))[None],
        torch.tensor([len(span(stream, finals[1]))]),
        True,
    )[0]
    assert [round(w.start + finals[1].start, 6) for w in rec.words] == [
        round(w.start, 6) for w in finals[1].words
    ]


def test_chunk_sizes_of_10_100_and_320_ms_give_the_same_finals(checkpoint, stream, redecoded):
    expected = [asdict(r) for r in redecoded[0]]
    for chunk in (0.01, 0.32):
        finals, _ = run(StreamingRecognizer.from_checkpoint(checkpoint), stream, chunk)
        assert [asdict(r) for r in finals] == expected


def partials_only_grow(events: list[tuple[str, str]]) -> list[str]:
    """Check that within each segment every partial extends the one before; -> the partials."""
    shown, partials = "", []
    for kind, text in events:
        if kind == "final":
            shown = ""
            continue
        assert text.startswith(shown), f"partial {text!r} after {shown!r}"
        shown = text
        partials.append(text)
    return partials


def test_partials_only_extend_until_the_final_replaces_them(redecoded):
    partials = partials_only_grow(redecoded[1])
    assert any(partials)  # partials were shown while the utterances were spoken


def test_reset_starts_a_new_stream(checkpoint, stream, redecoded):
    recognizer = StreamingRecognizer.from_checkpoint(checkpoint)
    run_part = stream[: int(1.7 * RATE)]
    for i in range(0, len(run_part), 800):
        recognizer.accept_waveform(run_part[i : i + 800])
    recognizer.reset()
    assert recognizer.partial() == ""
    finals, _ = run(recognizer, stream, 0.1)
    assert [asdict(r) for r in finals] == [asdict(r) for r in redecoded[0]]


def test_int16_input_is_read_as_its_float_samples(checkpoint, stream):
    pcm = np.round(stream * 32767).astype(np.int16)
    as_int, _ = run(StreamingRecognizer.from_checkpoint(checkpoint), pcm, 0.1)
    as_float, _ = run(StreamingRecognizer.from_checkpoint(checkpoint), pcm / 32768.0, 0.1)
    assert [asdict(r) for r in as_int] == [asdict(r) for r in as_float]
    assert len(as_int) == len(SAID)


def vad_frames(audio: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """StreamingVad's decisions for `audio` at `rate`, fed 20 ms at a time, then flushed;
    and how many of them came before the flush."""
    vad = StreamingVad(rate, SegmenterConfig())
    step = rate // 50
    flags = [vad.accept(audio[i : i + step])[0] for i in range(0, len(audio), step)]
    before = sum(len(f) for f in flags)
    return np.concatenate([*flags, vad.flush()[0]]), before


def test_the_vad_reads_16_khz_as_it_reads_8_khz_without_delay(stream):
    import soxr

    at_8k, before = vad_frames(stream, RATE)
    assert at_8k.any() and not at_8k.all()
    at_16k, before_16k = vad_frames(soxr.resample(stream, RATE, 16000), 16000)
    assert np.array_equal(at_16k, at_8k)
    # every whole 30 ms VAD frame is decided as soon as its audio is in: no resampler delay
    assert before_16k == before == len(stream) // 240 * 3


def test_samples_of_other_shapes_and_types_are_refused():
    with pytest.raises(ValueError, match="mono"):
        as_float_samples(np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="int32"):
        as_float_samples(np.zeros(10, np.int32))


def test_beam_search_finals_equal_the_offline_beam_search(checkpoint, stream, tmp_path):
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("abc\ncab\na\nb\nbca\nc\n")
    options = {"beam_size": 8}
    recognizer = StreamingRecognizer.from_checkpoint(
        checkpoint, lexicon=lexicon, decoder_options=options
    )
    offline = Transcriber.from_checkpoint(
        checkpoint, device="cpu", lexicon=lexicon, decoder_options=options
    )
    finals, _ = run(recognizer, stream, 0.1)
    assert len(finals) == len(SAID)
    for result in finals:
        assert result.text == offline.transcribe(span(stream, result), RATE)
        assert set(result.text.split()) <= {"abc", "cab", "a", "b", "bca", "c"}


def test_a_segment_longer_than_max_segment_seconds_is_cut(checkpoint, transcriber):
    # utterances 0.3 s apart: no endpoint at 0.5 s of silence, so only the cap cuts
    audio = spoken_stream(["abc", "cab"] * 5, pause=0.3)
    recognizer = StreamingRecognizer.from_checkpoint(checkpoint, max_segment_seconds=4)
    finals, _ = run(recognizer, audio, 0.1)
    assert len(finals) >= 2
    for result in finals:
        assert result.end - result.start <= 4.0 + 1e-9
        assert result.text == transcriber.transcribe(span(audio, result), RATE)


class PrecomputedEncoder:
    """A streaming encoder that hands out given log-probs (T, V): frame k once the samples up
    to its hop's end are in, the rest at the flush."""

    def __init__(self, log_probs: torch.Tensor, hop: int, sample_rate: int, frame_seconds: float):
        self.log_probs, self.hop = log_probs, hop
        self.sample_rate, self.frame_seconds = sample_rate, frame_seconds
        self.reset()

    def reset(self) -> None:
        self.samples = self.frames_emitted = 0

    def accept(self, samples: np.ndarray) -> torch.Tensor:
        self.samples += len(samples)
        ready = min(len(self.log_probs), self.samples // self.hop)
        return self._take(ready)

    def flush(self) -> torch.Tensor:
        return self._take(len(self.log_probs))

    def _take(self, upto: int) -> torch.Tensor:
        out = self.log_probs[self.frames_emitted : upto]
        self.frames_emitted = max(self.frames_emitted, upto)
        return out


def frames_of(result: StreamResult, frame_seconds: float) -> slice:
    return slice(round(result.start / frame_seconds), round(result.end / frame_seconds))


def test_incremental_finals_decode_the_frames_of_their_segments(transcriber, stream):
    wav = torch.from_numpy(stream)[None]
    log_probs = transcriber.log_probs(wav, torch.tensor([wav.shape[1]]))[0][0]  # (T, V)
    fs = transcriber.frame_seconds
    expected = None
    for chunk in (0.01, 0.1, 0.32):
        encoder = PrecomputedEncoder(log_probs, round(fs * RATE), RATE, fs)
        recognizer = StreamingRecognizer(transcriber, encoder)
        assert recognizer.mode == "incremental"
        finals, events = run(recognizer, stream, chunk)
        partials_only_grow(events)
        if expected is None:
            expected = [asdict(r) for r in finals]
            assert len(finals) >= len(SAID)
        assert [asdict(r) for r in finals] == expected
    for result in finals:
        frames = log_probs[frames_of(result, fs)]
        (rec,) = transcriber.decode_log_probs(frames[None], torch.tensor([len(frames)]), True)
        assert result.text == rec.text != ""
        assert [w.start for w in result.words] == [
            pytest.approx(w.start + result.start) for w in rec.words
        ]


class HandRunner:
    """What a Transcriber needs of a model to decode given log-probs (it is never run)."""

    device = torch.device("cpu")
    sample_rate = RATE
    frame_seconds = 0.03

    def log_probs(self, wavs, wav_lens):
        raise AssertionError("the incremental mode decodes the encoder's log-probs")


def hand_log_probs(path: str, tokens: str = " ab") -> torch.Tensor:
    """(T, V) log-probs whose best unit at frame t is path[t] ("-" the blank)."""
    units = ["-", *tokens]
    lp = torch.full((len(path), len(units)), -8.0)
    lp[torch.arange(len(path)), torch.tensor([units.index(c) for c in path])] = -0.01
    return lp


def test_a_unit_held_across_a_chunk_border_is_one_token():
    # 30 ms frames (one VAD frame each): "aab", a blank run of 0.5 s (17 frames), then "b"
    path = "aaa" + "a-ab" + "-" * 17 + "bb" + "-" * 20
    transcriber = Transcriber(HandRunner(), CharTokenizer(" ab"))
    hop = round(HandRunner.frame_seconds * RATE)
    encoder = PrecomputedEncoder(hand_log_probs(path), hop, RATE, HandRunner.frame_seconds)
    recognizer = StreamingRecognizer(transcriber, encoder)
    silence = np.zeros(hop, np.float32)  # the VAD hears nothing: blank runs end segments
    recognizer.accept_waveform(np.zeros(3 * hop, np.float32))  # frames "aaa"
    assert recognizer.partial() == "a"
    recognizer.accept_waveform(silence)  # "a" again: the same emission
    assert recognizer.partial() == "a"
    for _ in range(3):  # "-ab"
        recognizer.accept_waveform(silence)
    assert recognizer.partial() == "aab"
    ready = [recognizer.accept_waveform(silence) for _ in range(17)]
    assert ready == [False] * 16 + [True]
    first = recognizer.final()
    assert (first.text, first.start, first.end) == ("aab", 0.0, pytest.approx(24 * 0.03))
    assert [(w.word, w.start) for w in first.words] == [("aab", 0.0)]
    for _ in range(2):
        recognizer.accept_waveform(silence)
    assert recognizer.partial() == "b"
    (second,) = recognizer.finish()
    assert second.text == "b" and second.words[0].start == pytest.approx(24 * 0.03)


@pytest.fixture(scope="module")
def left_to_right(tmp_path_factory) -> Path:
    """A tiny left-to-right GRU (with a lookahead of 2 frames) trained on the tone corpus."""
    root = tmp_path_factory.mktemp("stream-model")
    manifest = make_tone_corpus(root / "tones")
    overrides = [
        *tiny_overrides(manifest),
        "train.epochs=30",
        "train.spec_augment=false",
        "train.validate_every_epochs=100",
        "model.bidirectional=false",
        "model.lookahead_frames=2",
        "features.normalize_level=false",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--out-dir", str(root / "exp"), *overrides]) == 0
    return root / "exp" / "best.pt"


def test_incremental_end_to_end_with_a_left_to_right_checkpoint(left_to_right):
    audio = spoken_stream(SAID[:2])
    offline = Transcriber.from_checkpoint(left_to_right, device="cpu")
    wav = torch.from_numpy(audio)[None]
    log_probs = offline.log_probs(wav, torch.tensor([wav.shape[1]]))[0][0]  # (T, V)
    expected = None
    for chunk in (0.01, 0.1, 0.32):
        recognizer = StreamingRecognizer.from_checkpoint(left_to_right)
        assert recognizer.mode == "incremental"
        finals, events = run(recognizer, audio, chunk)
        partials_only_grow(events)
        # the encoder's log-probs equal to float rounding: the same words, times and path
        got = [
            (r.text, r.start, r.end, [(w.word, w.start, w.end) for w in r.words]) for r in finals
        ]
        if expected is None:
            expected = got
            assert any(r.text for r in finals)
        assert got == expected
    fs = offline.frame_seconds
    for result in finals:
        frames = log_probs[frames_of(result, fs)]
        (rec,) = offline.decode_log_probs(frames[None], torch.tensor([len(frames)]))
        assert result.text == rec.text


@pytest.mark.parametrize(
    ("bidirectional", "normalize_level", "mode"),
    [(True, False, "redecode"), (False, True, "redecode"), (False, False, "incremental")],
)
def test_the_mode_is_what_the_model_allows(bidirectional, normalize_level, mode):
    # a whole utterance's level cannot be known while it is spoken: such a model re-decodes
    features = FeatureConfig(sample_rate=RATE, n_mels=8, normalize_level=normalize_level)
    cfg = ModelConfig(
        n_mels=8, vocab_size=4, conv_channels=0, subsample=1, hidden_size=8, num_layers=1
    )
    model = Recogniser(features, replace(cfg, bidirectional=bidirectional))
    transcriber = Transcriber(model, CharTokenizer(" ab"))
    recognizer = StreamingRecognizer.for_transcriber(transcriber)
    assert recognizer.mode == mode
    assert recognizer.new_stream().mode == mode
    audio = spoken_stream(["ab", "ba"])
    finals, _ = run(recognizer, audio, 0.1)
    for result in finals:  # (a random model: the text is whatever it says)
        assert 0 <= result.start < result.end <= len(audio) / RATE + 0.02


def stream_cli(checkpoint: Path, args: list[str], stdin: bytes, monkeypatch) -> list[str]:
    """`asr transcribe --stream ARGS` with `stdin` -> its stdout lines (stdout is no terminal:
    finals only)."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    out = io.StringIO()
    cmd = ["transcribe", "--model", str(checkpoint), "--device", "cpu", "--stream", *args]
    with contextlib.redirect_stdout(out):
        assert main(cmd) == 0
    return out.getvalue().splitlines()


def test_stream_cli_prints_the_finals_of_pcm_from_stdin(checkpoint, stream, monkeypatch):
    pcm = np.round(stream * 32767).astype("<i2")
    finals, _ = run(StreamingRecognizer.from_checkpoint(checkpoint), pcm, 0.1)
    assert stream_cli(checkpoint, [], pcm.tobytes(), monkeypatch) == [r.text for r in finals]
    lines = stream_cli(checkpoint, ["--format", "json"], pcm.tobytes(), monkeypatch)
    records = [json.loads(line) for line in lines]
    assert [(r["text"], r["start"], r["end"]) for r in records] == [
        (f.text, round(f.start, 3), round(f.end, 3)) for f in finals
    ]
    for record, result in zip(records, finals, strict=True):
        assert [w["word"] for w in record["words"]] == [w.word for w in result.words]
        assert set(record["words"][0]) == {"word", "start", "end", "conf"}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stream_cli_shows_partials_on_a_terminal_line(checkpoint, stream, monkeypatch):
    pcm = np.round(stream * 32767).astype("<i2")
    finals, events = run(StreamingRecognizer.from_checkpoint(checkpoint), pcm, 0.1)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm.tobytes())))
    out = Terminal()
    with contextlib.redirect_stdout(out):
        assert main(["transcribe", "--model", str(checkpoint), "--device", "cpu", "--stream"]) == 0
    clear = "\r\033[K"
    shown = [p for kind, p in events if kind == "partial" and p]
    assert clear + shown[0] in out.getvalue()
    # each final clears the partial's line and takes a line of its own
    lines = out.getvalue().split("\n")
    assert [line.rsplit(clear, 1)[-1] for line in lines[:-1]] == [r.text for r in finals]
    assert lines[-1] == ""  # no partial left on the last line


def test_stream_cli_resamples_other_rates_and_plays_files(checkpoint, tmp_path, monkeypatch):
    import soxr

    audio = spoken_stream(SAID[:2])
    pcm16k = np.round(soxr.resample(audio, RATE, 16000) * 32767).astype("<i2")
    lines = stream_cli(checkpoint, ["--rate", "16000"], pcm16k.tobytes(), monkeypatch)
    assert len(lines) == 2 and all(lines)
    path = tmp_path / "two.wav"
    sf.write(path, audio, RATE, subtype="PCM_16")
    pcm = np.round(audio * 32767).astype("<i2").tobytes()
    from_stdin = stream_cli(checkpoint, [], pcm, monkeypatch)
    assert stream_cli(checkpoint, [str(path)], b"", monkeypatch) == from_stdin
    assert stream_cli(checkpoint, ["--realtime", str(path)], b"", monkeypatch) == from_stdin


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--realtime"], "--realtime plays a FILE"),
        (["--format", "srt"], "text or json"),
        (["a.wav", "b.wav"], "one FILE"),
        (["--rate", "0"], "--rate must be a positive"),
    ],
)
def test_stream_cli_refuses_what_it_cannot_do(checkpoint, args, message, capsys):
    assert main(["transcribe", "--model", str(checkpoint), "--stream", *args]) == 1
    assert message in capsys.readouterr().err


def test_transcribe_without_stream_still_needs_files(checkpoint, capsys):
    assert main(["transcribe", "--model", str(checkpoint)]) == 1
    assert "--stream to read PCM from stdin" in capsys.readouterr().err
    assert main(["transcribe", "--model", str(checkpoint), "--rate", "8000", "a.wav"]) == 1
    assert "--rate is for raw PCM on stdin" in capsys.readouterr().err
