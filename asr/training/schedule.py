"""The learning-rate schedule and the limits of a run.

The learning rate rises linearly, then decays on a cosine to `final_lr_ratio` of its peak at
the schedule's end (`lr_lambda`). The schedule spans every epoch's steps, unless a time budget
(train.max_minutes) is set: it is then sized to end with the budget at the pace measured so
far (`planned_steps`), validations and data loading included, and sized again after every step,
so that a run cut short by its budget still ends at the bottom of the decay.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

# With a time budget, the schedule is sized after every step once this many steps or this
# share of the budget have passed (before that, the pace is not yet known).
CALIBRATION_STEPS = 10
CALIBRATION_SHARE = 0.02


def planned_steps(full_steps: int, steps_done: int, elapsed_s: float, budget_s: float) -> int:
    """Schedule length that ends when the time budget does, at the pace so far.

    The pace (elapsed_s / steps_done) includes validation and data loading, so the whole
    run fits the budget. Never more than the full schedule, never fewer than the steps done.

    >>> planned_steps(1000, 100, 60.0, 300.0)  # 0.6 s a step: 400 more fit
    500
    >>> planned_steps(1000, 100, 6.0, 300.0)  # fast enough for every epoch
    1000
    """
    if budget_s <= 0 or steps_done <= 0 or elapsed_s <= 0:
        return full_steps
    fit = steps_done + int((budget_s - elapsed_s) * steps_done / elapsed_s)
    return max(steps_done, min(full_steps, fit))


def lr_lambda(step: int, warmup: int, total: int, final_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `final_ratio` at `total` steps (flat after).

    The warm-up takes at most a quarter of the schedule, so a short one still decays.

    >>> [round(lr_lambda(s, warmup=2, total=10, final_ratio=0.1), 2) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.55, 0.1]
    """
    warmup = min(warmup, total // 4)
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def lr_schedule(
    optimizer: torch.optim.Optimizer,
    warmup: int,
    final_ratio: float,
    total_steps: Callable[[], int],
) -> torch.optim.lr_scheduler.LambdaLR:
    """`lr_lambda` times the optimizer's learning rate, stepped once per optimizer step;
    `total_steps()` gives the schedule's length at each step (it may be re-planned)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_lambda(s, warmup, total_steps(), final_ratio)
    )


@dataclass(frozen=True)
class Budget:
    """How long a run may train: train.epochs, train.max_steps, train.max_minutes."""

    epochs: int
    steps_per_epoch: int  # optimizer steps
    max_steps: int = 0  # steps in all (0 = no limit)
    max_minutes: float = 0.0  # training wall time in all, validations included (0 = no limit)

    @property
    def full_steps(self) -> int:
        """The steps of every epoch: the schedule's length without a time budget."""
        return self.epochs * self.steps_per_epoch

    def schedule_steps(self, step: int, elapsed_s: float, current: int) -> int:
        """The schedule's length after `step` steps in `elapsed_s` seconds: every epoch's steps
        without a time budget; with one, `planned_steps` once the pace is measured
        (CALIBRATION_STEPS steps or CALIBRATION_SHARE of the budget), `current` before that.

        >>> Budget(epochs=10, steps_per_epoch=100, max_minutes=5).schedule_steps(100, 60.0, 1000)
        500
        """
        budget_s = 60 * self.max_minutes
        if not budget_s:
            return self.full_steps
        if step >= CALIBRATION_STEPS or elapsed_s >= CALIBRATION_SHARE * budget_s:
            return planned_steps(self.full_steps, step, elapsed_s, budget_s)
        return current

    def spent(self, step: int, elapsed_s: float) -> bool:
        """train.max_steps or train.max_minutes reached."""
        if self.max_steps and step >= self.max_steps:
            return True
        return bool(self.max_minutes) and elapsed_s >= 60 * self.max_minutes

    def stop_reason(self, step: int, total_steps: int, elapsed_s: float) -> str:
        """Why a run that made `step` steps of a `total_steps` schedule in `elapsed_s` seconds
        ended (other than by a signal or an error), in words for the log."""
        took = f"{elapsed_s / 60:.1f} min"
        if self.max_steps and step >= self.max_steps:
            return f"train.max_steps={self.max_steps} reached, at step {step} ({took})"
        budget = f"train.max_minutes={self.max_minutes:g}"
        done = step >= total_steps
        if done and total_steps >= self.full_steps:
            before = f", before the time budget ({budget})" if self.max_minutes else ""
            return f"all {self.epochs} epochs done: {step} steps in {took}{before}"
        if done:
            epochs = step / max(1, self.steps_per_epoch)
            return (
                f"time budget reached ({budget}): the schedule was sized to fit it, {step} "
                f"of the {self.full_steps} steps of {self.epochs} epochs ({epochs:.1f} epochs) "
                f"in {took}"
            )
        return f"time budget reached ({budget}) at step {step} of {total_steps} ({took})"
