"""The parts of training on their own: the budget and LR schedule, weight snapshots and their
mean, and stopping on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
from torch import nn

from asr.training.averaging import Snapshots, average_weights, weights_swapped
from asr.training.schedule import CALIBRATION_STEPS, Budget, lr_lambda, lr_schedule
from asr.training.signals import stop_on_signals


def test_without_a_time_budget_the_schedule_spans_every_epoch():
    budget = Budget(epochs=3, steps_per_epoch=10)
    assert budget.full_steps == 30
    assert budget.schedule_steps(step=25, elapsed_s=1e6, current=7) == 30
    assert not budget.spent(step=10**6, elapsed_s=1e9)


def test_a_time_budget_sizes_the_schedule_once_the_pace_is_measured():
    budget = Budget(epochs=100, steps_per_epoch=10, max_minutes=10)  # 600 s, 1000 steps
    # 5 steps in 1 s: neither CALIBRATION_STEPS steps nor 2% of the budget yet
    assert budget.schedule_steps(step=5, elapsed_s=1.0, current=1000) == 1000
    # 1 s a step: 600 steps fit
    assert budget.schedule_steps(step=CALIBRATION_STEPS, elapsed_s=10.0, current=1000) == 600
    assert budget.schedule_steps(step=2, elapsed_s=12.0, current=1000) == 100  # 2% passed
    assert not budget.spent(step=599, elapsed_s=599.0) and budget.spent(step=5, elapsed_s=600.0)
    assert Budget(1, 10, max_steps=4).spent(step=4, elapsed_s=0.0)


def test_the_stop_reason_names_the_limit_that_ended_the_run():
    budget = Budget(epochs=4, steps_per_epoch=10, max_steps=0, max_minutes=2)
    assert budget.stop_reason(40, 40, 60.0) == (
        "all 4 epochs done: 40 steps in 1.0 min, before the time budget (train.max_minutes=2)"
    )
    assert budget.stop_reason(20, 20, 120.0) == (
        "time budget reached (train.max_minutes=2): the schedule was sized to fit it, 20 of "
        "the 40 steps of 4 epochs (2.0 epochs) in 2.0 min"
    )
    assert budget.stop_reason(15, 20, 120.0) == (
        "time budget reached (train.max_minutes=2) at step 15 of 20 (2.0 min)"
    )
    assert Budget(4, 10, max_steps=3).stop_reason(3, 40, 6.0) == (
        "train.max_steps=3 reached, at step 3 (0.1 min)"
    )


def test_the_lr_schedule_follows_its_length_as_it_is_replanned():
    weight = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=2.0)
    total = [100]
    scheduler = lr_schedule(optimizer, warmup=0, final_ratio=0.1, total_steps=lambda: total[0])
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(2.0 * lr_lambda(10, 0, 100, 0.1))
    total[0] = 10  # re-planned: the schedule ends now
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr()[0] == pytest.approx(0.2)


def test_snapshots_keep_the_last_ones_and_average_them(tmp_path):
    snapshots = Snapshots(tmp_path / "snapshots", keep=2)
    for step in (5, 10, 15):
        snapshots.add(step, {"w": torch.tensor([float(step)]), "n": torch.tensor(step)})
    assert [p.name for p in snapshots.paths()] == ["step-00000010.pt", "step-00000015.pt"]
    mean = snapshots.mean()
    assert mean["w"].tolist() == [12.5] and int(mean["n"]) == 15  # integers: the last one's
    assert average_weights([{"w": torch.tensor([1.0])}])["w"].tolist() == [1.0]
    with pytest.raises(ValueError, match="no weights to average"):
        average_weights([])


def test_weights_swapped_gives_the_model_back_its_own():
    model = nn.Linear(2, 1)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    other = {k: torch.full_like(v, 3.0) for k, v in own.items()}
    with weights_swapped(model, other):
        assert torch.equal(model.weight, torch.full((1, 2), 3.0))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in own.items())
    with pytest.raises(RuntimeError, match="inside"), weights_swapped(model, other):
        raise RuntimeError("inside")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in own.items())


def test_a_signal_sets_the_request_a_second_stops_at_once_and_handlers_come_back(capsys):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_on_signals(announce=True) as request:
        assert request.signal == 0
        os.kill(os.getpid(), signal.SIGTERM)
        assert request.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert capsys.readouterr().out == (
        "SIGTERM: stopping at the end of this step (again to stop at once)\n"
    )


def test_training_imports_neither_the_beam_search_nor_the_lm_code():
    # Validation decodes greedily (asr.evaluate.evaluate_greedy).
    code = (
        "import sys, asr.train, asr.training.trainer; "
        "print(sorted(m for m in ('asr.lm', 'asr.decoding.beam', 'asr.transcribe') "
        "if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
