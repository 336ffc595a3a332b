"""Training on several processes (torchrun): process group, batch sharding, small collectives.

`torchrun --nproc_per_node=N -m asr train ...` starts N processes with RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous address in their environment (multi-node: torchrun's own
`--nnodes` / `--rdzv-*` flags). `init_distributed` joins them into one process group (NCCL on
CUDA, gloo on the CPU). Every process builds the same global batches from the same seeded
sampler and takes its share of each (`ShardedBatchSampler`), so all ranks take the same number
of steps, and a run resumes with any number of processes: progress counts global batches.
Gradients are averaged by DistributedDataParallel during the backward pass (`data_parallel`),
or, with `train.ddp=false`, by one all-reduce after it (`average_gradients`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Sampler

from asr.data import BucketBatchSampler


@dataclass(frozen=True)
class DistContext:
    rank: int = 0  # this process among all of them
    world_size: int = 1  # processes in all
    local_rank: int = 0  # this process on its machine (its GPU index)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, logs and writes checkpoints."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group torchrun set up (a no-op for a single process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    ctx = DistContext(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return ctx


def process_device(device: torch.device, ctx: DistContext) -> torch.device:
    """With several processes on CUDA, each takes the GPU of its local rank."""
    if ctx.enabled and device.type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
        return torch.device("cuda", ctx.local_rank)
    return device


class ShardedBatchSampler(Sampler[list[int]]):
    """Rank r's share of every global batch: its utterances r, r + N, r + 2N, ...

    The global batches are sorted by duration inside, so the shares are of similar length;
    `BucketBatchSampler(min_batch_size=N)` makes every global batch hold at least N utterances.

    >>> base = BucketBatchSampler([1.0] * 6, max_batch_seconds=3.0, shuffle=False, min_batch_size=2)
    >>> [list(ShardedBatchSampler(base, rank, 2)) for rank in (0, 1)]
    [[[0, 2], [3, 5]], [[1], [4]]]
    """

    def __init__(self, base: BucketBatchSampler, rank: int, world_size: int):
        self.base = base
        self.rank = rank
        self.world_size = world_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.base.set_epoch(epoch, start_batch)

    def batches(self) -> list[list[int]]:
        return self.base.batches()

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.base:
            yield batch[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self.base)


def all_reduce_sum(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Elementwise sum over all processes (the values themselves for one process)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_from_main(values: list[int], ctx: DistContext, device: torch.device) -> list[int]:
    """Rank 0's values on every process (decisions such as the planned schedule length)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return t.tolist()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors]) if tensors else torch.zeros(0)


def _unflat(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    sizes = [t.numel() for t in like]
    return [part.view_as(t) for part, t in zip(flat.split(sizes), like, strict=True)]


def broadcast_tensors(tensors: list[torch.Tensor], ctx: DistContext) -> None:
    """Overwrite `tensors` (floats and ints, as a module's parameters and buffers) with rank
    0's, in place: one collective per dtype."""
    if not ctx.enabled:
        return
    for dtype in sorted({t.dtype for t in tensors}, key=str):
        group = [t for t in tensors if t.dtype == dtype]
        flat = _flat([t.detach() for t in group])
        dist.broadcast(flat, src=0)
        with torch.no_grad():
            for t, value in zip(group, _unflat(flat, group), strict=True):
                t.copy_(value)


def data_parallel(model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """`model` in DistributedDataParallel: rank 0's parameters and buffers given to every
    process now, gradients averaged over the processes during each backward pass (outside
    `no_sync()`). Buffers are not re-sent at every forward: the trainer sends rank 0's once a
    step (`broadcast_tensors`), also in the mode without DistributedDataParallel."""
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def average_gradients(params: list[torch.nn.Parameter], ctx: DistContext) -> None:
    """Every parameter's gradient := its mean over the processes (a missing one counts as 0).

    The mode `train.ddp=false`: one all-reduce of all gradients, after every process has
    finished its backward passes of the step. Unlike DistributedDataParallel's all-reduce during
    the backward pass, no process waits inside a collective while another one may still fail
    (out of memory) and redo its share in pieces. For these models (a few million parameters)
    one flat all-reduce a step is cheap next to the step itself.
    """
    if not ctx.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = _flat(grads)
    dist.all_reduce(flat)
    flat /= ctx.world_size
    for p, value in zip(params, _unflat(flat, grads), strict=True):
        p.grad = value  # a view of the reduced buffer
