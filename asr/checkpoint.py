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


def save_checkpoint(path: str | Path, state: dict, keep_previous: bool = False) -> None:
    """torch.save through a temporary file, fsync of file and folder, then rename: a crash or
    kill never leaves a half-written file, and a failed write (a full disk) leaves the old one.

    With `keep_previous`, the file being replaced is kept as PATH's `previous_of` name, so that
    one intact checkpoint survives even a disk that corrupts the newest.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            os.replace(path, previous_of(path))
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(
            f"{path}: cannot write the checkpoint ({err.strerror or err}); "
            "the previous one is left as it was"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def previous_of(path: Path) -> Path:
    """Where `save_checkpoint(keep_previous=True)` keeps the file it replaced: last.prev.pt."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_resumable(path: str | Path) -> tuple[dict, Path]:
    """The checkpoint at `path`, or when it is unreadable (a truncated or empty file) the one
    it replaced (`previous_of`), saying so; CheckpointError naming both when neither loads."""
    path = Path(path)
    try:
        return load_checkpoint(path), path
    except CheckpointError as err:
        previous = previous_of(path)
        if not previous.is_file():
            raise
        state = load_checkpoint(previous)
        print(f"warning: {err}; resuming from {previous} (the checkpoint before it) instead")
        return state, previous


class Checkpoint(dict):
    """A loaded checkpoint dict that remembers its file (`path`), for error messages.
    (save_checkpoint writes a plain dict, so the class never reaches a file.)"""

    path: Path | None = None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load on CPU with weights_only=True (no arbitrary code from the file)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({cause})") from None
    version = state.get("version") if isinstance(state, dict) else None
    if isinstance(version, int) and version > VERSION:
        raise CheckpointError(
            f"{path}: written by a newer version of this toolkit (checkpoint version {version}, "
            f"this one reads version {VERSION}): upgrade rnn-asr to use it"
        )
    if version != VERSION:
        raise CheckpointError(f"{path}: not a checkpoint of this toolkit (version {VERSION})")
    loaded = Checkpoint(state)
    loaded.path = path
    return loaded


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
    """Rebuild the recogniser (weights loaded, eval mode) and tokenizer from a checkpoint dict.

    CheckpointError, naming the file when `state` came from `load_checkpoint`, when the
    checkpoint has no model, its config is of another shape, its weights do not fit the model
    its config describes, or its tokenizer's vocabulary differs from the model's output.
    """
    name = getattr(state, "path", None) or "checkpoint"
    try:
        cfg = state["config"]
        model = Recogniser(FeatureConfig(**cfg["features"]), ModelConfig(**cfg["model"]))
        weights, tokenizer_state = state["model"], state["tokenizer"]
    except KeyError as err:
        raise CheckpointError(f"{name}: not a model checkpoint (no {err} in it)") from None
    except TypeError as err:  # a config field this version does not know, or lacks
        raise CheckpointError(f"{name}: model config of another version ({err})") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:  # missing / unexpected keys, or a size mismatch
        detail = " ".join(str(err).split())
        raise CheckpointError(
            f"{name}: the weights do not fit the model its config describes ({detail[:300]})"
        ) from None
    tokenizer = tokenizer_from_state(tokenizer_state)
    outputs = model.acoustic.cfg.vocab_size
    if tokenizer.vocab_size != outputs:
        raise CheckpointError(
            f"{name}: its tokenizer has {tokenizer.vocab_size} units but the model has "
            f"{outputs} outputs (a tokenizer from another model?)"
        )
    model.eval()
    return model, tokenizer
