"""One optimizer step that survives faults, on one process or several.

`train_step` takes the step's global batches (this process's share of each), and
- leaves out a batch of which some process could load no utterance (all processes agree);
- computes the gradient of the mean loss over every utterance of every process: each process
  scales its loss sum by world size / global count, and the gradient mean over processes
  (DistributedDataParallel's during the backward pass, or `average_gradients` after it) makes
  that the global mean; the batches of one step weigh the same;
- when any process runs out of memory, has every process redo the step in halves, quarters...
  of each batch (the same gradient), or leave it out when a process cannot cut its share any
  finer (without DistributedDataParallel; in it, out of memory raises `StepOutOfMemory`);
- clips the gradient norm, and skips the update (weights and optimizer state untouched) when
  the loss or the gradient is not finite.
Every process makes the same collective calls in the same order, whatever fails where.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from asr.device import autocast
from asr.distributed import (
    DistContext,
    all_reduce_sum,
    average_gradients,
    broadcast_tensors,
)

# A batch -> the sum over its utterances of CTC loss / target length (a scalar tensor); it runs
# the forward pass (through DistributedDataParallel where that is used).
LossSum = Callable[[dict], torch.Tensor]


class StepOutOfMemory(RuntimeError):
    """Out of memory in DistributedDataParallel, where a step cannot be redone in pieces (the
    other processes already wait in the backward pass's all-reduce)."""


@dataclass
class StepResult:
    # Mean loss of the step over all processes; NaN when the loss or gradient was not finite
    # (the update skipped); None when every batch of the step was left out.
    loss: float | None
    stepped: bool = False  # the optimizer updated the weights (the LR schedule advances with it)
    splits: int = 0  # times the step was redone in smaller pieces (halves, then quarters, ...)
    out_of_memory_batches: int = 0  # left out: out of memory even one utterance at a time
    unloadable_batches: int = 0  # left out: no utterance of some process's share could be loaded
    failed_utterances: int = 0  # utterances that could not be loaded, over all processes
    load_errors: list[str] = field(default_factory=list)  # this process's, one line each


def ctc_loss_sum(
    net: nn.Module,
    batch: dict,
    device: torch.device,
    dtype: torch.dtype,
    spec_augment: nn.Module | None = None,
) -> torch.Tensor:
    """Sum over the batch's utterances of CTC loss / target length (as reduction="mean"
    weighs each one): the forward pass of `net` (a `Recogniser`, or one in
    DistributedDataParallel) under autocast to `dtype`, the CTC loss in float32."""
    wavs = batch["wavs"].to(device, non_blocking=True)  # (B, S)
    wav_lens = batch["wav_lens"].to(device, non_blocking=True)  # (B,)
    with autocast(device, dtype):
        log_probs, out_lens = net(wavs, wav_lens, spec_augment)  # (B, T', V), (B,)
    tokens = batch["tokens"].to(device)  # (B, L)
    token_lens = batch["token_lens"].to(device)  # (B,)
    losses = nn.functional.ctc_loss(
        log_probs.float().transpose(0, 1),  # (T', B, V)
        tokens,
        out_lens,
        token_lens,
        blank=0,
        reduction="none",
        zero_infinity=True,
    )  # (B,)
    return (losses / token_lens.clamp(min=1)).sum()


def split_batch(batch: dict, pieces: int) -> list[dict]:
    """A collated batch -> up to `pieces` smaller batches (padding trimmed to each).

    >>> b = {"wavs": torch.zeros(3, 9), "wav_lens": torch.tensor([9, 4, 2]),
    ...      "tokens": torch.zeros(3, 5, dtype=torch.long), "token_lens": torch.tensor([5, 2, 1]),
    ...      "indices": torch.tensor([7, 8, 9])}
    >>> [(p["wavs"].shape[1], p["tokens"].shape[1], p["indices"].tolist())
    ...  for p in split_batch(b, 2)]
    [(9, 5, [7, 8]), (2, 1, [9])]
    """
    out = []
    for rows in torch.arange(len(batch["wav_lens"])).tensor_split(pieces):
        if len(rows) == 0:
            continue
        wav_lens, token_lens = batch["wav_lens"][rows], batch["token_lens"][rows]
        out.append(
            {
                "wavs": batch["wavs"][rows, : int(wav_lens.max())],
                "wav_lens": wav_lens,
                "tokens": batch["tokens"][rows, : max(int(token_lens.max()), 1)],
                "token_lens": token_lens,
                "indices": batch["indices"][rows],
            }
        )
    return out


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure (a RuntimeError or MemoryError)."""
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


def usable_batches(
    batches: list[dict], group: DistContext, device: torch.device
) -> tuple[list[tuple[dict, float]], StepResult]:
    """The batches every process can train on, each with its utterance count over all
    processes, and a StepResult (loss None) with the load errors and left-out batches counted.

    A batch of which some process has nothing left (collate leaves out utterances that failed
    to load) is left out on every process: one all-reduce decides it for all.
    """
    n = len(batches)
    counts = [float(len(b["wav_lens"])) for b in batches]
    empty = [float(c == 0) for c in counts]
    errors = [error for b in batches for error in b.get("errors", [])]
    reduced = all_reduce_sum([*counts, *empty, float(len(errors))], group, device)
    usable = [(b, reduced[j]) for j, b in enumerate(batches) if reduced[n + j] == 0]
    report = StepResult(
        loss=None,
        unloadable_batches=n - len(usable),
        failed_utterances=round(reduced[-1]),
        load_errors=errors,
    )
    return usable, report


def accumulate_gradients(
    batches: list[tuple[dict, float]],
    loss_sum: LossSum,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    world_size: int = 1,
    pieces: int = 1,
    ddp: nn.Module | None = None,
) -> float | None:
    """This process's gradients of the step's (batch, global count)s, each batch cut into
    `pieces`, left in the parameters' .grad (scaled by `scaler`, not yet averaged over
    processes); returns the step's loss (this process's part of the global mean), or None when
    out of memory (gradients zeroed).

    With `ddp` (the model in DistributedDataParallel, which `loss_sum` runs), every backward
    pass but the last runs in its no_sync(): one all-reduce for the step.
    """
    optimizer.zero_grad(set_to_none=True)
    chunks = [
        (chunk, world_size / global_count / len(batches))
        for batch, global_count in batches
        for chunk in (split_batch(batch, pieces) if pieces > 1 else [batch])
    ]
    total = 0.0
    try:
        for i, (chunk, weight) in enumerate(chunks):
            quiet = ddp is not None and i < len(chunks) - 1
            with ddp.no_sync() if quiet else contextlib.nullcontext():
                loss = loss_sum(chunk) * weight
                scaler.scale(loss).backward()
            total += float(loss.detach()) / world_size
        return total
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
    optimizer.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return None


def accumulate_in_pieces(
    batches: list[tuple[dict, float]],
    loss_sum: LossSum,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    group: DistContext,
    device: torch.device,
) -> tuple[float | None, int]:
    """`accumulate_gradients`, redone by every process in halves, quarters... while any runs
    out of memory. Returns the loss (None when a process cannot cut its share any finer: the
    step is then left out by all, gradients zeroed) and the number of redos."""
    largest = max(len(b["wav_lens"]) for b, _ in batches)
    pieces, splits = 1, 0
    while True:
        total = accumulate_gradients(batches, loss_sum, optimizer, scaler, group.world_size, pieces)
        # Every process learns whether any ran out of memory, and whether one of those cannot
        # cut its share any finer: all then redo the step in smaller pieces, or all leave it
        # out, making the same collective calls.
        failed, stuck = all_reduce_sum(
            [float(total is None), float(total is None and pieces >= largest)], group, device
        )
        if not failed:
            return total, splits
        optimizer.zero_grad(set_to_none=True)
        if stuck:
            return None, splits
        pieces *= 2
        splits += 1


def apply_gradients(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    group: DistContext,
    device: torch.device,
    loss: float,
    grad_clip: float,
) -> tuple[float, bool]:
    """Unscale and clip the gradients (averaged over processes already), then update the
    weights unless the loss or the gradient norm is not finite. Returns the loss summed over
    processes (NaN when the update was skipped for a non-finite value) and whether the
    optimizer stepped.

    With loss scaling (fp16) the scaler decides: it skips a step with an inf/NaN gradient and
    lowers its scale (the optimizer did not step, the loss is returned as it was).
    """
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    (loss,) = all_reduce_sum([loss], group, device)
    if not scaler.is_enabled() and not (math.isfinite(loss) and torch.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        return math.nan, False
    scale = scaler.get_scale() if scaler.is_enabled() else 0.0
    scaler.step(optimizer)
    scaler.update()
    return loss, not scaler.is_enabled() or scaler.get_scale() >= scale


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    group: DistContext,
    device: torch.device,
    batches: list[dict],
    loss_sum: LossSum,
    grad_clip: float,
    ddp: nn.Module | None = None,
) -> StepResult:
    """One optimizer step over `batches` (this process's shares of the step's global batches).

    `loss_sum` runs the forward pass (`ctc_loss_sum`), through `ddp` (the model in
    DistributedDataParallel) when given; rank 0's buffers (BatchNorm statistics) are copied to
    every process first. Raises StepOutOfMemory when out of memory with `ddp`.
    """
    model.train()
    usable, report = usable_batches(batches, group, device)
    if not usable:
        return report
    broadcast_tensors(list(model.buffers()), group)
    if ddp is not None:
        loss = accumulate_gradients(usable, loss_sum, optimizer, scaler, group.world_size, ddp=ddp)
        if loss is None:
            raise StepOutOfMemory(f"out of memory on process {group.rank}")
    else:
        loss, report.splits = accumulate_in_pieces(
            usable, loss_sum, optimizer, scaler, group, device
        )
        if loss is None:
            report.out_of_memory_batches = len(usable)
            return report
        average_gradients(list(model.parameters()), group)
    report.loss, report.stepped = apply_gradients(
        model, optimizer, scaler, group, device, loss, grad_clip
    )
    return report
