"""Formats FFmpeg reads through PyAV (the `formats` extra): m4a/AAC, mp4 with video, mov,
webm/opus, mkv. Files are encoded at test time by PyAV's own encoders from a known waveform;
each decodes to it within a stated tolerance and transcribes as its wav does; damaged ones are
named on one line each while the batch goes on; long ones are read block by block."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import asr.audio
from asr.audio import (
    FORMATS_EXTRA,
    AudioError,
    audio_duration,
    audio_sample_rate,
    load_audio,
    read_blocks,
)
from asr.cli import main
from asr.data import Utterance, read_manifest, write_manifest
from asr.segmenter import SegmenterConfig
from data_prep.folder import prepare_folder
from data_prep.split import SkippedEntries
from tests.bad_audio import make_checkpoint
from tests.conftest import TEXTS, tone_utterance
from tests.test_long_audio import RATE, join_with_pauses, tone_corpus, tone_transcriber

try:
    import av
except ImportError:
    av = None
needs_av = pytest.mark.skipif(av is None, reason="PyAV (the formats extra) is not installed")

# (suffix, encoder, sample rate, channels, with a video track)
FORMATS = [
    ("m4a", "aac", 16000, 1, False),
    ("m4a", "aac", 8000, 1, False),
    ("m4a", "aac", 48000, 2, False),
    ("mp4", "aac", 44100, 2, True),
    ("mov", "aac", 48000, 1, False),
    ("webm", "libopus", 48000, 1, False),
    ("webm", "libopus", 16000, 2, False),
    ("mkv", "libopus", 8000, 1, False),
    ("mkv", "flac", 48000, 2, False),
]
FORMAT_IDS = [f"{s}-{c}-{r // 1000}k-{'mono' if n == 1 else 'stereo'}" for s, c, r, n, _ in FORMATS]
SPOKEN = "abc cab ba"  # tone 'words' (tests/conftest.py) that the stand-in recogniser reads


def encode(
    path: Path,
    wav: np.ndarray,
    rate: int,
    codec: str,
    video: bool = False,
    container: str | None = None,
    options: dict[str, str] | None = None,
) -> Path:
    """Write (S,) or (S, 2) float32 `wav` at `rate` with PyAV's `codec` encoder; with `video`,
    a 64x48, 10 frames/s MPEG-4 video track beside it, interleaved."""
    wav = wav[:, None] if wav.ndim == 1 else wav
    layout = "mono" if wav.shape[1] == 1 else "stereo"
    with av.open(str(path), "w", format=container, options=options or {}) as out:
        if video:
            picture = out.add_stream("mpeg4", rate=10)
            picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream(codec, rate=rate, layout=layout)
        shown = 0
        for i in range(0, len(wav), 1024):
            piece = np.ascontiguousarray(wav[i : i + 1024].T)  # (C, n) planar
            frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, i
            out.mux(sound.encode(frame))
            while video and shown / 10 <= (i + 1024) / rate:
                image = np.full((48, 64, 3), 8 * shown % 256, np.uint8)
                picture_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                picture_frame.pts = shown
                shown += 1
                out.mux(picture.encode(picture_frame))
        out.mux(sound.encode(None))
        if video:
            out.mux(picture.encode(None))
    return path


def spoken(rate: int, channels: int, seed: int = 0) -> np.ndarray:
    """SPOKEN as tones at `rate`: (S,) or (S, 2), the right channel 0.8 of the left."""
    wav = tone_utterance(SPOKEN, rate, np.random.default_rng(seed))
    return wav if channels == 1 else np.stack([wav, 0.8 * wav], axis=1)


def write_format(folder: Path, suffix: str, codec: str, rate: int, channels: int, video: bool):
    """(the encoded file, the waveform it was encoded from)."""
    wav = spoken(rate, channels)
    name = f"{codec}_{rate}_{channels}.{suffix}"
    return encode(folder / name, wav, rate, codec, video), wav


@needs_av
@pytest.mark.parametrize(("suffix", "codec", "rate", "channels", "video"), FORMATS, ids=FORMAT_IDS)
def test_each_format_decodes_to_its_source(tmp_path, suffix, codec, rate, channels, video):
    """The source's length within 1 ms (the AAC encoder's priming and padding removed),
    correlation with the source mixed to mono at least 0.995 for the lossy codecs (AAC, Opus),
    every sample within 2^-14 for FLAC; the header's duration within 10 ms (Matroska counts the
    last Opus packet whole)."""
    path, wav = write_format(tmp_path, suffix, codec, rate, channels, video)
    source = wav if channels == 1 else wav.mean(axis=1)
    decoded = load_audio(path, rate).numpy()
    assert len(decoded) == pytest.approx(len(source), abs=rate / 1000)
    decoded, source = decoded[: len(source)], source[: len(decoded)]
    if codec == "flac":
        np.testing.assert_allclose(decoded, source, atol=2**-14)
    else:
        assert np.corrcoef(decoded, source)[0, 1] >= 0.995
        assert np.std(decoded) == pytest.approx(np.std(source), rel=0.05)
    assert audio_duration(path) == pytest.approx(len(source) / rate, abs=0.01)


@needs_av
def test_the_sample_rate_is_the_decoded_audio_s(tmp_path):
    """What the audio decodes at: the encoder's rate for AAC and FLAC, 48 kHz for any Opus."""
    sf.write(tmp_path / "a.wav", spoken(8000, 1), 8000)
    assert audio_sample_rate(tmp_path / "a.wav") == 8000
    for suffix, codec, rate, channels, video in FORMATS:
        path, _ = write_format(tmp_path, suffix, codec, rate, channels, video)
        assert audio_sample_rate(path) == (48000 if codec == "libopus" else rate), path.name
    (tmp_path / "zero.m4a").write_bytes(b"")
    with pytest.raises(AudioError, match="empty file"):
        audio_sample_rate(tmp_path / "zero.m4a")


@needs_av
def test_each_format_transcribes_as_its_wav(tmp_path):
    """The stand-in recogniser of tests/test_long_audio.py reads the tones exactly: every
    format gives the wav's transcript (each resampled to its 8 kHz)."""
    files = [write_format(tmp_path, *spec)[0] for spec in FORMATS]
    sf.write(tmp_path / "source.wav", spoken(RATE, 1), RATE)
    results = tone_transcriber().transcribe_files([tmp_path / "source.wav", *files])
    texts = {Path(r.path).name: r.text for r in results}
    assert texts.pop("source.wav") == SPOKEN
    assert texts == {f.name: SPOKEN for f in files}


@needs_av
@pytest.mark.parametrize(
    ("suffix", "codec", "rate", "shift"),
    [("m4a", "aac", 16000, 0), ("webm", "libopus", 48000, 48)],
    ids=["m4a-exact", "webm-within-1ms"],
)
def test_a_segment_reads_as_the_same_span_of_the_whole_file(tmp_path, suffix, codec, rate, shift):
    """A segment far into the file is reached by seeking, and holds the very samples a decode
    from the start gives there: in MP4 at the same sample (its timestamps count samples), in
    WebM within `shift` samples (1 ms: its timestamps are in milliseconds)."""
    noise = 0.1 * np.random.default_rng(4).standard_normal(rate * 30).astype(np.float32)
    path = encode(tmp_path / f"noise.{suffix}", noise, rate, codec)
    whole = load_audio(path, rate).numpy()
    for offset in (0.5, 7.3, 21.0):  # the first before the seeking threshold
        piece = load_audio(path, rate, offset=offset, duration=2.0).numpy()
        start = round(offset * rate)
        assert len(piece) == 2 * rate
        lags = range(-shift, shift + 1)
        errors = [
            np.abs(whole[start + lag : start + lag + len(piece)] - piece).max() for lag in lags
        ]
        assert min(errors) == 0.0, (offset, min(errors))


@needs_av
def test_a_long_m4a_is_read_block_by_block_and_transcribes_as_its_wav(tmp_path):
    """Four minutes of tone utterances with pauses, as wav and as m4a: the long-file path
    (VAD segmentation, then the segments read one by one) gives both the same segments (within
    0.1 s) and the same transcript, and the m4a is never decoded whole: blocks of at most
    `block_seconds`, and Python's allocations peak far below the decoded file's size."""
    _, wavs = tone_corpus(tmp_path / "utts", repeats=14)
    wav_path = tmp_path / "long.wav"
    join_with_pauses(wavs, wav_path, RATE, (0.6, 1.5))
    samples, _ = sf.read(wav_path, dtype="float32")
    m4a = encode(tmp_path / "long.m4a", samples, RATE, "aac")
    assert len(samples) > 4 * 60 * RATE

    blocks = [len(b) for b in read_blocks(m4a, None, block_seconds=5.0)]
    assert max(blocks) == 5 * RATE
    assert sum(blocks) == pytest.approx(len(samples), abs=RATE / 1000)

    segmenter = SegmenterConfig(block_seconds=5.0)
    transcriber = tone_transcriber(long_seconds=10.0, segmenter=segmenter, batch_seconds=20.0)
    peaks = []
    tracemalloc.start()
    try:
        for path in (wav_path, m4a):
            tracemalloc.reset_peak()
            results = list(transcriber.transcribe_files([path]))
            peaks.append(tracemalloc.get_traced_memory()[1])
            if path == m4a:
                (from_m4a,) = results
            else:
                (from_wav,) = results
    finally:
        tracemalloc.stop()
    assert from_m4a.error is None and from_wav.error is None
    assert from_m4a.text == from_wav.text == " ".join(TEXTS * 14)
    spans = [np.array([(s.start, s.end) for s in r.segments]) for r in (from_m4a, from_wav)]
    assert spans[0].shape == spans[1].shape
    np.testing.assert_allclose(spans[0], spans[1], atol=0.1)  # the VAD hears the AAC noise
    wav_peak, m4a_peak = peaks  # bytes Python allocated at most, the model's batches included
    assert m4a_peak < wav_peak + 2**20 and m4a_peak < samples.nbytes / 3, (peaks, samples.nbytes)


