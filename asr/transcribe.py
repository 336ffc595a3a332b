"""Inference: batched transcription of files, arrays and manifests with a trained checkpoint."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from asr.audio import AudioError, audio_duration, load_audio, to_mono_resampled
from asr.checkpoint import load_checkpoint, recogniser_from_state
from asr.data import BucketBatchSampler, collate
from asr.decode import ctc_greedy_decode
from asr.device import autocast, pick_device, resolve_precision
from asr.model import Recogniser
from asr.text import CharTokenizer

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".sph", ".opus", ".aiff", ".aif", ".au"}


@dataclass
class FileResult:
    path: str
    text: str | None  # None when the file could not be transcribed
    error: str | None = None  # one line naming the file and the cause


class _Files(Dataset):
    """Loads each file; an unreadable one yields its error instead of raising."""

    def __init__(self, paths: Sequence[str], sample_rate: int):
        self.paths = paths
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        try:
            wav = load_audio(self.paths[i], self.sample_rate)
            return {"wav": wav, "tokens": torch.zeros(0, dtype=torch.long), "index": i}
        except AudioError as err:
            return {"error": str(err), "index": i}


def _collate_or_errors(items: list[dict]) -> tuple[dict | None, list[dict]]:
    good = [it for it in items if "error" not in it]
    bad = [it for it in items if "error" in it]
    return (collate(good) if good else None), bad


class Transcriber:
    """Greedy CTC transcription with a trained recogniser.

    >>> t = Transcriber.from_checkpoint("exp/fsdd/best.pt")  # doctest: +SKIP
    >>> t.transcribe("7_theo_3.wav")  # doctest: +SKIP
    'seven'
    """

    def __init__(
        self,
        model: Recogniser,
        tokenizer: CharTokenizer,
        device: torch.device | str = "cpu",
        precision: str = "auto",
        batch_seconds: float = 200.0,
        num_workers: int = 0,
    ):
        self.device = torch.device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.dtype = resolve_precision(precision, self.device)
        self.batch_seconds = batch_seconds
        self.num_workers = num_workers

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", **kwargs) -> Transcriber:
        model, tokenizer = recogniser_from_state(load_checkpoint(path))
        return cls(model, tokenizer, pick_device(device), **kwargs)

    @property
    def sample_rate(self) -> int:
        return self.model.features.cfg.sample_rate

    @torch.no_grad()
    def decode_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> list[str]:
        """(B, S) padded waveforms, (B,) lengths -> B transcripts."""
        wavs = wavs.to(self.device, non_blocking=True)
        wav_lens = wav_lens.to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            log_probs, lengths = self.model(wavs, wav_lens)
        # Spaces are tokens too: drop leading, trailing and doubled ones from the output.
        texts = [self.tokenizer.decode(ids) for ids in ctc_greedy_decode(log_probs, lengths)]
        return [" ".join(text.split()) for text in texts]

    def transcribe(
        self, audio: str | Path | np.ndarray | torch.Tensor, sample_rate: int | None = None
    ) -> str:
        """One file path, or a (S,) / (S, C) array at `sample_rate` -> text."""
        if isinstance(audio, str | Path):
            wav = load_audio(audio, self.sample_rate)
        else:
            if sample_rate is None:
                raise ValueError("sample_rate is required when transcribing an array")
            array = audio.cpu().numpy() if isinstance(audio, torch.Tensor) else audio
            wav = to_mono_resampled(array, sample_rate, self.sample_rate)
        return self.decode_batch(wav[None], torch.tensor([len(wav)]))[0]

    def transcribe_files(self, paths: Sequence[str | Path]) -> Iterator[FileResult]:
        """Transcribe many files in length-sorted batches; bad files give a FileResult with error.

        Results come in batch order, not input order.
        """
        paths = [str(p) for p in paths]
        durations, results = [], []
        for p in paths:
            try:
                durations.append(audio_duration(p))
            except AudioError as err:
                durations.append(0.0)
                results.append(FileResult(p, None, str(err)))
        yield from results
        bad = {r.path for r in results}
        good = [p for p in paths if p not in bad]
        good_durations = [d for p, d in zip(paths, durations, strict=True) if p not in bad]
        if not good:
            return
        sampler = BucketBatchSampler(good_durations, self.batch_seconds, shuffle=False)
        loader = DataLoader(
            _Files(good, self.sample_rate),
            batch_sampler=sampler,
            collate_fn=_collate_or_errors,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # leaves the global RNG (training's dropout) untouched
        )
        for batch, errors in loader:
            for it in errors:
                yield FileResult(good[it["index"]], None, it["error"])
            if batch is not None:
                texts = self.decode_batch(batch["wavs"], batch["wav_lens"])
                for i, text in zip(batch["indices"].tolist(), texts, strict=True):
                    yield FileResult(good[i], text)


def find_audio_files(inputs: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    """Expand files and folders (recursively, known audio suffixes) -> (files, problems)."""
    files, problems = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                problems.append(
                    f"{path}: folder has no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})"
                )
            files += [str(p) for p in found]
        elif path.is_file():
            files.append(str(path))
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems
