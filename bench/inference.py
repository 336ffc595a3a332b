"""Benchmark: real-time factor and peak memory of `asr transcribe` against pocketsphinx.

    bash bench/setup_pocketsphinx.sh   # once: the peer's own venv
    .venv/bin/python bench/inference.py --model exp/an4-idle-s0/best.pt \
        --lm exp/an4-idle-s0/lm --wavs '/work/shared/data/an4/wav/an4test_clstk/*/*.wav' \
        --manifest exp/an4-idle-s0/data/test.jsonl

A 10 s file is made by joining the first (sorted) of the `--wavs` utterances, whole, while
they fit, and padding with silence to exactly `--seconds`. Then, each run as a subprocess and
timed end to end (start-up, model and LM loading, reading, decoding, printing), `--repeats`
times in turn:
1. `asr transcribe --device cpu` greedy;
2. the same with `--lm` (beam search + word LM, the checkpoint's tuned weights);
3. pocketsphinx 5 with its own US English model (bench/pocketsphinx_peer.py in its venv;
   skipped, with the reason in the output, when that venv is absent).
Per command: the median wall time, real-time factor (wall / audio seconds), the peak
resident memory of the process (`os.wait4`'s ru_maxrss for that child alone) and WER on the
joined file. With `--manifest`, each command also transcribes every file of the manifest in
one process (timed the same way, once) and is scored against its texts. One JSON line.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from asr.data import read_manifest
from asr.metrics import score_corpus, score_utterance
from asr.text import normalize_text

HERE = Path(__file__).resolve().parent
PEER_PYTHON = HERE / ".venv-pocketsphinx" / "bin" / "python"
PEER_SCRIPT = HERE / "pocketsphinx_peer.py"
PEER_SETUP = "bench/setup_pocketsphinx.sh"  # creates PEER_PYTHON
ASR = [sys.executable, "-m", "asr", "transcribe"]


def joined_file(paths: list[str], seconds: float, out: Path) -> list[str]:
    """Write the utterances that fit in `seconds`, then silence, to `out`; returns their paths."""
    pieces, used, total, rate = [], [], 0, None
    for path in paths:
        samples, file_rate = sf.read(path, dtype="float32")
        rate = rate or file_rate
        if file_rate != rate or samples.ndim != 1:
            raise ValueError(f"{path}: expected mono audio at {rate} Hz")
        if total + len(samples) > seconds * rate:
            break
        pieces.append(samples)
        used.append(path)
        total += len(samples)
    pieces.append(np.zeros(int(seconds * rate) - total, dtype=np.float32))
    sf.write(out, np.concatenate(pieces), rate, subtype="PCM_16")
    return used


def measure(command: list[str], out: Path) -> dict:
    """Run `command` with stdout to `out`: wall seconds, peak RSS (MiB) of that process."""
    with out.open("w") as stdout:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE)
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
    if proc.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.decode(errors='replace')}")
    return {"wall": wall, "peak_rss_mib": usage.ru_maxrss / 1024}  # ru_maxrss: KiB on Linux


def hypotheses(out: Path) -> dict[str, str]:
    """FILE<TAB>TEXT lines -> {file: normalised text}."""
    rows = (line.split("\t", 1) for line in out.read_text(encoding="utf-8").splitlines())
    return {row[0]: normalize_text(row[1] if len(row) > 1 else "") for row in rows}


def wer(refs: list[str], hyps: list[str]) -> float:
    scores = [
        score_utterance(str(i), r, h) for i, (r, h) in enumerate(zip(refs, hyps, strict=True))
    ]
    return round(score_corpus(scores).wer, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="checkpoint (.pt)")
    parser.add_argument("--lm", required=True, help="LM folder for the beam-search run")
    parser.add_argument("--wavs", required=True, help="glob of utterances to join")
    parser.add_argument("--manifest", help="test set for WER (its texts are the references)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peer-python", default=str(PEER_PYTHON))
    args = parser.parse_args()
    texts = {}
    if args.manifest:
        texts = {u.audio_filepath: normalize_text(u.text) for u in read_manifest(args.manifest)}
    commands = {
        "ours_greedy": [*ASR, "--model", args.model, "--device", "cpu", "--format", "text"],
        "ours_beam_lm": [*ASR, "--model", args.model, "--device", "cpu", "--lm", args.lm],
    }
    commands["ours_beam_lm"] += ["--format", "text"]
    out: dict = {"benchmark": "inference", "model": args.model, "lm": args.lm}
    if Path(args.peer_python).is_file():
        commands["pocketsphinx"] = [args.peer_python, str(PEER_SCRIPT)]
    else:
        why = f"no pocketsphinx venv ({args.peer_python}): create it with `bash {PEER_SETUP}`"
        print(f"pocketsphinx skipped: {why}", file=sys.stderr)
        out["pocketsphinx"] = {"skipped": why}
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "joined.wav"
        used = joined_file(sorted(glob.glob(args.wavs)), args.seconds, wav)
        ref = " ".join(texts.get(str(Path(p).resolve()), "") for p in used)
        out.update(audio_seconds=args.seconds, joined_utterances=len(used))
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        for _ in range(args.repeats):  # in turn, so a busy spell hits all alike
            for name, command in commands.items():
                runs[name].append(measure([*command, str(wav)], Path(tmp) / f"{name}.txt"))
        for name, measured in runs.items():
            wall = statistics.median(m["wall"] for m in measured)
            hyp = hypotheses(Path(tmp) / f"{name}.txt").get(str(wav), "")
            out[name] = {
                "wall_s": round(wall, 2),
                "rtf": round(wall / args.seconds, 3),
                "peak_rss_mib": round(max(m["peak_rss_mib"] for m in measured)),
                "wer_joined": wer([ref], [hyp]) if texts else None,
                "text": hyp,
            }
        if texts:
            out["reference"] = ref
            files = list(texts)
            seconds = sum(sf.info(f).duration for f in files)
            out["test_set"] = {"utterances": len(files), "audio_seconds": round(seconds, 1)}
            for name, command in commands.items():
                listing = Path(tmp) / f"{name}-set.txt"
                m = measure([*command, *files], listing)
                hyps = hypotheses(listing)
                out["test_set"][name] = {
                    "wer": wer([texts[f] for f in files], [hyps.get(f, "") for f in files]),
                    "rtf": round(m["wall"] / seconds, 4),
                    "peak_rss_mib": round(m["peak_rss_mib"]),
                }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
