"""Audio input: read a file (or take an array), mix to mono, resample, check it is usable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

# An utterance longer than this is almost surely a wrong file (a whole recording, not a segment).
MAX_SECONDS = 600.0


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and the cause."""


def _check(samples: np.ndarray, sample_rate: int, name: str, max_seconds: float) -> None:
    if samples.size == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    seconds = samples.shape[0] / sample_rate
    if seconds > max_seconds:
        raise AudioError(f"{name}: audio is {seconds:.1f} s long, over the {max_seconds:g} s limit")


def to_mono_resampled(
    samples: np.ndarray,
    source_rate: int,
    target_rate: int,
    name: str = "<array>",
    max_seconds: float = MAX_SECONDS,
) -> torch.Tensor:
    """(S,) or (S, C) array at `source_rate` -> (S',) float32 tensor at `target_rate`."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    elif samples.ndim != 1:
        raise AudioError(
            f"{name}: expected 1-D or (samples, channels) audio, got shape {samples.shape}"
        )
    _check(samples, source_rate, name, max_seconds)
    if source_rate != target_rate:
        samples = soxr.resample(samples, source_rate, target_rate, quality="HQ").astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(samples))


def load_audio(
    path: str | Path, sample_rate: int, max_seconds: float = MAX_SECONDS
) -> torch.Tensor:
    """Read any file libsndfile reads (wav, flac, ogg, mp3, NIST SPHERE) -> (S,) mono float32.

    Raises AudioError naming the file when it is missing, unreadable, empty, non-finite or too long.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(f"{path}: cannot read audio ({err})") from None
    return to_mono_resampled(samples, rate, sample_rate, str(path), max_seconds)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header; AudioError when the header cannot be read."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(f"{path}: cannot read audio header ({err})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    return info.frames / info.samplerate
