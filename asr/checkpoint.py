"""Checkpoints: atomic save, safe load (weights_only), and rebuilding a model from one.

A checkpoint is a plain dict of tensors and Python primitives:
    version, config (features / model / ...), tokenizer, model (state dict incl. CMVN),
    and for training: optimizer, scheduler, scaler, rng, progress.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from asr.features import FeatureConfig
from asr.model import ModelConfig, Recogniser
from asr.tokenizers import Tokenizer, tokenizer_from_state

VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the cause."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save through a temporary file + rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save({"version": VERSION, **state}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict:
    """Load on CPU with weights_only=True (no arbitrary code from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({cause})") from None
    if not isinstance(state, dict) or state.get("version") != VERSION:
        raise CheckpointError(f"{path}: not a checkpoint of this toolkit (version {VERSION})")
    return state


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


def recogniser_from_state(state: dict) -> tuple[Recogniser, Tokenizer]:
    """Rebuild the recogniser (weights loaded, eval mode) and tokenizer from a checkpoint dict."""
    cfg = state["config"]
    model = Recogniser(FeatureConfig(**cfg["features"]), ModelConfig(**cfg["model"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, tokenizer_from_state(state["tokenizer"])
