"""Benchmark: an hour-long file through `asr transcribe`, peak memory and real-time factor.

    OMP_NUM_THREADS=2 .venv/bin/python bench/long_audio.py --model exp/an4-idle-s0/best.pt \\
        --manifest exp/an4-idle-s0/data/test.jsonl --lm exp/an4-idle-s0/lm

Builds a `--hours` long 16-bit file in a temporary folder by joining the manifest's
utterances (shuffled, repeated as needed) with pauses of 0.3-1.5 s of quiet noise (std 0.001,
about -60 dBFS, the level of AN4's own background), written utterance by utterance. Then, each
in a process of its own so that its peak resident memory (ru_maxrss from wait4) is its own:
`asr transcribe` of the file, greedy as text, greedy as JSON (word times by forced alignment),
and with `--lm`, beam search + LM as text. Wall time is end to end (Python start, model load,
VAD pass, model, decoding, writing); real-time factor = wall / audio seconds. Also the VAD
pass alone (asr.segmenter.find_segments, in this process), and the WER of each run against
the references, next to the WER of the same model on the same utterances one by one (batched,
in this process). Prints one JSON line; --out writes it to a file too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf

from asr.data import read_manifest
from asr.segmenter import find_segments
from asr.text import normalize_text
from asr.transcribe import Transcriber

RATE = 16000


def build_long_file(utts, path: Path, hours: float, seed: int) -> list[int]:
    """Write utterances (indices into `utts`, shuffled and repeated) with pauses until `hours`
    of audio; returns the order they were written in."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    written, target = 0, round(hours * 3600 * RATE)
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        while written < target:
            for i in rng.permutation(len(utts)).tolist():
                wav, rate = sf.read(utts[i].audio_filepath, dtype="float32")
                if rate != RATE or wav.ndim != 1:
                    raise SystemExit(f"{utts[i].audio_filepath}: need 16 kHz mono for this bench")
                gap = 0.001 * rng.standard_normal(round(rng.uniform(0.3, 1.5) * RATE))
                f.write(gap.astype(np.float32))
                f.write(wav)
                written += len(gap) + len(wav)
                order.append(i)
                if written >= target:
                    break
    return order


def run_transcribe(args: list[str]) -> tuple[float, float]:
    """`python -m asr transcribe ARGS` in a child process -> (wall seconds, peak RSS in MB)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "asr", "transcribe", *args])
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"asr transcribe {' '.join(args)} exited {code}")
    return wall, usage.ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="exp/an4-idle-s0/best.pt")
    parser.add_argument("--manifest", default="exp/an4-idle-s0/data/test.jsonl")
    parser.add_argument("--lm", help="LM folder for the beam-search run (none: greedy only)")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the JSON line here")
    args = parser.parse_args()

    utts = read_manifest(args.manifest)
    out: dict = {"model": args.model, "manifest": args.manifest, "lm": args.lm}
    out["threads"] = os.environ.get("OMP_NUM_THREADS", "unset")
    with tempfile.TemporaryDirectory() as tmp:
        long = Path(tmp) / "long.wav"
        order = build_long_file(utts, long, args.hours, args.seed)
        seconds = sf.info(str(long)).duration
        references = " ".join(normalize_text(utts[i].text) for i in order)
        out.update(audio_seconds=round(seconds, 1), utterances=len(order))

        start = time.perf_counter()
        segments = find_segments(long)
        vad = time.perf_counter() - start
        lengths = [s.end - s.start for s in segments]
        out["vad"] = {"seconds": round(vad, 2), "rtf": round(vad / seconds, 5)}
        out["segments"] = {"count": len(segments), "longest_s": round(max(lengths), 2)}

        runs = {"greedy": ([], "text"), "greedy_json": ([], "json")}
        if args.lm:
            runs["beam_lm"] = (["--lm", args.lm], "text")
        for name, (extra, fmt) in runs.items():
            folder = Path(tmp) / name
            cli = ["--model", args.model, "--device", "cpu", "--format", fmt, "--out-dir"]
            wall, rss = run_transcribe([*cli, str(folder), *extra, str(long)])
            written = (folder / ("long.txt" if fmt == "text" else "long.json")).read_text()
            text = written.strip() if fmt == "text" else json.loads(written)["text"]
            out[name] = {
                "wall_s": round(wall, 1),
                "rtf": round(wall / seconds, 4),
                "peak_rss_mb": round(rss),
                "wer": round(jiwer.wer(references, text), 4),
            }

    # The same model on the utterances one by one (each unique one once, batched).
    unique = sorted(set(order))
    for name, lm in [("greedy", None), ("beam_lm", args.lm)]:
        if name == "beam_lm" and lm is None:
            continue
        transcriber = Transcriber.from_checkpoint(args.model, device="cpu", lm=lm)
        paths = [utts[i].audio_filepath for i in unique]
        texts = {r.path: r.text for r in transcriber.transcribe_files(paths)}
        one_by_one = " ".join(texts[utts[i].audio_filepath] or "" for i in order)
        wer = round(jiwer.wer(references, one_by_one), 4)
        for run in ("greedy", "greedy_json") if name == "greedy" else (name,):
            out[run]["wer_one_by_one"] = wer
    line = json.dumps(out)
    print(line)
    if args.out:
        Path(args.out).write_text(line + "\n")


if __name__ == "__main__":
    main()
