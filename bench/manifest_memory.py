"""Benchmark: the training data path's peak memory as the manifest grows.

    .venv/bin/python bench/manifest_memory.py --source exp/an4-idle-s0/data/train.jsonl

Manifests of 1 thousand to 1 million lines (`--sizes`) are generated from the entries
of `--source`: distinct segments (`offset`, `duration`) of its real files, in a temporary
folder. For each, a fresh process runs what `Trainer` does with its training data up to the
first steps: `load_normalised` (asr/training/utterances.py: the manifest read and checked,
kept on disk as an `asr.manifest_index.ManifestIndex`: byte position, duration and offset per
line, each utterance parsed and its text normalised when asked for), the tokenizer over all
texts (streamed from the file), `SpeechDataset`, `BucketBatchSampler` (an epoch's batches)
and a DataLoader with `--workers` worker processes that yields `--batches` batches. Reported
per size: the process's peak resident memory, the largest worker's (a forked worker's RSS
counts the pages it shares with its parent), and the seconds taken. One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader

from asr.data import BucketBatchSampler, SpeechDataset, collate
from asr.tokenizers import build_tokenizer
from asr.training.utterances import load_normalised


def write_manifest_lines(source: Path, lines: int, out: Path) -> None:
    """`lines` lines cycling over the source's files, each line a distinct segment of its file.

    Repeat k of a file starts k * 0.1 ms in and ends 0.2 s before the file's end (the
    training path refuses two lines with the same file, or the same span of one).
    """
    folder = source.resolve().parent
    rows = []
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row["duration"] > 0.3:
                row["audio_filepath"] = str(folder / row["audio_filepath"])  # absolute stays so
                rows.append(row)
    if lines > 2000 * len(rows):
        raise SystemExit(f"{lines} lines: at most 2000 segments of each of {len(rows)} files")
    with out.open("w", encoding="utf-8") as f:
        for i in range(lines):
            k, j = divmod(i, len(rows))
            row = rows[j]
            segment = {**row, "offset": round(k * 1e-4, 4), "duration": row["duration"] - 0.2}
            f.write(json.dumps(segment) + "\n")


def data_path(manifest: str, workers: int, batches: int, batch_seconds: float) -> dict:
    """In this process: the trainer's data path over `manifest`; memory and times."""
    start = time.perf_counter()
    utts = load_normalised(manifest, "train")
    tokenizer = build_tokenizer("char", (u.text for u in utts), 0, "")
    loaded = time.perf_counter() - start
    dataset = SpeechDataset(utts, tokenizer, 16000)
    sampler = BucketBatchSampler(utts.duration, batch_seconds, seed=0)
    epoch = len(sampler.batches())
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers)
    for k, _ in enumerate(loader):
        if k + 1 == batches:
            break
    del loader  # workers exit and are waited for
    elapsed = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "lines": len(utts),
        "batches_per_epoch": epoch,
        "load_s": round(loaded, 1),
        "total_s": round(elapsed, 1),
        "peak_rss_mib": round(own),
        "worker_peak_rss_mib": round(worker) if workers else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="manifest whose lines are repeated")
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-seconds", type=float, default=40.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # a manifest: measure it here
    args = parser.parse_args()
    if args.child:
        result = data_path(args.child, args.workers, args.batches, args.batch_seconds)
        print(json.dumps(result))
        return
    if not args.source:
        parser.error("--source is required")
    out: dict = {"benchmark": "manifest_memory", "source": args.source, "workers": args.workers}
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        for lines in (int(s) for s in args.sizes.split(",")):
            manifest = Path(tmp) / f"train-{lines}.jsonl"
            write_manifest_lines(Path(args.source), lines, manifest)
            command = [sys.executable, __file__, "--child", str(manifest)]
            command += ["--workers", str(args.workers), "--batches", str(args.batches)]
            command += ["--batch-seconds", str(args.batch_seconds)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{lines} lines: the measuring process failed:\n{done.stderr}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["manifest_mib"] = round(os.path.getsize(manifest) / 2**20, 1)
            sizes.append(row)
            manifest.unlink()
    out["sizes"] = sizes
    print(json.dumps(out))


if __name__ == "__main__":
    main()
