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
from asr.text import CharTokenizer

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


def recogniser_from_state(state: dict) -> tuple[Recogniser, CharTokenizer]:
    """Rebuild the recogniser (weights loaded, eval mode) and tokenizer from a checkpoint dict."""
    cfg = state["config"]
    model = Recogniser(FeatureConfig(**cfg["features"]), ModelConfig(**cfg["model"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, CharTokenizer.from_state_dict(state["tokenizer"])
