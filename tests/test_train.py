"""Training end to end on a tiny generated corpus: learning, exact resume, mixed precision."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from asr.config import load_config
from asr.data import read_manifest
from asr.training.averaging import average_weights
from asr.training.schedule import planned_steps
from asr.training.trainer import Trainer, train
from asr.transcribe import Transcriber
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


def test_loss_falls_and_transcripts_become_right(tone_manifest: Path, tmp_path: Path):
    cfg = load_config(
        None,
        [
            *tiny_overrides(tone_manifest),
            "train.epochs=60",
            "train.validate_every_epochs=20",
            "train.spec_augment=false",
        ],
    )
    result = train(cfg, tmp_path / "exp")
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert last < 0.2 * first, (first, last)
    transcriber = Transcriber.from_checkpoint(tmp_path / "exp" / "best.pt", device="cpu")
    utts = read_manifest(tone_manifest)
    right = sum(transcriber.transcribe(u.audio_filepath) == u.text for u in utts)
    assert right >= len(utts) - 1, right
    assert result.progress.best_wer <= 0.1


def test_resume_gives_the_same_next_losses(tone_manifest: Path, tmp_path: Path):
    # Augmentation and dropout on, so resume must restore every random state to match.
    base = [*tiny_overrides(tone_manifest), "train.epochs=4", "train.wave_augment=true"]
    full = train(load_config(None, [*base, "train.max_steps=14"]), tmp_path / "full")
    # Stop in the middle of the second epoch, then continue to the same step.
    part = train(load_config(None, [*base, "train.max_steps=7"]), tmp_path / "part")
    assert part.progress.step == 7 and part.progress.batch > 0
    rest = train(None, tmp_path / "part", resume=True, overrides=["train.max_steps=14"])
    assert part.losses + rest.losses == full.losses
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bf16_autocast_trains_on_cpu(tone_manifest: Path, tmp_path: Path):
    cfg = load_config(
        None,
        [
            *tiny_overrides(tone_manifest),
            "train.epochs=6",
            "train.precision=bf16",
            "model.rnn_type=lstm",
            "model.subsample=2",
            "model.conv_channels=8",
        ],
    )
    result = train(cfg, tmp_path / "exp")
    assert all(math.isfinite(x) for x in result.losses)
    assert sum(result.losses[-3:]) < sum(result.losses[:3])


def test_time_budget_sizes_the_schedule_to_complete(tone_manifest: Path, tmp_path: Path):
    # Far more epochs than 15 seconds allow: the planner shortens the schedule instead of
    # cutting it where the clock runs out, so training ends far down the cosine (a cut run
    # would end near the peak learning rate).
    cfg = load_config(
        None,
        [
            *tiny_overrides(tone_manifest),
            "train.epochs=100000",
            "train.max_minutes=0.25",
            "train.validate_every_epochs=1000",
        ],
    )
    result = train(cfg, tmp_path / "exp")
    p = result.progress
    assert 0 < p.step == p.total_steps < 100000
    state = torch.load(tmp_path / "exp" / "last.pt", weights_only=True)
    last_lr = state["optimizer"]["param_groups"][0]["lr"]
    assert last_lr < 0.25 * cfg.train.lr
    assert len(result.history) == 1  # one validation, at the end
    summary = json.loads((tmp_path / "exp" / "train_summary.json").read_text())
    assert re.fullmatch(
        rf"time budget reached \(train\.max_minutes=0\.25\): the schedule was sized to fit it, "
        rf"{p.step} of the \d+ steps of 100000 epochs \([\d.]+ epochs\) in [\d.]+ min",
        summary["stop_reason"],
    )


def test_the_log_says_why_training_stopped(tone_manifest: Path, tmp_path: Path, capsys):
    settings = [*tiny_overrides(tone_manifest), "train.epochs=2"]
    result = train(load_config(None, [*settings, "train.max_minutes=10"]), tmp_path / "a")
    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        rf"training stopped: all 2 epochs done: {result.progress.step} steps in [\d.]+ min, "
        r"before the time budget \(train\.max_minutes=10\)",
        lines[-1],
    )
    train(load_config(None, [*settings, "train.max_steps=3"]), tmp_path / "b")
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(
        r"training stopped: train\.max_steps=3 reached, at step 3 \([\d.]+ min\)", last
    )


def test_planned_steps_keeps_within_the_schedule_and_what_is_done():
    assert planned_steps(1000, 50, 100.0, 60.0) == 50  # over budget already: stop now
    assert planned_steps(1000, 0, 0.0, 60.0) == 1000  # nothing measured yet
    assert planned_steps(1000, 10, 1.0, 0.0) == 1000  # no budget


def test_average_of_the_last_validations_is_scored_and_kept_only_if_better(
    tone_manifest: Path, tmp_path: Path
):
    cfg = load_config(
        None, [*tiny_overrides(tone_manifest), "train.epochs=8", "train.average_last=3"]
    )
    result = train(cfg, tmp_path / "exp")
    snapshots = sorted((tmp_path / "exp" / "snapshots").glob("step-*.pt"))
    assert len(snapshots) == 3  # the last three of eight validations
    averaged = [h for h in result.history if "averaged" in h]
    assert len(averaged) == 1 and averaged[0]["averaged"] == 3
    epochs = [h for h in result.history if "averaged" not in h]
    best = torch.load(tmp_path / "exp" / "best.pt", weights_only=True)
    assert best["progress"]["best_wer"] == min(h["dev_wer"] for h in result.history)
    mean = average_weights([torch.load(s, weights_only=True)["model"] for s in snapshots])
    same = all(torch.equal(mean[k], best["model"][k]) for k in mean)
    assert same == (averaged[0]["dev_wer"] < min(h["dev_wer"] for h in epochs))


class ScriptedDevWER(Trainer):
    """Validations score these WERs in turn: six epochs', then the mean's, the worst of all."""

    wers = (0.5, 0.4, 0.3, 0.2, 0.2, 0.2, 0.9)

    def validate(self) -> float:
        self.validations = getattr(self, "validations", 0) + 1
        return self.wers[self.validations - 1]


def test_keep_average_makes_the_mean_best_pt_whatever_its_dev_wer(
    tone_manifest: Path, tmp_path: Path, capsys
):
    settings = [
        *tiny_overrides(tone_manifest),
        "train.epochs=6",
        "train.validate_every_epochs=1",
        "train.average_last=3",
    ]
    trainer = ScriptedDevWER(
        load_config(None, [*settings, "train.keep_average=true"]), tmp_path / "exp"
    )
    trainer.fit_cmvn()
    result = trainer.run()
    assert [h["dev_wer"] for h in result.history][-1] == 0.9
    snapshots = sorted((tmp_path / "exp" / "snapshots").glob("step-*.pt"))
    mean = average_weights([torch.load(s, weights_only=True)["model"] for s in snapshots])
    best = torch.load(tmp_path / "exp" / "best.pt", weights_only=True)
    assert all(torch.equal(mean[k], best["model"][k]) for k in mean)
    averaged = [h for h in result.history if "averaged" in h]
    assert best["progress"]["best_wer"] == averaged[0]["dev_wer"]
    assert best["progress"]["best_step"] == result.history[-1]["step"]
    assert "(kept as best.pt: train.keep_average)" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"keep_average needs train\.average_last of 2 or more"):
        train(
            load_config(None, [*settings, "train.keep_average=true", "train.average_last=1"]),
            tmp_path / "one",
        )


def test_keep_average_says_so_when_the_schedule_did_not_end(
    tone_manifest: Path, tmp_path: Path, capsys
):
    settings = [
        "train.epochs=6",
        "train.max_steps=3",
        "train.average_last=3",
        "train.keep_average=true",
    ]
    result = train(load_config(None, [*tiny_overrides(tone_manifest), *settings]), tmp_path / "x")
    assert not [h for h in result.history if "averaged" in h]
    best = torch.load(tmp_path / "x" / "best.pt", weights_only=True)
    assert best["progress"]["best_wer"] == min(h["dev_wer"] for h in result.history)
    assert "warning: stopped at step 3 of " in capsys.readouterr().out
