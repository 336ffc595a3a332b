"""Running the acoustic model over audio: sources in, typed batches of log-probs out.

A `ModelRunner` turns padded waveforms into log-probs: `TorchRunner` runs a PyTorch
`Recogniser` (a checkpoint's), `asr.export.OnnxRunner` an exported ONNX graph in onnxruntime.
`log_prob_batches` reads files or manifest utterances in length-sorted batches through a
runner and yields one `LogProbBatch` per batch: the names and positions of its utterances,
their log-probs and lengths, and the sources of the batch that could not be read. Decoding
(asr.decoding) takes those batches; nothing here decodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from asr.audio import AudioError, audio_duration, load_audio
from asr.data import BucketBatchSampler, Utterance, collate
from asr.device import autocast, resolve_precision
from asr.features import FeatureConfig
from asr.model import ModelConfig, Recogniser

# What a runner reads: a whole file's path, or a manifest's utterance (a segment of a longer
# file when its `offset` is set).
AudioSource = str | Path | Utterance


def source_name(source: AudioSource) -> str:
    """The name results carry: the path, or the utterance's key (path + span for a segment)."""
    return source.key if isinstance(source, Utterance) else str(source)


def frame_seconds(features: FeatureConfig, model: ModelConfig) -> float:
    """Seconds per output frame: the feature hop times the front-end's time subsampling.

    >>> frame_seconds(FeatureConfig(hop_ms=10), ModelConfig(subsample=2))
    0.02
    """
    return features.hop_ms / 1000 * model.subsample


class ModelRunner(Protocol):
    """What turns waveforms into log-probs: a PyTorch recogniser or an exported graph."""

    device: torch.device  # where its input batches go (pinned memory for CUDA)

    @property
    def sample_rate(self) -> int: ...  # Hz of the waveforms it takes

    @property
    def frame_seconds(self) -> float: ...  # seconds per output frame

    def log_probs(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) padded waveforms, (B,) lengths -> CPU float32 log-probs (B, T', V), (B,)."""
        ...


class TorchRunner:
    """A `Recogniser` in eval mode on `device`, run without gradients at `precision`
    (asr.device.resolve_precision: "auto", "fp32", "bf16", "fp16")."""

    def __init__(
        self, model: Recogniser, device: torch.device | str = "cpu", precision: str = "auto"
    ):
        self.device = torch.device(device) if isinstance(device, str) else device
        self.model = model.to(self.device).eval()
        self.dtype = resolve_precision(precision, self.device)

    @property
    def sample_rate(self) -> int:
        return self.model.features.cfg.sample_rate

    @property
    def frame_seconds(self) -> float:
        return frame_seconds(self.model.features.cfg, self.model.acoustic.cfg)

    @torch.no_grad()
    def log_probs(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) padded waveforms, (B,) lengths -> CPU float32 log-probs (B, T', V), (B,)."""
        wavs = wavs.to(self.device, non_blocking=True)
        wav_lens = wav_lens.to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            log_probs, lengths = self.model(wavs, wav_lens)
        return log_probs.float().cpu(), lengths.cpu()


@dataclass
class SourceError:
    index: int  # the source's position in the sequence given to log_prob_batches
    name: str  # its source_name
    message: str  # one line naming the file and the cause


@dataclass
class LogProbBatch:
    """The model's output for one batch of sources.

    Row b of `log_probs` is the utterance `names[b]`, valid for its first `lengths[b]` frames;
    a batch may hold only errors (B = 0).
    """

    names: list[str]  # (B,) source_name of each utterance
    indices: list[int]  # (B,) their positions in the sequence given to log_prob_batches
    log_probs: torch.Tensor  # (B, T', V) CPU float32 natural-log posteriors, padded
    lengths: torch.Tensor  # (B,) valid frames of each row
    errors: list[SourceError] = field(default_factory=list)  # sources that could not be read


class _Sources(Dataset):
    """Loads each source; an unreadable one gives its error instead of raising."""

    def __init__(self, sources: Sequence[AudioSource], sample_rate: int):
        self.sources = sources
        self.sample_rate = sample_rate

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> dict:
        source = self.sources[i]
        try:
            if isinstance(source, Utterance):
                wav = source.load(self.sample_rate)
            else:
                wav = load_audio(source, self.sample_rate)
            return {"wav": wav, "tokens": torch.zeros(0, dtype=torch.long), "index": i}
        except AudioError as err:
            return {"error": str(err), "index": i}


def _collate_or_errors(items: list[dict]) -> tuple[dict | None, list[dict]]:
    good = [it for it in items if "error" not in it]
    bad = [it for it in items if "error" in it]
    return (collate(good) if good else None), bad


def _errors_only(errors: list[SourceError]) -> LogProbBatch:
    return LogProbBatch([], [], torch.zeros(0, 0, 0), torch.zeros(0, dtype=torch.long), errors)


def log_prob_batches(
    runner: ModelRunner,
    sources: Sequence[AudioSource],
    batch_seconds: float = 200.0,
    num_workers: int = 0,
    check: Callable[[AudioSource], None] | None = None,
) -> Iterator[LogProbBatch]:
    """Run `runner` over files or utterances in length-sorted batches of at most
    `batch_seconds` of audio (one longer source makes a batch of its own).

    A source whose header cannot be read is reported in a first batch of errors; one that
    cannot be loaded, in the errors of the batch it was in. `check` (if given) is called on
    each source whose header was read, before any audio is loaded.
    """
    good, durations, errors = [], [], []
    for i, source in enumerate(sources):
        if not isinstance(source, Utterance):
            source = str(source)
        try:
            if isinstance(source, Utterance):
                durations.append(source.header_duration())
            else:
                durations.append(audio_duration(source))
        except AudioError as err:
            errors.append(SourceError(i, source_name(source), str(err)))
            continue
        good.append((i, source))
        if check is not None:
            check(source)
    if errors:
        yield _errors_only(errors)
    if not good:
        return
    loader = DataLoader(
        _Sources([source for _, source in good], runner.sample_rate),
        batch_sampler=BucketBatchSampler(durations, batch_seconds, shuffle=False),
        collate_fn=_collate_or_errors,
        num_workers=num_workers,
        pin_memory=runner.device.type == "cuda",
        generator=torch.Generator(),  # leaves the global RNG (training's dropout) untouched
    )
    for batch, failed in loader:
        errors = [
            SourceError(good[it["index"]][0], source_name(good[it["index"]][1]), it["error"])
            for it in failed
        ]
        if batch is None:
            yield _errors_only(errors)
            continue
        indices = [good[i][0] for i in batch["indices"].tolist()]
        log_probs, lengths = runner.log_probs(batch["wavs"], batch["wav_lens"])
        names = [source_name(sources[i]) for i in indices]
        yield LogProbBatch(names, indices, log_probs, lengths, errors)
