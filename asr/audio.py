"""Audio input: read a file (or take an array), mix to mono, resample, check it is usable.

Files are read by libsndfile (soundfile) when it opens them: wav, flac, ogg (vorbis, opus),
mp3, NIST SPHERE, aiff, au. What it cannot open (m4a/AAC, mp4, mov, webm, mkv, ...) goes to
FFmpeg through PyAV (the optional `formats` extra), which decodes the first audio stream of the
container frame by frame. Either way the samples are mixed to mono (the mean of the channels)
at the file's own rate and then resampled by soxr, so a file gives the same audio whatever
reads it.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import soundfile as sf
import soxr
import torch

# An utterance longer than this is almost surely a wrong file (a whole recording, not a segment).
MAX_SECONDS = 600.0
# Shorter than this (a few samples) holds no speech and gives the model not one feature frame.
MIN_SECONDS = 0.01

# File suffixes searched for in folders: those libsndfile reads, and those FFmpeg (PyAV) reads
# beyond them. The content decides which reader opens a file, not its suffix.
SOUNDFILE_SUFFIXES = frozenset(
    {".wav", ".flac", ".ogg", ".mp3", ".sph", ".opus", ".aiff", ".aif", ".au"}
)
FFMPEG_SUFFIXES = frozenset(
    {".m4a", ".m4b", ".aac", ".mp4", ".m4v", ".mov", ".3gp", ".webm", ".mkv", ".mka", ".wma"}
    | {".wmv", ".avi", ".amr", ".ac3"}
)
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | FFMPEG_SUFFIXES
# What installs PyAV (FFmpeg comes inside its wheels).
FORMATS_EXTRA = "pip install 'rnn-asr[formats]'"


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
    """Read any file libsndfile or (with PyAV) FFmpeg reads -> (S,) mono float32.

    With `offset` / `duration` (seconds), only that segment of the file (the NeMo manifest
    convention): a segment may end up to `SEGMENT_SLACK` seconds past the file's end (the
    frames that are there are read); one that starts past the end, or ends further past it, is
    an error. Raises AudioError naming the file when it is missing, unreadable, empty,
    non-finite or too long.
    """
    path = Path(path)
    _check_readable(path)
    try:
        with _open(path) as f:
            if isinstance(f, _Decoder):
                rate = f.rate
                samples = f.read(offset, duration, max_seconds)
            else:
                rate = f.samplerate
                samples = _read_soundfile(path, f, offset, duration, max_seconds)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        if isinstance(err, AudioError):
            raise
        raise AudioError(f"{path}: cannot read audio ({err})") from None
    return to_mono_resampled(samples, rate, sample_rate, str(path), max_seconds)


def _read_soundfile(
    path: Path, f: sf.SoundFile, offset: float, duration: float | None, max_seconds: float
) -> np.ndarray:
    """(S, C) float32: the segment of an open libsndfile file (all of it by default)."""
    rate = f.samplerate
    _check_complete(path, f)
    start, frames = _segment_frames(path, f.frames, rate, offset, duration)
    seconds = (f.frames - start if frames < 0 else frames) / rate
    if seconds > max_seconds:  # refused from the header, before reading hours of audio
        raise AudioError(f"{path}: audio is {seconds:.1f} s long, over the {max_seconds:g} s limit")
    if start:
        f.seek(start)
    return f.read(frames, dtype="float32", always_2d=True)


def _open(path: Path, what: str = "audio") -> sf.SoundFile | _Decoder:
    """libsndfile's reader of `path` or, for a file it cannot open, FFmpeg's (`_Decoder`).

    AudioError naming the file when neither opens it ("cannot read {what}"), or when FFmpeg
    would be needed and PyAV is not installed."""
    try:
        return sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        return _Decoder(path, err, what)


def _import_av() -> ModuleType | None:
    """The PyAV module, or None when the `formats` extra is not installed."""
    try:
        import av
    except ImportError:
        return None
    return av


# A segment starting this far into a file is reached by seeking (the container's index), not
# by decoding everything before it; decoding restarts this long before the segment, so the
# decoder's state there (AAC's overlapping windows, Opus's prediction) is what it is when the
# file is decoded from its start.
SEEK_AFTER_SECONDS = 5.0
PREROLL_SECONDS = 1.0
# An MP4/MOV header that declares more audio than the stream holds, by more than this, marks a
# file cut short.
TRUNCATED_SECONDS = 0.05
# FFmpeg's demuxers (by name) whose headers declare the audio's length: MP4/MOV's counts its
# samples; Matroska/WebM's is in milliseconds (absent in a file recorded live). For the others
# (raw AAC, AMR, AC-3 streams) FFmpeg estimates it from the bit rate: the samples are counted.
MP4_DEMUXER = "mov,mp4,m4a,3gp,3g2,mj2"
HEADER_DURATION_DEMUXERS = frozenset(
    {MP4_DEMUXER, "matroska,webm", "asf", "avi", "wav", "w64", "caf", "flac", "ogg", "aiff"}
)

_noted: set[str] = set()


def _note(message: str) -> None:
    """Print `message` on stderr once per process."""
    if message not in _noted:
        _noted.add(message)
        print(f"note: {message}", file=sys.stderr)


class _Decoder:
    """The first audio stream of a file FFmpeg reads (through PyAV), decoded frame by frame.

    `rate` is the rate of the decoded frames; `frames` the length (in samples at `rate`) that
    the container's header declares, None when it declares none; `exact` whether that length
    is counted in samples (MP4/MOV: decoding stops there, before the encoder's padding) or in
    time (Matroska/WebM, to the millisecond).
    A decoder reads the file once: open another to read it again.
    """

    def __init__(self, path: Path, libsndfile_error: Exception | None = None, what: str = "audio"):
        self.path = path
        # libsndfile knew the format but failed on it (a WAV with a damaged header): its reason
        # is the one to give if FFmpeg cannot read the file either.
        self.what = what
        self.libsndfile_says = f"{path}: cannot read {what} ({libsndfile_error})"
        self.recognised = libsndfile_error is not None and not (
            isinstance(libsndfile_error, sf.LibsndfileError) and libsndfile_error.code == 1
        )
        av = _import_av()
        if av is None:
            suffix = path.suffix.lower()
            if suffix in FFMPEG_SUFFIXES:
                raise AudioError(
                    f"{path}: {suffix} audio is read by FFmpeg through PyAV, which is not "
                    f"installed: {FORMATS_EXTRA}"
                )
            if self.recognised:
                raise AudioError(self.libsndfile_says)
            raise AudioError(
                f"{self.libsndfile_says}; m4a, mp4, mov, webm, mkv and more are read with "
                f"PyAV: {FORMATS_EXTRA}"
            )
        self.av = av
        self._open()
        self.frames = self._header_frames()
        self.exact = self.frames is not None and self.container.format.name == MP4_DEMUXER

    def _header_frames(self) -> int | None:
        """The audio's length in samples at `rate` as the header declares it, if it does."""
        if self.container.format.name not in HEADER_DURATION_DEMUXERS:
            return None
        tb = self.stream.time_base
        if self.stream.duration and tb:
            return round(self.stream.duration * tb * self.rate)
        tagged = _tag_seconds(self.stream.metadata.get("DURATION"))
        if tagged is not None:  # Matroska's per-track tag: the audio's, not a video's
            return round(tagged * self.rate)
        if self.container.duration:
            return round(self.container.duration * self.rate / self.av.time_base)
        return None

    def _fail(self, cause: str) -> AudioError:
        """The error to raise: libsndfile's when it knew the format, else FFmpeg's `cause`."""
        if hasattr(self, "container"):
            self.container.close()
        return AudioError(self.libsndfile_says if self.recognised else f"{self.path}: {cause}")

    def _open(self) -> None:
        """Open the container, pick its first audio stream and decode its first frame, which
        gives the rate of the decoded audio (the header's may differ: AAC with SBR)."""
        av = self.av
        try:
            self.container = av.open(str(self.path), metadata_errors="ignore")
        except av.FFmpegError as err:
            raise self._fail(
                f"cannot read {self.what}: neither libsndfile nor FFmpeg knows this format, or the "
                f"file is damaged ({_reason(err)})"
            ) from None
        if not self.container.streams.audio:
            kinds = sorted({s.type for s in self.container.streams})
            held = f"only {' and '.join(kinds)}" if kinds else "no streams"
            raise self._fail(f"no audio stream in the file ({held})")
        self.stream = self.container.streams.audio[0]
        if self.stream.codec_context is None:
            raise self._fail(f"cannot read {self.what}: FFmpeg has no decoder for its audio codec")
        self.seconds_done = 0.0  # how far decoding has got, for error messages
        self._frames = self._decode()
        first = next(self._frames, None)
        if first is None:
            raise self._fail("empty audio (0 samples)")
        self.origin: int | None = first[0]  # timestamp of the first sample
        self.rate = first[2]
        self._first = first

    def _decode(self) -> Iterator[tuple[int | None, np.ndarray, int]]:
        """(timestamp, (n,) mono float32, sample rate) of each frame from where the container
        stands; AudioError naming the file and the time for a damaged stream."""
        try:
            for frame in self.container.decode(self.stream):
                if frame.samples:
                    if frame.time is not None:
                        self.seconds_done = frame.time
                    yield frame.pts, _mono(frame), frame.sample_rate
        except self.av.FFmpegError as err:
            self.container.close()
            raise AudioError(
                f"{self.path}: cannot read audio: the audio stream breaks off at "
                f"{self.seconds_done:.2f} s (damaged or truncated: {_reason(err)})"
            ) from None

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.close()
        self._frames = None  # the generator refers to self: free both now, not at the next gc

    def _seek(self, start: int) -> tuple[Iterator[tuple[int | None, np.ndarray, int]], int]:
        """Frames from a point at most PREROLL_SECONDS before sample `start`, and the index of
        that point's first sample. Positions come from the frames' timestamps: exact in
        MP4/MOV (counted in samples), within a millisecond in Matroska/WebM. Where seeking
        fails, or lands after `start`, decoding restarts from the file's start."""
        tb = self.stream.time_base
        if self.origin is not None and tb:
            target = self.origin + int((start / self.rate - PREROLL_SECONDS) / tb)
            try:
                self.container.seek(target, stream=self.stream, backward=True)
                frames = self._decode()
                first = next(frames, None)
            except self.av.FFmpegError:
                first = None
            if first is not None and first[0] is not None:
                at = round((first[0] - self.origin) * tb * self.rate)
                if 0 <= at <= start:
                    return itertools.chain([first], frames), at
        self.container.close()
        self._open()
        return itertools.chain([self._first], self._frames), 0

    def chunks(self, start: int = 0) -> Iterator[np.ndarray]:
        """(n,) mono float32 pieces at `rate`, from sample `start` to the end of the stream;
        AudioError for a damaged stream, or one shorter than its MP4/MOV header says."""
        if start >= SEEK_AFTER_SECONDS * self.rate:
            frames, position = self._seek(start)
        else:
            frames, position = itertools.chain([self._first], self._frames), 0
        end = self.frames if self.exact else None
        for _, mono, rate in frames:
            if rate != self.rate:
                raise AudioError(
                    f"{self.path}: the sample rate changes in the stream ({self.rate} Hz, then "
                    f"{rate} Hz at {self.seconds_done:.2f} s)"
                )
            if end is not None:
                mono = mono[: max(0, end - position)]  # the encoder's padding after the end
            if position + len(mono) > start:
                yield mono[max(0, start - position) :]
            position += len(mono)
            if end is not None and position >= end:
                return
        if end is not None and position < end - TRUNCATED_SECONDS * self.rate:
            raise AudioError(
                f"{self.path}: truncated: the header declares {end / self.rate:.2f} s of audio, "
                f"the stream holds only {position / self.rate:.2f} s"
            )

    def length(self) -> int:
        """Samples at `rate`: from the header, or (when it has none) counted by decoding
        another reader of the file, with a note saying so."""
        if self.frames is None:
            _note(f"{self.path}: no duration in its header; measured by decoding the audio")
            with _Decoder(self.path) as other:
                self.frames = sum(len(chunk) for chunk in other.chunks())
        return self.frames

    def read(self, offset: float, duration: float | None, max_seconds: float) -> np.ndarray:
        """(S,) float32 at `rate`: the segment (`load_audio`'s `offset` / `duration`), all of
        the stream by default."""
        if offset == 0 and duration is None:
            start, count = 0, -1
        else:
            start, count = _segment_frames(self.path, self.length(), self.rate, offset, duration)
        if self.frames is not None:
            seconds = (self.frames - start if count < 0 else count) / self.rate
            if seconds > max_seconds:  # refused from the header, before decoding hours
                raise AudioError(
                    f"{self.path}: audio is {seconds:.1f} s long, over the {max_seconds:g} s limit"
                )
        limit = round(max_seconds * self.rate)
        pieces, held = [], 0
        for chunk in self.chunks(start):
            if count >= 0:
                chunk = chunk[: count - held]
            if held + len(chunk) <= limit:  # past the limit, only counted (bounded memory)
                pieces.append(chunk)
            held += len(chunk)
            if held == count:
                break
        if held > limit:
            raise AudioError(
                f"{self.path}: audio is {held / self.rate:.1f} s long, over the {max_seconds:g} s "
                "limit"
            )
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def _mono(frame) -> np.ndarray:
    """A PyAV AudioFrame (any sample format, planar or packed) -> (n,) float32, the mean of its
    channels; integer samples are scaled to [-1, 1) as libsndfile scales them."""
    data = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T  # (1, n * C) interleaved -> (C, n)
    if data.dtype == np.uint8:
        data = (data.astype(np.float32) - 128) / 128
    elif data.dtype.kind == "i":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    data = data.astype(np.float32, copy=False)
    return data[0] if channels == 1 else data.mean(axis=0)


def _tag_seconds(tag: str | None) -> float | None:
    """Seconds of a Matroska DURATION tag ("HH:MM:SS.nnnnnnnnn"); None when absent or odd.

    >>> _tag_seconds("01:02:03.500000000")
    3723.5
    """
    try:
        hours, minutes, seconds = (tag or "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _reason(err: Exception) -> str:
    """FFmpeg's reason in words ("Invalid data found when processing input")."""
    return getattr(err, "strerror", None) or str(err)


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
    """AudioError for a path that is missing, a folder, not readable by this user (libsndfile
    would only say "System error"), or empty (it would say "Format not recognised")."""
    if path.is_dir():
        raise AudioError(f"{path}: a folder, not an audio file")
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied (this user cannot read it)")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header; AudioError when the header cannot be read.

    A container whose header declares no duration (a WebM recorded live, raw AAC) is decoded
    to count its samples, with a note on stderr."""
    path = Path(path)
    _check_readable(path)
    try:
        with _open(path, "audio header") as info:
            if isinstance(info, _Decoder):
                frames, rate = info.length(), info.rate
            else:
                _check_complete(path, info)
                frames, rate = info.frames, info.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        if isinstance(err, AudioError):
            raise
        raise AudioError(f"{path}: cannot read audio header ({err})") from None
    if frames <= 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    if frames < MIN_SECONDS * rate:
        raise AudioError(
            f"{path}: audio too short ({frames} samples, under {1000 * MIN_SECONDS:g} ms)"
        )
    return frames / rate


def audio_sample_rate(path: str | Path) -> int:
    """The rate (Hz) a file's audio decodes at, from its header (FFmpeg's formats: from the
    first decoded frame; Opus always decodes at 48 kHz). AudioError when it cannot be read."""
    path = Path(path)
    _check_readable(path)
    try:
        with _open(path, "audio header") as f:
            return f.rate if isinstance(f, _Decoder) else f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        if isinstance(err, AudioError):
            raise
        raise AudioError(f"{path}: cannot read audio header ({err})") from None


def segment_duration(path: str | Path, offset: float = 0.0, duration: float | None = None) -> float:
    """Seconds of audio `load_audio(path, ..., offset=, duration=)` reads, from the header alone.

    AudioError when the header cannot be read or the segment does not fit in the file.
    """
    length = audio_duration(path)
    if offset == 0 and duration is None:
        return length
    return _segment_end(Path(path), length, offset, duration) - offset


def _soundfile_chunks(f: sf.SoundFile, block: int) -> Iterator[np.ndarray]:
    """(n,) mono float32 blocks of an open libsndfile file (the mean of its channels)."""
    for chunk in f.blocks(blocksize=block, dtype="float32", always_2d=True):
        yield np.ascontiguousarray(chunk.mean(axis=1), dtype=np.float32)


def _reblock(chunks: Iterator[np.ndarray], block: int) -> Iterator[np.ndarray]:
    """Pieces of any length -> blocks of `block` samples (the last may be shorter)."""
    held: list[np.ndarray] = []
    size = 0
    for chunk in chunks:
        held.append(chunk)
        size += len(chunk)
        if size >= block:
            joined = np.concatenate(held)
            cut = size // block * block
            yield from np.split(joined[:cut], cut // block)
            held, size = [joined[cut:]], size - cut
    if size:
        yield np.concatenate(held)


def read_blocks(
    path: str | Path, sample_rate: int | None, block_seconds: float = 30.0
) -> Iterator[np.ndarray]:
    """Stream a file of any length as (S,) mono float32 blocks at `sample_rate` (None: the
    file's own rate).

    At most `block_seconds` of the file is held at a time (libsndfile's block reading, or
    FFmpeg's frames gathered into blocks) and resampled by one streaming resampler, so the
    blocks join into exactly what resampling the whole file at once gives, without the whole
    file ever being in memory. Blocks may differ in length (the resampler holds back a few
    samples); the last one flushes it. No length limit. Raises AudioError naming the file when
    it is missing, unreadable, empty or non-finite.
    """
    path = Path(path)
    _check_readable(path)
    try:
        with _open(path) as f:
            if isinstance(f, _Decoder):
                rate = f.rate
                chunks = _reblock(f.chunks(), max(1, round(block_seconds * rate)))
            else:
                rate = f.samplerate
                if f.frames == 0:
                    raise AudioError(f"{path}: empty audio (0 samples)")
                _check_complete(path, f)
                chunks = _soundfile_chunks(f, max(1, round(block_seconds * rate)))
            out_rate = sample_rate or rate
            stream = None if rate == out_rate else soxr.ResampleStream(rate, out_rate, 1)
            done = 0
            for mono in chunks:
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
    for _ in read_blocks(path, None, block_seconds):
        pass