# --- bad files ------------------------------------------------------------------------------


def make_bad_containers(folder: Path) -> dict[Path, str]:
    """Damaged and unusable files -> {path: the words its one error line must hold}."""
    folder.mkdir(parents=True, exist_ok=True)
    wav = spoken(16000, 1)
    good = encode(folder / "whole.m4a", np.concatenate([wav] * 4), 16000, "aac")
    body = good.read_bytes()
    bad: dict[Path, str] = {}

    corrupt = bytearray(body)
    data = corrupt.find(b"mdat") + 8  # the AAC packets, after the mdat box's header
    corrupt[data + 200 : data + 4000] = np.random.default_rng(5).bytes(3800)
    (folder / "corrupt.m4a").write_bytes(bytes(corrupt))
    bad[folder / "corrupt.m4a"] = "the audio stream breaks off at"

    (folder / "no_index.m4a").write_bytes(body[: len(body) // 2])  # its moov box is at the end
    bad[folder / "no_index.m4a"] = "neither libsndfile nor FFmpeg knows this format, or the file"

    faststart = encode(folder / "faststart.m4a", np.concatenate([wav] * 4), 16000, "aac",
                       options={"movflags": "+faststart"})  # fmt: skip
    with av.open(str(faststart)) as container:
        positions = [p.pos for p in container.demux(audio=0) if p.pos is not None and p.pos > 0]
    cut = faststart.read_bytes()
    (folder / "cut_at_a_packet.m4a").write_bytes(cut[: positions[len(positions) // 2]])
    bad[folder / "cut_at_a_packet.m4a"] = "truncated: the header declares 5.20 s of audio"
    (folder / "cut_in_a_packet.m4a").write_bytes(cut[: positions[len(positions) // 2] + 7])
    bad[folder / "cut_in_a_packet.m4a"] = "breaks off"
    faststart.unlink()

    video = folder / "video_only.mp4"
    with av.open(str(video), "w") as out:
        picture = out.add_stream("mpeg4", rate=10)
        picture.width, picture.height, picture.pix_fmt = 64, 48, "yuv420p"
        for t in range(20):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            frame.pts = t
            out.mux(picture.encode(frame))
        out.mux(picture.encode(None))
    bad[video] = "no audio stream in the file (only video)"

    (folder / "zero.m4a").write_bytes(b"")
    bad[folder / "zero.m4a"] = "empty file (0 bytes)"
    (folder / "text.m4a").write_text("a transcript, not a recording\n" * 10)
    bad[folder / "text.m4a"] = "neither libsndfile nor FFmpeg knows this format"
    good.unlink()
    return bad


def _one_line_each(err: str, bad: dict[Path, str]) -> None:
    assert "Traceback" not in err
    for path, cause in bad.items():
        lines = [line for line in err.splitlines() if f"{path}:" in line]
        assert len(lines) == 1, (path, lines)
        assert cause in lines[0], (path, lines[0])


@needs_av
def test_each_bad_container_is_named_with_its_cause(tmp_path):
    for path, cause in make_bad_containers(tmp_path).items():
        with pytest.raises(AudioError) as err:
            load_audio(path, 16000)
        message = str(err.value)
        assert message.startswith(f"{path}: ") and cause in message and "\n" not in message


@needs_av
def test_bad_containers_one_line_each_and_the_batch_goes_on(tmp_path, capsys):
    """`asr transcribe` and `asr prepare folder` over good and bad files alike."""
    bad = make_bad_containers(tmp_path / "in")
    good = [write_format(tmp_path / "in", *spec)[0] for spec in FORMATS[::4]]
    model = make_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "out"
    files = [str(p) for p in [*good, *bad]]
    assert main(["transcribe", "--model", str(model), "--out-dir", str(out), *files]) == 1
    err = capsys.readouterr().err
    _one_line_each(err, bad)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.stem + ".txt" for p in good)
    assert f"asr: {len(bad)} input(s) failed, {len(good)} transcribed" in err

    for path in [*good, *bad]:
        path.with_suffix(".txt").write_text("abc\n")
    with pytest.raises(SkippedEntries) as skipped:
        prepare_folder(tmp_path / "in", tmp_path / "data", dev_fraction=0, test_fraction=0)
    _one_line_each(str(skipped.value), bad)
    rows = read_manifest(tmp_path / "data" / "train.jsonl")
    assert sorted(Path(u.audio_filepath).name for u in rows) == sorted(p.name for p in good)


@needs_av
def test_a_webm_recorded_live_has_its_duration_counted_with_a_note(tmp_path, capsys):
    """A browser's MediaRecorder writes WebM without a duration (the muxer's live mode does the
    same): the samples are counted, and stderr says so once."""
    wav = spoken(48000, 1)
    path = encode(tmp_path / "recorded.webm", wav, 48000, "libopus", options={"live": "1"})
    with av.open(str(path)) as container:
        assert container.duration is None
    assert audio_duration(path) == pytest.approx(len(wav) / 48000, abs=1e-3)
    assert audio_duration(path) == pytest.approx(len(wav) / 48000, abs=1e-3)
    err = capsys.readouterr().err
    assert err == f"note: {path}: no duration in its header; measured by decoding the audio\n"
    assert load_audio(path, 48000).shape == (len(wav),)


@needs_av
def test_a_raw_aac_stream_is_counted_not_guessed(tmp_path, capsys):
    """ADTS (.aac) has no header length: FFmpeg guesses one from the first packets' bit rate
    (here 3.5 s: loud first, then quiet), which must neither cut the audio nor be reported."""
    rng = np.random.default_rng(7)
    wav = np.concatenate([0.3 * rng.standard_normal(16000 * 3), np.zeros(16000 * 12)])
    wav[-800:] = 0.5  # a last loud 50 ms, which a cut would lose
    path = encode(
        tmp_path / "quiet_end.aac", wav.astype(np.float32), 16000, "aac", container="adts"
    )
    decoded = load_audio(path, 16000).numpy()
    priming = 1024  # samples raw AAC keeps before the audio (MP4 says to drop them; ADTS cannot)
    assert len(wav) + priming <= len(decoded) <= len(wav) + 3 * 1024
    assert np.abs(decoded[-3 * 1024 :]).max() > 0.3
    assert audio_duration(path) == len(decoded) / 16000
    assert "no duration in its header; measured by decoding" in capsys.readouterr().err


# --- without PyAV ---------------------------------------------------------------------------


def test_without_pyav_an_m4a_names_the_extra(tmp_path, monkeypatch):
    """Importers say which extra reads the format, not "transcript with no audio file"."""
    monkeypatch.setattr(asr.audio, "_import_av", lambda: None)
    memo = tmp_path / "memo.m4a"
    memo.write_bytes(b"\0\0\0\x20ftypM4A " + bytes(200))  # what libsndfile cannot open
    memo.with_suffix(".txt").write_text("hello\n")
    sf.write(tmp_path / "other.wav", spoken(8000, 1), 8000)
    (tmp_path / "other.txt").write_text("abc\n")
    expected = (
        f"{memo}: .m4a audio is read by FFmpeg through PyAV, which is not installed: "
        f"{FORMATS_EXTRA}"
    )
    with pytest.raises(AudioError) as err:
        load_audio(memo, 16000)
    assert str(err.value) == expected
    with pytest.raises(SkippedEntries) as skipped:
        prepare_folder(tmp_path, tmp_path / "data", dev_fraction=0, test_fraction=0)
    problems = str(skipped.value).splitlines()
    assert expected in problems
    assert not any("no audio file" in line for line in problems)
    assert len(read_manifest(tmp_path / "data" / "train.jsonl")) == 1


def test_a_sidecar_beside_a_format_not_read_says_so(tmp_path):
    sf.write(tmp_path / "a.wav", spoken(8000, 1), 8000)
    (tmp_path / "a.txt").write_text("abc\n")
    (tmp_path / "talk.xyz").write_bytes(b"not audio")
    (tmp_path / "talk.txt").write_text("hello\n")
    (tmp_path / "alone.txt").write_text("hello\n")
    with pytest.raises(SkippedEntries) as skipped:
        prepare_folder(tmp_path, tmp_path / "data", dev_fraction=0, test_fraction=0)
    problems = str(skipped.value).splitlines()
    assert any(
        line.startswith(
            f"{tmp_path / 'talk.txt'}: transcript beside talk.xyz, whose format is not supported "
            "as audio (the suffixes read: "
        )
        for line in problems
    ), problems
    assert f"{tmp_path / 'alone.txt'}: transcript with no audio file of the same name" in problems


# --- the whole toolkit ----------------------------------------------------------------------


@needs_av
@pytest.mark.slow
def test_prepare_validate_train_and_evaluate_on_m4a_and_webm(tmp_path, capsys):
    """Recordings as phones (m4a) and browsers (webm) write them: `asr prepare folder`,
    `asr validate`, a training epoch and `asr evaluate` read them as they read wavs."""
    from asr.config import load_config
    from asr.train import Trainer
    from tests.conftest import tiny_overrides

    src = tmp_path / "recordings"
    src.mkdir()
    rng = np.random.default_rng(6)
    for i, text in enumerate(TEXTS * 2):
        wav = tone_utterance(text, 48000, rng)
        suffix, codec = ("m4a", "aac") if i % 2 else ("webm", "libopus")
        encode(src / f"u{i:02d}.{suffix}", wav, 48000, codec)
        (src / f"u{i:02d}.txt").write_text(text + "\n")
    data = tmp_path / "data"
    args = ["prepare", "folder", str(src), "--out-dir", str(data), "--dev-fraction", "0.25"]
    assert main([*args, "--test-fraction", "0"]) == 0
    train, dev = data / "train.jsonl", data / "dev.jsonl"
    utts = read_manifest(train) + read_manifest(dev)
    assert {Path(u.audio_filepath).suffix for u in utts} == {".m4a", ".webm"}
    assert main(["validate", str(train), str(dev)]) == 0

    overrides = [*tiny_overrides(train), f"data.dev_manifest={dev}", "train.epochs=1"]
    trainer = Trainer(load_config(None, overrides), tmp_path / "exp")
    result = trainer.run()
    assert result.losses and all(np.isfinite(result.losses))
    assert trainer.progress.failed_utterances == 0
    capsys.readouterr()

    model = tmp_path / "exp" / "last.pt"
    assert main(["evaluate", "--model", str(model), "--manifest", str(dev)]) == 0
    summary = json.loads((tmp_path / "exp" / "summary-dev.json").read_text())
    assert summary["utterances"] == len(read_manifest(dev)) and summary["failed"] == 0


@needs_av
def test_a_manifest_segment_of_an_m4a_loads_as_training_reads_it(tmp_path):
    """Utterances with `offset` (a Kaldi `segments` line, a lhotse supervision) in an m4a."""
    from asr.data import SpeechDataset

    wav = np.concatenate([spoken(16000, 1, seed) for seed in range(8)])
    path = encode(tmp_path / "talk.m4a", wav, 16000, "aac")
    whole = load_audio(path, 16000).numpy()
    utts = [Utterance(str(path), 1.0, "abc", offset=o) for o in (0.0, 6.5)]
    write_manifest(tmp_path / "m.jsonl", utts)
    dataset = SpeechDataset(read_manifest(tmp_path / "m.jsonl"), None, 16000)
    for utt, item in zip(utts, (dataset[0], dataset[1]), strict=True):
        start = round(utt.offset * 16000)
        np.testing.assert_array_equal(item["wav"].numpy(), whole[start : start + 16000])


@needs_av
@pytest.mark.slow
def test_the_formats_benchmark_runs(tmp_path):
    """bench/audio_formats.py as a user runs it, on tone utterances and an untrained model."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, make_tone_corpus

    make_tone_corpus(tmp_path / "tones", sample_rate=16000)
    model = make_checkpoint(tmp_path / "model.pt", sample_rate=16000)
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "bench" / "audio_formats.py"), "--minutes", "0.5"]
    cmd += ["--wavs", str(tmp_path / "tones" / "*.wav"), "--model", str(model), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["audio_seconds"] >= 30 and list(result["files"]) == ["wav", "m4a", "webm"]
    for name, row in result["files"].items():
        assert row["segments"] > 0 and row["wall_s"] > 0 and row["peak_rss_mb"] > 0
        assert name == "wav" or isinstance(row["same_text_as_wav"], bool)
    assert "| m4a |" in run.stdout
