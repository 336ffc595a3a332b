"""Data: JSON-lines manifests, the speech dataset, length-bucketed batching and padding."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from asr.audio import AudioError, audio_duration, load_audio, segment_duration
from asr.augment import WaveAugmentConfig, augment_waveform, epoch_speeds
from asr.files import atomic_write_text
from asr.tokenizers import Tokenizer


class ManifestError(ValueError):
    """A manifest line that cannot be used; the message names the file and the line."""


@dataclass
class Utterance:
    audio_filepath: str  # absolute path (relative paths in the file are resolved against it)
    duration: float  # seconds
    text: str
    # start (seconds) of a segment of a longer file, which then spans `duration` seconds from
    # here (NeMo's `offset` field); None = the whole file
    offset: float | None = None

    @property
    def key(self) -> str:
        """A name unique to the utterance: the path, plus the time span for a segment.

        >>> Utterance("a/b.wav", 2.5, "hi", offset=61.25).key
        'a/b.wav@61.25-63.75'
        """
        if self.offset is None:
            return self.audio_filepath
        return f"{self.audio_filepath}@{self.offset:g}-{self.offset + self.duration:g}"

    def header_duration(self) -> float:
        """Seconds of audio per the file's header (the segment's, for a segment); AudioError
        when the header cannot be read or the segment does not fit in the file."""
        if self.offset is None:
            return audio_duration(self.audio_filepath)
        return segment_duration(self.audio_filepath, self.offset, self.duration)

    def load(self, sample_rate: int) -> torch.Tensor:
        """The utterance's audio (S,) at `sample_rate`; AudioError naming the file."""
        if self.offset is None:
            return load_audio(self.audio_filepath, sample_rate)
        return load_audio(
            self.audio_filepath, sample_rate, offset=self.offset, duration=self.duration
        )


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a NeMo-style manifest: one JSON object per line with audio_filepath, duration, text
    and, for a segment of a longer file, offset."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest")
    folder = path.resolve().parent
    utts = []
    with path.open(encoding="utf-8-sig") as f:  # a byte-order mark is accepted (asr validate)
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                audio = Path(obj["audio_filepath"])
                offset = obj.get("offset")
                utt = Utterance(
                    str(audio if audio.is_absolute() else folder / audio),
                    float(obj["duration"]),
                    str(obj["text"]),
                    None if offset is None else float(offset),
                )
            except json.JSONDecodeError as err:
                raise ManifestError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            except KeyError as err:
                raise ManifestError(f"{path}:{lineno}: missing field {err}") from None
            except (TypeError, ValueError) as err:
                raise ManifestError(f"{path}:{lineno}: bad field value ({err})") from None
            utts.append(utt)
    if not utts:
        raise ManifestError(f"{path}: manifest has no utterances")
    return utts


def write_manifest(path: str | Path, utts: Iterable[Utterance], relative: bool = True) -> None:
    """Write atomically; with `relative`, paths under the manifest's folder are stored relative."""
    path = Path(path)
    folder = path.resolve().parent
    lines = []
    for u in utts:
        audio = Path(u.audio_filepath)
        if relative and audio.is_absolute() and audio.is_relative_to(folder):
            audio = audio.relative_to(folder)
        row = {"audio_filepath": str(audio), "duration": round(u.duration, 4), "text": u.text}
        if u.offset is not None:
            row["offset"] = round(u.offset, 4)
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


class SpeechDataset(Dataset):
    """Utterance i -> {"wav": (S,) float32, "tokens": (L,) int64, "index": i}, or
    {"error": "PATH: cause", "index": i} when its audio cannot be loaded (a file deleted or
    corrupted after the manifest was checked), so a DataLoader worker never dies of one file.

    Waveform augmentation is seeded by (seed, epoch, index), and the speed factors of an
    epoch by (seed, epoch) (`speeds`, which the batch sampler also reads), so an item is the
    same whichever worker loads it, and an interrupted epoch resumes with the same augmentations.
    """

    def __init__(
        self,
        utts: Sequence[Utterance],
        tokenizer: Tokenizer | None,
        sample_rate: int,
        augment: WaveAugmentConfig | None = None,
        seed: int = 0,
    ):
        self.utts = utts
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._speeds: tuple[int, np.ndarray] | None = None  # (epoch, its speed factors)

    def __len__(self) -> int:
        return len(self.utts)

    def speeds(self, epoch: int) -> np.ndarray:
        """(N,) speed factor of every utterance in `epoch` (all 1 without waveform augmentation)."""
        if self.augment is None:
            return np.ones(len(self.utts))
        if self._speeds is None or self._speeds[0] != epoch:
            self._speeds = (epoch, epoch_speeds(self.augment, self.seed, epoch, len(self.utts)))
        return self._speeds[1]

    def __getitem__(self, index: int) -> dict:
        utt = self.utts[index]
        try:
            wav = utt.load(self.sample_rate)
        except AudioError as err:
            return {"error": str(err), "index": index}
        except OSError as err:
            return {"error": f"{utt.key}: cannot read ({err.strerror or err})", "index": index}
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            speed = float(self.speeds(self.epoch)[index])
            wav = augment_waveform(wav, self.sample_rate, self.augment, rng, speed)
        tokens = self.tokenizer.encode(utt.text) if self.tokenizer is not None else []
        return {"wav": wav, "tokens": torch.tensor(tokens, dtype=torch.long), "index": index}


