"""Audio input: read a file (or take an array), mix to mono, resample, check it is usable."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

# An utterance longer than this is almost surely a wrong file (a whole recording, not a segment).
MAX_SECONDS = 600.0
# Shorter than this (a few samples) holds no speech and gives the model not one feature frame.
MIN_SECONDS = 0.01


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and the cause."""


def _check(samples: np.ndarray, sample_rate: int, name: str, max_seconds: float) -> None:
    if samples.size == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    seconds = samples.shape[0] / sample_rate
    if seconds < MIN_SECONDS:
        raise AudioError(
            f"{name}: audio too short ({samples.shape[0]} samples, under {1000 * MIN_SECONDS:g} ms)"
        )
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
    path: str | Path,
    sample_rate: int,
    max_seconds: float = MAX_SECONDS,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Read any file libsndfile reads (wav, flac, ogg, mp3, NIST SPHERE) -> (S,) mono float32.

    With `offset` / `duration` (seconds), only that segment of the file (the NeMo manifest
    convention): a segment may end up to `SEGMENT_SLACK` seconds past the file's end (the
    frames that are there are read); one that starts past the end, or ends further past it, is
    an error. Raises AudioError naming the file when it is missing, unreadable, empty,
    non-finite or too long.
    """
    path = Path(path)
    _check_readable(path)
    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            _check_complete(path, f)
            start, frames = _segment_frames(path, f.frames, rate, offset, duration)
            seconds = (f.frames - start if frames < 0 else frames) / rate
            if seconds > max_seconds:  # refused from the header, before reading hours of audio
                raise AudioError(
                    f"{path}: audio is {seconds:.1f} s long, over the {max_seconds:g} s limit"
                )
            if start:
                f.seek(start)
            samples = f.read(frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        if isinstance(err, AudioError):
            raise
        raise AudioError(f"{path}: cannot read audio ({err})") from None
    return to_mono_resampled(samples, rate, sample_rate, str(path), max_seconds)


def _check_complete(path: Path, f: sf.SoundFile) -> None:
    """AudioError when a WAV file holds less sample data than its header declares (a copy cut
    short): libsndfile would silently read the part that is there. Streamed WAVs whose header
    declares 0 or 0xFFFFFFFF bytes (length unknown when written) are not checked."""
    if f.format != "WAV":
        return
    with open(path, "rb") as raw:
        head = raw.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        while chunk := raw.read(8):
            if len(chunk) < 8:
                return
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                declared = size
                break
            raw.seek(size + (size & 1), 1)  # chunks are padded to an even size
        else:
            return
        held = path.stat().st_size - raw.tell()
    if declared in (0, 0xFFFFFFFF) or held >= declared:
        return
    raise AudioError(
        f"{path}: truncated: the header declares {declared} bytes of samples, the file holds "
        f"only {held}"
    )


# Segment times (Kaldi `segments`, lhotse supervisions) are often rounded: a segment may end
# this many seconds past the end of its file.
SEGMENT_SLACK = 0.1


def _segment_end(path: Path, length: float, offset: float, duration: float | None) -> float:
    """End (seconds) of the segment in a file of `length` seconds; AudioError if it does not fit."""
    if offset < 0 or (duration is not None and duration <= 0):
        raise AudioError(f"{path}: bad segment (offset {offset:g} s, duration {duration} s)")
    end = length if duration is None else offset + duration
    if offset >= length or end > length + SEGMENT_SLACK:
        raise AudioError(
            f"{path}: segment {offset:g}-{end:g} s lies past the end of the audio ({length:.3f} s)"
        )
    return min(end, length)


def _segment_frames(
    path: Path, total: int, rate: int, offset: float, duration: float | None
) -> tuple[int, int]:
    """(first frame, frame count, -1 = to the end) of a segment of a `total`-frame file."""
    if offset == 0 and duration is None:
        return 0, -1
    end = _segment_end(path, total / rate, offset, duration)
    start = round(offset * rate)
    return start, max(1, round(end * rate) - start)


def _check_readable(path: Path) -> None:
    """AudioError for a path that is missing, a folder, or not readable by this user (libsndfile
    would only say "System error")."""
    if path.is_dir():
        raise AudioError(f"{path}: a folder, not an audio file")
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied (this user cannot read it)")


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header; AudioError when the header cannot be read."""
    _check_readable(Path(path))
    try:
        with sf.SoundFile(str(path)) as info:
            _check_complete(Path(path), info)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        if isinstance(err, AudioError):
            raise
        raise AudioError(f"{path}: cannot read audio header ({err})") from None
    if info.frames <= 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if info.frames < MIN_SECONDS * info.samplerate:
        raise AudioError(
            f"{path}: audio too short ({info.frames} samples, under {1000 * MIN_SECONDS:g} ms)"
        )
    return info.frames / info.samplerate


def segment_duration(path: str | Path, offset: float = 0.0, duration: float | None = None) -> float:
    """Seconds of audio `load_audio(path, ..., offset=, duration=)` reads, from the header alone.

    AudioError when the header cannot be read or the segment does not fit in the file.
    """
    length = audio_duration(path)
    if offset == 0 and duration is None:
        return length
    return _segment_end(Path(path), length, offset, duration) - offset


def read_blocks(
    path: str | Path, sample_rate: int, block_seconds: float = 30.0
) -> Iterator[np.ndarray]:
    """Stream a file of any length as (S,) mono float32 blocks at `sample_rate`.

    At most `block_seconds` of the file is read at a time (soundfile's block reading) and
    resampled by one streaming resampler, so the blocks join into exactly what resampling the
    whole file at once gives, without the whole file ever being in memory. Blocks may differ in
    length (the resampler holds back a few samples); the last one flushes it. No length limit.
    Raises AudioError naming the file when it is missing, unreadable, empty or non-finite.
    """
    path = Path(path)
    _check_readable(path)
    try:
        with sf.SoundFile(str(path)) as f:
            rate = f.samplerate
            if f.frames == 0:
                raise AudioError(f"{path}: empty audio (0 samples)")
            _check_complete(path, f)
            stream = None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1)
            block = max(1, round(block_seconds * rate))
            done = 0
            for chunk in f.blocks(blocksize=block, dtype="float32", always_2d=True):
                mono = np.ascontiguousarray(chunk.mean(axis=1), dtype=np.float32)
                if not np.isfinite(mono).all():
                    at = (done + np.flatnonzero(~np.isfinite(mono))[0]) / rate
                    raise AudioError(
                        f"{path}: audio contains NaN or infinite samples at {at:.2f} s"
                    )
                done += len(mono)
                yield mono if stream is None else stream.resample_chunk(mono)
            if stream is not None:
                yield stream.resample_chunk(np.zeros(0, np.float32), last=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        if isinstance(err, AudioError):
            raise
        raise AudioError(f"{path}: cannot read audio ({err})") from None


def check_samples(path: str | Path, block_seconds: float = 30.0) -> None:
    """Read every sample of a file once, at its own rate, `block_seconds` at a time (bounded
    memory): AudioError naming the file for NaN or infinite samples, which no header shows, and
    for all that `read_blocks` refuses. For importers, which otherwise read headers only."""
    _check_readable(Path(path))
    try:
        rate = sf.info(str(path)).samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(f"{path}: cannot read audio ({err})") from None
    for _ in read_blocks(path, rate, block_seconds):
        pass
