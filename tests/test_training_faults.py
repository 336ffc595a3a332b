"""Training faults: non-finite steps, out of memory, over-long utterances, signals, kills, and
damaged or unwritable checkpoints."""

from __future__ import annotations

import copy
import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asr.checkpoint import CheckpointError, load_checkpoint, previous_of, save_checkpoint
from asr.config import load_config
from asr.data import collate
from asr.distributed import DistContext
from asr.training.step import LossSum, StepResult, split_batch, train_step
from asr.training.trainer import Trainer, TrainingError, train
from tests.conftest import tiny_overrides

# Deterministic steps: no dropout, augmentation or masks, on the CPU in fp32 (GPU kernels round
# a step redone in pieces differently from the whole step, and Adam magnifies the difference;
# tests/test_cuda.py checks the GPU paths).
STEADY = [
    "train.device=cpu",
    "model.dropout=0",
    "train.spec_augment=false",
    "train.validate_every_epochs=100",
]


def trainer_and_batch(manifest: Path, out: Path, size: int = 6) -> tuple[Trainer, dict]:
    trainer = Trainer(load_config(None, [*tiny_overrides(manifest), *STEADY]), out)
    trainer.fit_cmvn()
    batch = collate([trainer.dataset[i] for i in range(size)])
    return trainer, batch


def step(trainer: Trainer, batch: dict, loss_sum: LossSum | None = None) -> StepResult:
    """One step of the trainer's model, optimizer and loss scaler on one process."""
    return train_step(
        trainer.model,
        trainer.optimizer,
        trainer.scaler,
        DistContext(),
        trainer.device,
        [batch],
        loss_sum or trainer.loss_sum,
        grad_clip=trainer.cfg.train.grad_clip,
    )


def test_non_finite_step_leaves_weights_and_optimizer_untouched(tone_manifest, tmp_path):
    trainer, batch = trainer_and_batch(tone_manifest, tmp_path / "a")
    assert step(trainer, batch).stepped  # one real step: the optimizer has state
    weights = copy.deepcopy(trainer.model.state_dict())
    moments = copy.deepcopy(trainer.optimizer.state_dict())
    result = step(trainer, batch, lambda b: trainer.loss_sum(b) * torch.tensor(float("nan")))
    assert math.isnan(result.loss) and not result.stepped
    assert all(torch.equal(weights[k], v) for k, v in trainer.model.state_dict().items())
    after = trainer.optimizer.state_dict()
    for key, state in moments["state"].items():
        assert all(torch.equal(state[n], after["state"][key][n]) for n in state)


def test_step_skipped_by_the_fp16_loss_scaler_is_not_an_optimizer_step(tone_manifest, tmp_path):
    # fp16 needs CUDA; the CPU's GradScaler takes the same path through train_step.
    trainer, batch = trainer_and_batch(tone_manifest, tmp_path / "a")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    assert step(trainer, batch).stepped
    weights = copy.deepcopy(trainer.model.state_dict())
    result = step(trainer, batch, lambda b: trainer.loss_sum(b) * float("inf"))
    assert not result.stepped  # (the LR schedule waits with it)
    assert trainer.scaler.get_scale() == 512.0  # the scaler skipped the step, lowered its scale
    assert all(torch.equal(weights[k], v) for k, v in trainer.model.state_dict().items())
    assert step(trainer, batch).stepped


class NonFiniteFromTheThirdBatch(Trainer):
    def loss_sum(self, batch: dict) -> torch.Tensor:
        self.calls = getattr(self, "calls", 0) + 1
        loss = super().loss_sum(batch)
        return loss * float("nan") if self.calls >= 3 else loss


def test_too_many_bad_steps_in_a_row_stop_training(tone_manifest, tmp_path, capsys):
    cfg = load_config(None, [*tiny_overrides(tone_manifest), *STEADY, "train.max_bad_steps=3"])
    trainer = NonFiniteFromTheThirdBatch(cfg, tmp_path / "exp")
    trainer.fit_cmvn()
    with pytest.raises(TrainingError, match="3 steps in a row with a non-finite loss"):
        trainer.run()
    out = capsys.readouterr().out
    assert out.count("warning: step skipped at epoch ") == 3
    assert "(3 in a row, 3 in all)" in out
    assert trainer.progress.step == 2 and trainer.progress.bad_steps == 3
    assert trainer.scheduler.last_epoch == 2  # the schedule advanced with the good steps only


def test_out_of_memory_redoes_the_step_in_pieces_with_the_same_result(tone_manifest, tmp_path):
    plain, batch = trainer_and_batch(tone_manifest, tmp_path / "plain")
    split, _ = trainer_and_batch(tone_manifest, tmp_path / "split")

    def out_of_memory_over_two(b: dict) -> torch.Tensor:
        if len(b["wav_lens"]) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return split.loss_sum(b)

    result = step(split, batch, out_of_memory_over_two)
    assert result.loss == pytest.approx(step(plain, batch).loss, abs=1e-5)
    assert result.splits == 2  # 6 -> halves of 3 -> quarters of 1-2
    # the same step (Adam's normalisation magnifies float rounding in near-zero gradients;
    # an update is about lr = 1e-2, a step on other gradients would differ by that much)
    for key, value in plain.model.state_dict().items():
        torch.testing.assert_close(split.model.state_dict()[key], value, atol=1e-4, rtol=0)

    # Out of memory even one utterance at a time: the batch is left out, weights untouched.
    def always_out_of_memory(b: dict) -> torch.Tensor:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")

    before = copy.deepcopy(split.model.state_dict())
    result = step(split, batch, always_out_of_memory)
    assert result.loss is None and result.out_of_memory_batches == 1 and not result.stepped
    assert all(torch.equal(before[k], v) for k, v in split.model.state_dict().items())
    assert all(p.grad is None for p in split.model.parameters())


