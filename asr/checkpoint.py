"""Checkpoints: atomic save, safe load (weights_only), and rebuilding a model from one.

A checkpoint is a plain dict of tensors and Python primitives:
    version, config (features / model / ...), tokenizer, model (state dict incl. CMVN),
    and for training: optimizer, scheduler, scaler, rng, progress.
"""

from __future__ import annotations

import os
import pickle
import re
import secrets
import zipfile
from pathlib import Path

import torch

from asr.config import ConfigError, known_fields
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
    fd, tmp = _new_temp_file(path)
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


def _new_temp_file(path: Path) -> tuple[int, Path]:
    """A new, empty hidden file beside `path`, open for writing, created with mode 0666 less
    the umask: the mode open() gives every other output (mkstemp's would be 0600)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


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
    """Load on CPU with weights_only=True (no arbitrary code from the file).

    CheckpointError, one line naming the file and what it is, for a missing file, a folder
    (with the .pt files it holds), a file of another kind, a truncated checkpoint, and a
    checkpoint of another program or version.
    """
    path = Path(path)
    _check_is_torch_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused a Python object
        found = re.search(r"GLOBAL (\S+) was not", str(err))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{path}: not a readable checkpoint: it holds Python objects{what}, which are not "
            "loaded for safety (a checkpoint holds only tensors and plain data)"
        ) from None
    except Exception as err:  # torch raises several types for corrupt files
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


# The first bytes of files that are given as a checkpoint by mistake.
MAGIC = {
    b"RIFF": "WAV audio",
    b"fLaC": "FLAC audio",
    b"OggS": "Ogg audio",
    b"ID3": "MP3 audio",
    b"NIST_1A": "SPHERE audio",
    b"FORM": "AIFF audio",
}


def _check_is_torch_file(path: Path) -> None:
    """CheckpointError unless `path` is a file torch.save could have written whole: a complete
    zip archive with a data.pkl (or the older pickle format, which torch.load then judges)."""
    if path.is_dir():
        held = ", ".join(sorted(p.name for p in path.glob("*.pt"))) or "no .pt file"
        raise CheckpointError(f"{path}: a folder, not a checkpoint; it holds {held}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    with path.open("rb") as f:
        head = f.read(512)
    if not head:
        raise CheckpointError(f"{path}: an empty file, not a checkpoint")
    if head.startswith(b"\x80"):  # a pickle: torch.save's format before PyTorch 1.6
        return
    if not head.startswith(b"PK"):
        raise CheckpointError(f"{path}: not a checkpoint ({_describe(head)})")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        raise CheckpointError(
            f"{path}: truncated checkpoint (the file ends before its index: an interrupted "
            "copy or write)"
        ) from None
    if not any(name.endswith("/data.pkl") for name in names):
        raise CheckpointError(f"{path}: not a checkpoint (a zip archive, not a PyTorch file)")


def _describe(head: bytes) -> str:
    """What the first bytes of a file say it is."""
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            return kind
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "MP3 audio"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""  # (a multi-byte character cut at 512 bytes is rare enough to call binary)
    if text and all(c.isprintable() or c in "\t\r\n" for c in text):
        return "a text file"
    return "not a file torch.save writes"


def recogniser_from_state(state: dict) -> tuple[Recogniser, Tokenizer]:
    """Rebuild the recogniser (weights loaded, eval mode) and tokenizer from a checkpoint dict.

    CheckpointError, naming the file when `state` came from `load_checkpoint`, when the
    checkpoint has no model, its config is of another shape, its weights do not fit the model
    its config describes, or its tokenizer's vocabulary differs from the model's output.
    """
    name = getattr(state, "path", None) or "checkpoint"
    try:
        cfg = state["config"]
        features = FeatureConfig(**known_fields("features", cfg["features"], str(name)))
        model = Recogniser(features, ModelConfig(**known_fields("model", cfg["model"], str(name))))
        weights, tokenizer_state = state["model"], state["tokenizer"]
    except KeyError as err:
        raise CheckpointError(f"{name}: not a model checkpoint (no {err} in it)") from None
    except TypeError as err:  # a config field this version does not know, or lacks
        raise CheckpointError(f"{name}: model config of another version ({err})") from None
    except ConfigError as err:  # a removed option that is on
        raise CheckpointError(str(err)) from None
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
