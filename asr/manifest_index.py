"""A checked manifest kept on disk: numpy arrays per line, each utterance parsed when asked for.

A million-line manifest as Python `Utterance` objects costs ~1 GB, and forked DataLoader
workers copy the pages those objects' reference counts touch; here a line costs 26 bytes
(file number, byte position, duration, offset), shared copy-on-write by forked workers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import numpy as np

from asr.data import Utterance
from asr.text import normalize_text


class ManifestIndex(Sequence[Utterance]):
    """Utterances of lines of already checked manifests (`asr.validate`), read on demand.

    files: the manifests; file (N,) int16: which one each utterance is in; start (N,) int64:
    byte position of its line; duration (N,) float64 seconds; offset (N,) float64 seconds,
    NaN for a whole file. With `normalise`, texts come out as `normalize_text` makes them.
    """

    def __init__(
        self,
        files: list[str],
        file: np.ndarray,
        start: np.ndarray,
        duration: np.ndarray,
        offset: np.ndarray,
        normalise: bool = False,
    ):
        self.files = files
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
            return cls(p.files, p.file, p.start, p.duration, p.offset, normalise)
        files: list[str] = []
        numbers = []
        for part in parts:
            numbers.append(part.file + len(files))
            files += part.files
        return cls(
            files,
            np.concatenate(numbers),
            np.concatenate([p.start for p in parts]),
            np.concatenate([p.duration for p in parts]),
            np.concatenate([p.offset for p in parts]),
            normalise,
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
        )

    def __len__(self) -> int:
        return len(self.start)

    def __getitem__(self, index):  # int -> Utterance (a slice -> ManifestIndex)
        if isinstance(index, slice):
            return self.select(np.arange(len(self))[index])
        with open(self.files[self.file[index]], "rb") as handle:
            return self._read(handle, index)

    def __iter__(self) -> Iterator[Utterance]:
        """All utterances in order, each manifest opened once."""
        with ExitStack() as stack:
            handles = [stack.enter_context(open(f, "rb")) for f in self.files]
            for i in range(len(self)):
                yield self._read(handles[self.file[i]], i)

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