def collate(items: list[dict]) -> dict:
    """Pad a list of dataset items into a batch; error items are left out and listed.

    Returns wavs (B, S_max), wav_lens (B,), tokens (B, L_max), token_lens (B,), indices (B,),
    and errors (one "PATH: cause" per item left out). B may be 0 when every item failed.
    """
    errors = [it["error"] for it in items if "error" in it]
    items = [it for it in items if "error" not in it]
    wav_lens = torch.tensor([len(it["wav"]) for it in items], dtype=torch.long)
    token_lens = torch.tensor([len(it["tokens"]) for it in items], dtype=torch.long)
    wavs = torch.zeros(len(items), int(wav_lens.max()) if items else 0)
    tokens = torch.zeros(
        len(items), max(int(token_lens.max()) if items else 0, 1), dtype=torch.long
    )
    for i, it in enumerate(items):
        wavs[i, : len(it["wav"])] = it["wav"]
        tokens[i, : len(it["tokens"])] = it["tokens"]
    indices = torch.tensor([it["index"] for it in items], dtype=torch.long)
    return {
        "wavs": wavs,
        "wav_lens": wav_lens,
        "tokens": tokens,
        "token_lens": token_lens,
        "indices": indices,
        "errors": errors,
    }


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of similar-length utterances whose padded size stays under a budget in seconds.

    Utterances are sorted by length (with a little per-epoch jitter so batches differ between
    epochs), cut into batches while `len(batch) * longest <= max_batch_seconds`, and the batch
    order is shuffled. Lengths are the durations divided by the epoch's speed factors when
    `speeds(epoch) -> (N,)` is given (speed perturbation, `SpeechDataset.speeds`), so that
    batches are grouped by the length the model will see and padding stays low. Every
    utterance appears exactly once per epoch; one longer than the budget gets a batch of its
    own, unless `min_batch_size` (the number of training processes, so that each gets a share
    of every batch) asks for more. `set_epoch(epoch, start_batch)` selects the epoch and where
    to resume.
    """

    JITTER = 0.02  # sort keys move by up to +-1%: variety across epochs at little padding

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        shuffle: bool = True,
        seed: int = 0,
        max_batch_size: int = 512,
        min_batch_size: int = 1,
        speeds: Callable[[int], np.ndarray] | None = None,
    ):
        if max_batch_seconds <= 0:
            raise ValueError("max_batch_seconds must be positive")
        if not 1 <= min_batch_size <= max_batch_size:
            raise ValueError("min_batch_size must be between 1 and max_batch_size")
        if len(durations) < min_batch_size:
            raise ValueError(f"{len(durations)} utterances cannot fill a batch of {min_batch_size}")
        self.durations = np.asarray(durations, dtype=np.float64)
        self.max_batch_seconds = max_batch_seconds
        self.shuffle = shuffle
        self.seed = seed
        self.max_batch_size = max_batch_size
        self.min_batch_size = min_batch_size
        self.speeds = speeds
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def lengths(self) -> np.ndarray:
        """(N,) seconds of each utterance as the model sees it in the current epoch."""
        if self.speeds is None:
            return self.durations
        return self.durations / self.speeds(self.epoch)

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch, in order."""
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        lengths = self.lengths()
        keys = lengths
        if self.shuffle:  # (one draw at a time: an array, not a list of N Python floats)
            draws = np.fromiter((rng.random() for _ in range(len(lengths))), float, len(lengths))
            keys = lengths * (1 + self.JITTER * (draws - 0.5))
        order = np.argsort(keys, kind="stable")  # (N,): numpy, not N Python objects
        starts = [0]
        longest = 0.0
        for pos, length in enumerate(lengths[order].tolist()):
            size = pos - starts[-1]
            grown = max(longest, length)
            full = size >= self.max_batch_size
            over = grown * (size + 1) > self.max_batch_seconds
            if size >= self.min_batch_size and (full or over):
                starts.append(pos)
                grown = length
            longest = grown
        if len(order) - starts[-1] < self.min_batch_size:
            starts.pop()  # too few left for a batch of their own: they join the one before
        bounds = [*starts, len(order)]
        batches = [order[a:b].tolist() for a, b in itertools.pairwise(bounds)]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()[self.start_batch :]

    def __len__(self) -> int:
        return max(len(self.batches()) - self.start_batch, 0)
