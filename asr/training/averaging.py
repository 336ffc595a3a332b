"""Weight averaging: the model's weights at the last N validations, kept on disk, and their
element-wise mean (train.average_last)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from asr.checkpoint import load_checkpoint, save_checkpoint


def average_weights(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of model state dicts (integer buffers such as BatchNorm's batch
    counter are taken from the last).

    >>> a, b = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, 6.0])}
    >>> average_weights([a, b])["w"].tolist()
    [2.0, 4.0]
    """
    if not states:
        raise ValueError("no weights to average")
    mean = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            mean[key] = sum(s[key].double() for s in states).div(len(states)).to(last.dtype)
        else:
            mean[key] = last.clone()
    return mean


class Snapshots:
    """Model state dicts saved as FOLDER/step-NNNNNNNN.pt; only the last `keep` are kept."""

    def __init__(self, folder: str | Path, keep: int):
        self.folder = Path(folder)
        self.keep = keep

    def paths(self) -> list[Path]:
        """The kept snapshots, oldest first."""
        return sorted(self.folder.glob("step-*.pt"))

    def add(self, step: int, weights: dict[str, torch.Tensor]) -> None:
        """Save the weights of `step` (atomically), then delete all but the last `keep`."""
        save_checkpoint(self.folder / f"step-{step:08d}.pt", {"model": weights})
        for old in self.paths()[: -self.keep]:
            old.unlink()

    def mean(self) -> dict[str, torch.Tensor]:
        """`average_weights` of the kept snapshots."""
        return average_weights([load_checkpoint(p)["model"] for p in self.paths()])


@contextlib.contextmanager
def weights_swapped(model: nn.Module, weights: dict[str, torch.Tensor]) -> Iterator[None]:
    """`model` runs with `weights` inside the block; its own weights (copied) come back after."""
    own = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(weights)
    try:
        yield
    finally:
        model.load_state_dict(own)