def test_a_batch_with_an_empty_share_is_left_out_with_its_load_errors(tone_manifest, tmp_path):
    trainer, batch = trainer_and_batch(tone_manifest, tmp_path / "a")
    nothing = {**split_batch(batch, 6)[0], "errors": ["a.wav: cannot read (injected)"]}
    nothing = {k: v[:0] if isinstance(v, torch.Tensor) else v for k, v in nothing.items()}
    before = copy.deepcopy(trainer.model.state_dict())
    result = step(trainer, nothing)
    assert result.loss is None and result.unloadable_batches == 1
    assert result.failed_utterances == 1 and result.load_errors == ["a.wav: cannot read (injected)"]
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


class AlwaysOutOfMemory(Trainer):
    def loss_sum(self, batch: dict) -> torch.Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")


def test_an_epoch_with_every_batch_left_out_stops_training(tone_manifest, tmp_path):
    cfg = load_config(None, [*tiny_overrides(tone_manifest), "train.epochs=3"])
    trainer = AlwaysOutOfMemory(cfg, tmp_path / "exp")
    trainer.fit_cmvn()
    with pytest.raises(TrainingError, match="epoch 1: every batch was left out"):
        trainer.run()
    assert (tmp_path / "exp" / "last.pt").exists()


def test_utterances_over_max_duration_are_left_out(tone_manifest, tmp_path, capsys):
    cfg = load_config(None, [*tiny_overrides(tone_manifest), "data.max_duration=0.4"])
    trainer = Trainer(cfg, tmp_path / "exp")
    assert trainer.train_utts and all(u.duration <= 0.4 for u in trainer.train_utts)
    left = 12 - len(trainer.train_utts)
    assert left > 0
    assert f"{left} utterance(s) longer than data.max_duration=0.4 s left out" in (
        capsys.readouterr().out
    )


def test_unwritable_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"last\.pt: cannot write the checkpoint \(No space"):
        save_checkpoint(path, {"step": 2})
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


def event_losses(out_dir: Path) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out_dir / "tensorboard"))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars("train/loss")}


def start_training(out_dir: Path, settings: list[str], config: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "asr.cli", "train", "--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*cmd, "--out-dir", str(out_dir), *settings],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_for_step(out_dir: Path, step: int, proc: subprocess.Popen) -> None:
    """Until last.pt holds at least `step` steps (the process still running)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if (
                json.loads(json.dumps(load_checkpoint(out_dir / "last.pt")["progress"]))["step"]
                >= step
            ):
                return
        except CheckpointError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint of step {step} in 120 s")


@pytest.fixture
def one_thread():
    """torch on one thread in this process, as in the training child (OMP_NUM_THREADS=1): sums
    split over two threads round differently, and Adam magnifies that past the tolerance."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_stopped_or_killed_run_resumes_with_the_same_losses(
    how, tone_manifest, tmp_path, one_thread
):
    settings = [
        *tiny_overrides(tone_manifest),
        *STEADY,
        "train.epochs=30",
        "train.max_steps=60",
        "train.checkpoint_every_steps=2",
    ]
    config = tmp_path / "empty.yaml"
    config.write_text("{}\n")
    whole = train(load_config(None, settings), tmp_path / "whole")
    proc = start_training(tmp_path / "cut", settings, config)
    wait_for_step(tmp_path / "cut", 10, proc)
    proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=120)
    if how == "SIGTERM":
        # stops at the end of the step it is in, saying how to go on
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert "stopped by SIGTERM after step" in err and "--resume" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    stopped_at = load_checkpoint(tmp_path / "cut" / "last.pt")["progress"]["step"]
    rest = train(None, tmp_path / "cut", resume=True)
    assert rest.progress.step == 60
    # the steps after the checkpoint, run again after the resume, give the same losses
    assert rest.losses == pytest.approx(whole.losses[stopped_at:], abs=1e-6)


def test_resume_falls_back_to_the_previous_checkpoint(tone_manifest, tmp_path, capsys):
    settings = [*tiny_overrides(tone_manifest), *STEADY, "train.epochs=3"]
    train(load_config(None, [*settings, "train.max_steps=8"]), tmp_path / "exp")
    last = tmp_path / "exp" / "last.pt"
    assert previous_of(last).is_file()
    last.write_bytes(last.read_bytes()[:100])  # truncated, as by a full disk elsewhere
    rest = train(None, tmp_path / "exp", resume=True, overrides=["train.max_steps=10"])
    out = capsys.readouterr().out
    assert f"warning: {last}: truncated checkpoint" in out
    assert f"resuming from {previous_of(last)}" in out
    assert rest.progress.step == 10
