"""Training on two processes (torchrun, gloo, 127.0.0.1): the same losses as one process with
the same global batch, resume with another number of processes, and the batch sharding."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.config import load_config
from asr.data import BucketBatchSampler
from asr.distributed import ShardedBatchSampler
from asr.train import train
from tests.conftest import tiny_overrides


def test_every_rank_gets_the_same_number_of_similar_shares():
    durations = [0.5 + 0.01 * (i % 37) for i in range(200)]
    base = BucketBatchSampler(durations, max_batch_seconds=6.0, seed=3, min_batch_size=3)
    base.set_epoch(2)
    shards = [list(ShardedBatchSampler(base, rank, 3)) for rank in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(base)
    for batch, *parts in zip(base.batches(), *shards, strict=True):
        assert sorted(i for part in parts for i in part) == sorted(batch)  # each once
        assert max(map(len, parts)) - min(map(len, parts)) <= 1 and all(parts)
        # shares of a duration-sorted batch: apart by about one utterance at most
        totals = [sum(durations[i] for i in part) for part in parts]
        assert max(totals) - min(totals) <= 1.1 * max(durations[i] for i in batch)


def test_min_batch_size_gives_every_process_a_share():
    # one long utterance alone would fill a batch; two processes need two per batch
    base = BucketBatchSampler([5.0, 1.0, 1.0, 9.0, 1.0], 6.0, shuffle=False, min_batch_size=2)
    assert all(len(b) >= 2 for b in base.batches())
    assert sorted(i for b in base.batches() for i in b) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="2 utterances cannot fill a batch of 3"):
        BucketBatchSampler([1.0, 1.0], 6.0, min_batch_size=3)


def event_losses(out_dir: Path) -> list[float]:
    """train/loss of every step, from the TensorBoard event files rank 0 wrote."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out_dir / "tensorboard"))
    acc.Reload()
    by_step = {e.step: e.value for e in acc.Scalars("train/loss")}
    return [by_step[s] for s in sorted(by_step)]


def steady(manifest: Path) -> list[str]:
    """No randomness that depends on the process: no dropout, augmentation or masks."""
    return [
        *tiny_overrides(manifest),
        "data.batch_seconds=3",
        "model.dropout=0",
        "train.spec_augment=false",
        "train.epochs=20",
        "train.validate_every_epochs=100",
    ]


def empty_config(folder: Path) -> Path:
    """A config file that sets nothing: the tests' settings come as overrides."""
    config = folder / "empty.yaml"
    config.write_text("{}\n")
    return config


def torchrun(
    args: list[str], processes: int, cwd: Path, program: list[str] | None = None
) -> subprocess.CompletedProcess:
    """`asr train ARGS` (or PROGRAM ARGS) on `processes` processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={processes}", *(program or ["-m", "asr.cli", "train"]), *args]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path.cwd())}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.slow
def test_two_processes_match_one_and_resume_with_another_count(tone_manifest: Path, tmp_path):
    settings = [*steady(tone_manifest), "train.max_steps=20"]
    single = train(load_config(None, settings), tmp_path / "one")
    assert len(single.losses) == 20
    config = empty_config(tmp_path)

    run = torchrun(["--config", str(config), "--out-dir", "two", *settings], 2, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    two = event_losses(tmp_path / "two")
    assert two == pytest.approx(single.losses, abs=1e-4)
    assert run.stdout.count("done: 20 steps") == 1  # rank 0 speaks for both

    # Stopped after 8 steps on two processes, resumed on one: the same 20 losses.
    part = ["--config", str(config), "--out-dir", "part", *settings, "train.max_steps=8"]
    assert torchrun(part, 2, tmp_path).returncode == 0
    rest = train(None, tmp_path / "part", resume=True, overrides=["train.max_steps=20"])
    assert event_losses(tmp_path / "part") == pytest.approx(single.losses, abs=1e-4)
    assert rest.progress.step == 20
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a)


@pytest.mark.slow
def test_out_of_memory_on_one_process_is_redone_or_left_out_by_all(tone_manifest: Path, tmp_path):
    # the mode with one all-reduce after the backward passes (DistributedDataParallel cannot)
    settings = [*steady(tone_manifest), "train.max_steps=8", "train.ddp=false"]
    single = train(load_config(None, settings), tmp_path / "one")
    config = empty_config(tmp_path)
    worker = [str(Path(__file__).parent / "oom_worker.py")]

    # Process 1 runs out of memory in steps 3-5: both redo them in pieces, the same losses.
    args = ["--config", str(config), "--out-dir", "split", *settings]
    run = torchrun(args, 2, tmp_path, [*worker, "split"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert event_losses(tmp_path / "split") == pytest.approx(single.losses, abs=1e-4)
    summary = json.loads((tmp_path / "split" / "train_summary.json").read_text())
    assert summary["split_steps"] >= 3 and summary["skipped_batches"] == 0

    # Out of memory even one utterance at a time in step 3: left out on both, training goes on.
    args = ["--config", str(config), "--out-dir", "skip", *settings]
    run = torchrun(args, 2, tmp_path, [*worker, "skip"])
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("warning: out of memory even one utterance at a time") == 1
    summary = json.loads((tmp_path / "skip" / "train_summary.json").read_text())
    assert summary["skipped_batches"] == 1 and summary["step"] == 8


def test_accumulation_takes_one_step_per_group_of_batches(tone_manifest: Path, tmp_path):
    settings = [*tiny_overrides(tone_manifest), "train.epochs=2", "train.validate_every_epochs=5"]
    plain = train(load_config(None, settings), tmp_path / "plain")
    grouped = train(load_config(None, [*settings, "train.accumulate=2"]), tmp_path / "grouped")
    batches = len(plain.losses) // 2  # global batches an epoch
    assert len(grouped.losses) == 2 * -(-batches // 2)  # ceil: an odd last batch steps alone
    assert grouped.progress.epoch == plain.progress.epoch == 2
    assert all(math.isfinite(loss) for loss in grouped.losses)


@pytest.mark.slow
def test_ddp_accumulates_in_no_sync_and_stops_on_out_of_memory(tone_manifest: Path, tmp_path):
    # Two global batches a step (the first backward pass in no_sync(): one all-reduce a step).
    settings = [*steady(tone_manifest), "train.max_steps=6", "train.accumulate=2"]
    single = train(load_config(None, settings), tmp_path / "one")
    config = empty_config(tmp_path)
    run = torchrun(["--config", str(config), "--out-dir", "two", *settings], 2, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert event_losses(tmp_path / "two") == pytest.approx(single.losses, abs=1e-4)

    # Process 1 out of memory in step 3 (train.ddp=true, the default): no hang, a non-zero exit
    # and one line that names the process, the place and the ways out.
    worker = [str(Path(__file__).parent / "oom_worker.py")]
    args = ["--config", str(config), "--out-dir", "oom", *steady(tone_manifest)]
    run = torchrun([*args, "train.max_steps=8"], 2, tmp_path, [*worker, "split"])
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if "error: out of memory" in line]
    assert len(lines) == 1, run.stderr[-3000:]
    assert "out of memory on process 1 at epoch " in lines[0] and "train.ddp=false" in lines[0]
