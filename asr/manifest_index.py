"""A checked manifest kept on disk: numpy arrays per line, each utterance parsed when asked for.

A million-line manifest as Python `Utterance` objects costs ~1 GB, and forked DataLoader
workers copy the pages those objects' reference counts touch; here a line costs 26 bytes
(file number, byte position, duration, offset), shared copy-on-write by forked workers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import numpy as np

from asr.data import ManifestError, Utterance
from asr.text import normalize_text


def file_stamp(handle: BinaryIO) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of an open file."""
    st = os.fstat(handle.fileno())
    return st.st_size, st.st_mtime_ns


class ManifestChanged(ManifestError):
    """A manifest was edited or replaced after it was checked and indexed: the byte positions
    of its lines no longer hold."""


class ManifestIndex(Sequence[Utterance]):
    """Utterances of lines of already checked manifests (`asr.validate`), read on demand.

    files: the manifests; file (N,) int16: which one each utterance is in; start (N,) int64:
    byte position of its line; duration (N,) float64 seconds; offset (N,) float64 seconds,
    NaN for a whole file. With `normalise`, texts come out as `normalize_text` makes them.
    stamps: (size, mtime ns) of each manifest when it was checked (`file_stamp`); a file that
    no longer has its stamp raises ManifestChanged when read (None: not checked).
    """

    def __init__(
        self,
        files: list[str],
        file: np.ndarray,
        start: np.ndarray,
        duration: np.ndarray,
        offset: np.ndarray,
        normalise: bool = False,
        stamps: list[tuple[int, int]] | None = None,
    ):
        self.files = files
        self.stamps = stamps
        self.folders = [Path(f).resolve().parent for f in files]  # relative audio paths' base
        self.file = np.asarray(file, dtype=np.int16)
        self.start = np.asarray(start, dtype=np.int64)
        self.duration = np.asarray(duration, dtype=np.float64)
        self.offset = np.asarray(offset, dtype=np.float64)
        self.normalise = normalise

    @classmethod
    def concat(cls, parts: Sequence[ManifestIndex], normalise: bool = False) -> ManifestIndex:
        """The utterances of `parts`, in order, as one index (one part's arrays are not copied)."""
        if len(parts) == 1:
            p = parts[0]
            return cls(p.files, p.file, p.start, p.duration, p.offset, normalise, p.stamps)
        files: list[str] = []
        stamps: list[tuple[int, int]] | None = []
        numbers = []
        for part in parts:
            numbers.append(part.file + len(files))
            files += part.files
            stamps = None if stamps is None or part.stamps is None else stamps + part.stamps
        return cls(
            files,
            np.concatenate(numbers),
            np.concatenate([p.start for p in parts]),
            np.concatenate([p.duration for p in parts]),
            np.concatenate([p.offset for p in parts]),
            normalise,
            stamps,
        )

    def select(self, indices: Sequence[int] | np.ndarray) -> ManifestIndex:
        """The utterances at `indices` (in that order)."""
        i = np.asarray(indices, dtype=np.int64)
        return ManifestIndex(
            self.files,
            self.file[i],
            self.start[i],
            self.duration[i],
            self.offset[i],
            self.normalise,
            self.stamps,
        )

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, index):  # int -> Utterance (a slice -> ManifestIndex)
        if isinstance(index, slice):
            return self.select(np.arange(len(self))[index])
        number = int(self.file[index])
        with open(self.files[number], "rb") as handle:
            self._check_stamp(handle, number)
            return self._read(handle, index)

    def __iter__(self) -> Iterator[Utterance]:
        """All utterances in order, each manifest opened once."""
        with ExitStack() as stack:
            handles = [stack.enter_context(open(f, "rb")) for f in self.files]
            for number, handle in enumerate(handles):
                self._check_stamp(handle, number)
            for i in range(len(self)):
                yield self._read(handles[self.file[i]], i)

    def _check_stamp(self, handle: BinaryIO, number: int) -> None:
        """ManifestChanged unless manifest `number`, open in `handle`, is as it was checked."""
        if self.stamps is not None and file_stamp(handle) != self.stamps[number]:
            raise ManifestChanged(
                f"{self.files[number]}: changed after it was checked (size or modification "
                "time differ); its lines are read from disk as needed, so run the command again"
            )

    def _read(self, handle: BinaryIO, i: int) -> Utterance:
        """Utterance `i`, from its manifest open in `handle`."""
        handle.seek(int(self.start[i]))
        obj = json.loads(handle.readline())
        audio = Path(obj["audio_filepath"])
        if not audio.is_absolute():
            audio = self.folders[self.file[i]] / audio
        text = normalize_text(obj["text"]) if self.normalise else obj["text"]
        offset = float(self.offset[i])
        return Utterance(
            str(audio), float(self.duration[i]), text, None if math.isnan(offset) else offset
        )
