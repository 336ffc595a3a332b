"""Benchmark: a long m4a (and webm) against the same audio as wav through the long-file path:
peak memory, real-time factor, and whether both give the same segments and transcript.

    OMP_NUM_THREADS=1 .venv/bin/python bench/audio_formats.py --minutes 20

Joins 16 kHz utterances (`--wavs`, a glob: by default AN4's test set under $ASR_DATA, else
../shared/data beside the repository), shuffled and repeated, with 0.3-1.5 s pauses of quiet
noise (std 0.001) into a `--minutes` long 16-bit wav, written block by block, and encodes the
same samples with PyAV's encoders: m4a (AAC, 16 kHz mono, FFmpeg's default bit rate) and webm
(Opus, 48 kHz). Then each file, in a process of its own so that its peak resident memory
(ru_maxrss from wait4) is its own, goes through what `asr transcribe` does with a long file
before the model: the VAD pass (asr.segmenter.find_segments) and every segment read at
16 kHz (asr.audio.load_audio with offset and duration); with `--model`, the whole
`Transcriber.transcribe_files` instead, model included. Wall time is that work alone (not
Python's start or imports); real-time factor = wall / audio seconds. A process that only
imports the same modules (PyAV too) gives the baseline memory. A segment of the m4a or webm
with no segment of the wav whose ends both lie within 0.1 s of its own counts as "not in the
wav's" (lossy audio moves a few VAD decisions). Prints a table and one JSON line; --out writes
the JSON line to a file too.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
DATA = Path(os.environ.get("ASR_DATA") or ROOT.parent / "shared" / "data")
DEFAULT_WAVS = str(DATA / "an4" / "wav" / "an4test_clstk" / "*" / "*.wav")
# (suffix, PyAV encoder, encoder's sample rate)
ENCODINGS = {"m4a": ("aac", RATE), "webm": ("libopus", 48000)}


def build_long_wav(wavs: list[str], path: Path, minutes: float, seed: int) -> float:
    """Write the utterances (shuffled, repeated) with pauses until `minutes` of audio, one
    utterance at a time; returns the seconds written."""
    rng = np.random.default_rng(seed)
    written, target = 0, round(minutes * 60 * RATE)
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        while written < target:
            for i in rng.permutation(len(wavs)).tolist():
                wav, rate = sf.read(wavs[i], dtype="float32")
                if rate != RATE or wav.ndim != 1:
                    raise SystemExit(f"{wavs[i]}: need {RATE} Hz mono for this bench")
                gap = (0.001 * rng.standard_normal(round(rng.uniform(0.3, 1.5) * RATE))).astype(
                    np.float32
                )
                f.write(gap)
                f.write(wav)
                written += len(gap) + len(wav)
                if written >= target:
                    break
    return written / RATE


def encode(wav: Path, out: Path, codec: str, rate: int) -> None:
    """Encode a mono wav with PyAV's `codec` at `rate`, reading it 10 s at a time."""
    import av

    with av.open(str(out), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        pts = 0
        for block in sf.blocks(str(wav), blocksize=10 * RATE, dtype="float32"):
            frame = av.AudioFrame.from_ndarray(block[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = RATE, pts
            pts += len(block)
            for converted in resampler.resample(frame):
                container.mux(stream.encode(converted))
        for converted in resampler.resample(None):
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))


def child(path: str, model: str | None) -> None:
    """In the child process: the long-file path over `path`; prints its JSON result."""
    from asr.audio import load_audio
    from asr.segmenter import find_segments
    from asr.transcribe import Transcriber

    if path == "-":  # the baseline: the imports alone (PyAV's FFmpeg libraries included)
        import av  # noqa: F401

        print(json.dumps({}))
        return
    transcriber = Transcriber.from_checkpoint(model, device="cpu") if model else None
    start = time.perf_counter()
    if transcriber is None:
        segments = find_segments(path)
        for s in segments:
            load_audio(path, RATE, offset=s.start, duration=s.end - s.start)
        spans, text = [(s.start, s.end) for s in segments], None
    else:
        (result,) = transcriber.transcribe_files([path])
        if result.error:
            raise SystemExit(result.error)
        spans, text = [(s.start, s.end) for s in result.segments], result.text
    print(json.dumps({"wall_s": time.perf_counter() - start, "spans": spans, "text": text}))


def unmatched(spans: list, reference: list, within: float = 0.1) -> int:
    """How many of `spans` ((start, end) seconds) have no span of `reference` with both ends
    within `within` seconds of theirs."""
    if not spans or not reference:
        return len(spans)
    ours, theirs = (
        np.array(spans)[:, None, :],
        np.array(reference)[None, :, :],
    )  # (N, 1, 2), (1, M, 2)
    return int((np.abs(ours - theirs).max(axis=2).min(axis=1) > within).sum())


def run_child(path: str, model: str | None) -> tuple[dict, float]:
    """This script as a child on `path` -> (its JSON result, its peak RSS in MB)."""
    cmd = [sys.executable, __file__, "--child", path]
    if model:
        cmd += ["--model", model]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.stdout.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the child on {path} failed")
    return json.loads(stdout.strip().splitlines()[-1]), usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wavs", default=DEFAULT_WAVS, help="glob of 16 kHz mono utterances")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--formats", default="m4a,webm", help="comma-separated: m4a, webm")
    parser.add_argument("--model", help="a checkpoint: time `asr transcribe`'s whole path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the JSON line here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model)
        return

    wavs = sorted(glob.glob(args.wavs))
    if not wavs:
        raise SystemExit(f"no files match {args.wavs}")
    out: dict = {"minutes": args.minutes, "model": args.model, "utterance_files": len(wavs)}
    out["threads"] = os.environ.get("OMP_NUM_THREADS", "unset")
    with tempfile.TemporaryDirectory() as tmp:
        files = {"wav": Path(tmp) / "long.wav"}
        out["audio_seconds"] = seconds = round(
            build_long_wav(wavs, files["wav"], args.minutes, args.seed), 2
        )
        for suffix in args.formats.split(","):
            codec, rate = ENCODINGS[suffix]
            files[suffix] = Path(tmp) / f"long.{suffix}"
            start = time.perf_counter()
            encode(files["wav"], files[suffix], codec, rate)
            out.setdefault("encode_s", {})[suffix] = round(time.perf_counter() - start, 1)
        _, baseline = run_child("-", args.model)
        out["baseline_rss_mb"] = round(baseline)
        rows = {}
        for name, path in files.items():
            result, rss = run_child(str(path), args.model)
            rows[name] = {
                "file_mb": round(path.stat().st_size / 2**20, 1),
                "wall_s": round(result["wall_s"], 2),
                "rtf": round(result["wall_s"] / seconds, 5),
                "peak_rss_mb": round(rss),
                "segments": len(result["spans"]),
            }
            if name != "wav":
                rows[name]["segments_not_in_wav"] = unmatched(result["spans"], rows["wav"]["spans"])
                if args.model:
                    rows[name]["same_text_as_wav"] = result["text"] == rows["wav"]["text"]
            rows[name]["spans"], rows[name]["text"] = result["spans"], result["text"]
    for row in rows.values():
        del row["spans"], row["text"]
    out["files"] = rows
    print(
        f"{out['audio_seconds'] / 60:.1f} min of audio; baseline (imports only) {baseline:.0f} MB"
    )
    print("| file | size MB | wall s | RTF | peak RSS MB | segments | not in the wav's |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['file_mb']} | {row['wall_s']} | {row['rtf']} | "
            f"{row['peak_rss_mb']} | {row['segments']} | {row.get('segments_not_in_wav', '')} |"
        )
    line = json.dumps(out)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
