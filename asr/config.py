"""Experiment configuration: nested dataclasses, loaded from YAML, overridden by key=value."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf
import yaml

from asr.augment import WaveAugmentConfig
from asr.features import FeatureConfig, SpecAugmentConfig
from asr.model import ModelConfig


class ConfigError(ValueError):
    """A configuration file or override that cannot be used."""


@dataclass
class DataConfig:
    train_manifest: str = ""  # JSON-lines manifest(s) of the training set, comma-separated
    dev_manifest: str = ""  # manifest used for validation WER and best-checkpoint selection
    batch_seconds: float = 120.0  # padded audio seconds per batch (the batch size)
    num_workers: int = 2  # DataLoader workers (on the CPU: at most the cores torch leaves free)
    cmvn_max_utts: int = 2000  # CMVN statistics from at most this many training utterances
    max_duration: float = 0.0  # leave out training utterances longer than this (s; 0 = keep all)
    drop_bad_lines: bool = False  # leave out manifest lines `asr validate` rejects (else refuse)
    # output units (asr/tokenizers.py): char, phone (space-separated tokens of the text) or bpe
    units: str = "char"
    bpe_vocab_size: int = 500  # pieces of the SentencePiece BPE model trained on the training text
    bpe_model: str = ""  # a trained SentencePiece .model file instead (units=bpe)


@dataclass
class TrainConfig:
    epochs: int = 30  # passes over the training set
    max_steps: int = 0  # stop after this many optimizer steps in all (0 = no limit)
    max_minutes: float = 0.0  # stop after this much training wall time in all (0 = no limit)
    lr: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 1e-2  # AdamW decoupled weight decay
    warmup_steps: int = 200  # linear warm-up, then cosine decay to final_lr_ratio * lr
    final_lr_ratio: float = 0.02  # learning rate at the end of the schedule, relative to lr
    grad_clip: float = 5.0  # clip the global gradient norm to this
    precision: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU), fp32, bf16 or fp16
    spec_augment: bool = True  # SpecAugment masks during training
    wave_augment: bool = False  # speed / gain / noise perturbation of training audio
    checkpoint_every_steps: int = 0  # also checkpoint every N steps (0 = once per epoch)
    # At the end, also score the mean of the weights at the last N validations; it becomes
    # best.pt if its dev WER is lower (0 or 1 = off)
    average_last: int = 0
    # That mean becomes best.pt whatever its dev WER (dev then only tunes the decoder): with a
    # small dev set the lowest dev WER of a run is partly chance
    keep_average: bool = False
    validate_every_epochs: int = 1  # dev-set WER every N epochs (and always after the last)
    accumulate: int = 1  # global batches (data.batch_seconds each) per optimizer step
    # Several processes: DistributedDataParallel, the gradients all-reduced during the backward
    # pass (out of memory on one process then stops the run). false: one all-reduce after
    # the step's backward passes, so that all processes can redo a step in pieces together.
    ddp: bool = True
    max_bad_steps: int = 10  # stop after this many steps in a row with a non-finite loss/gradient
    seed: int = 0  # seeds initialisation, batching and augmentation
    device: str = "auto"  # auto (cuda when present), cpu, cuda, cuda:1, ...
    progress: bool = True  # tqdm progress bar


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    spec_augment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    wave_augment: WaveAugmentConfig = field(default_factory=WaveAugmentConfig)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check/convert a YAML value to the field's annotated type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = [_coerce(v, args[0], where) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is str and value is None:  # `key=` or `key:` with nothing after it
        return ""
    if hint is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint in (int, float, str):
        if isinstance(value, bool) and hint is not str:
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
        try:
            if hint is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}") from None
    return value


# Options that were removed after they measured no gain (the ablation table of
# recipes/an4/RESULTS.md): section.key -> a test of the values that meant "off". Configs saved
# in checkpoints (and older config files) name them; at such a value they are passed over, at
# any other they are refused.
REMOVED_OPTIONS: dict[str, typing.Callable[[Any], bool]] = {
    "train.inter_ctc_layer": lambda v: v == 0,
    "train.inter_ctc_weight": lambda v: True,  # used only with an inter_ctc_layer
    "spec_augment.freq_warp": lambda v: v == 0,
    "spec_augment.freq_warp_boundary": lambda v: True,  # used only with a freq_warp
    "features.utterance_cmn": lambda v: v is False or str(v).lower() in ("false", "0", "no"),
}


def is_removed(section: str, key: str, value: Any, where: str) -> bool:
    """True when section.key is a removed option left at a value that meant "off" (to be
    passed over); ConfigError naming it when it is set to anything else; False otherwise."""
    off = REMOVED_OPTIONS.get(f"{section}.{key}")
    if off is None:
        return False
    if not off(value):
        raise ConfigError(
            f"{where}: {section}.{key}={value!r}: this option was removed (it measured no gain: "
            "see the ablation table in recipes/an4/RESULTS.md)"
        )
    return True


def known_fields(section: str, values: dict[str, Any], where: str) -> dict[str, Any]:
    """A saved config section (as `to_dict` wrote it) less the removed options left off;
    ConfigError naming a removed option that is on."""
    return {k: v for k, v in values.items() if not is_removed(section, k, v, where)}


def _apply(cfg: ExperimentConfig, section: str, key: str, value: Any, where: str) -> None:
    sub = getattr(cfg, section, None)
    if sub is None or not dataclasses.is_dataclass(sub):
        raise ConfigError(f"{where}: unknown section {section!r}")
    hints = _field_types(type(sub))
    if key not in hints:
        if is_removed(section, key, value, where):
            return
        raise ConfigError(f"{where}: unknown key {section}.{key}")
    setattr(sub, key, _coerce(value, hints[key], f"{where}: {section}.{key}"))


def load_config(
    path: str | Path | None,
    overrides: Sequence[str] = (),
    base: ExperimentConfig | None = None,
) -> ExperimentConfig:
    """Defaults (or `base`) <- YAML file (sections data/features/model/train/...) <-
    `section.key=value`."""
    cfg = base if base is not None else ExperimentConfig()
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config ({err})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections")
        for section, values in raw.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: section {section!r} must be a mapping")
            for key, value in values.items():
                _apply(cfg, section, key, value, str(path))
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """Apply `section.key=value` strings (values parsed as YAML) in place; returns cfg."""
    for item in overrides:
        name, sep, text = item.partition("=")
        section, dot, key = name.partition(".")
        if not sep or not dot:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        _apply(cfg, section, key, yaml.safe_load(text), f"override {item!r}")
    for section in ("features", "model"):  # re-check the fields their dataclasses validate
        try:
            getattr(cfg, section).__post_init__()
        except ValueError as err:
            raise ConfigError(f"{section} config: {err}") from None
    return cfg


# Settings for a first run on a corpus of up to so many hours of training audio, after the
# recipes that train on corpora of each size (recipes/*/config.yaml): yesno, AN4 and FSDD,
# Mini LibriSpeech, LibriSpeech. data.batch_seconds is at most the one given here.
SIZED_SETTINGS: list[tuple[float, dict[str, dict[str, Any]]]] = [
    (
        0.25,
        {
            "data": {"batch_seconds": 20.0},
            "model": {"subsample": 4, "conv_channels": 8, "hidden_size": 64, "num_layers": 1},
            "train": {"epochs": 40, "lr": 1e-2, "warmup_steps": 10},
        },
    ),
    (
        2.0,
        {
            "data": {"batch_seconds": 40.0},
            "model": {"subsample": 4, "hidden_size": 192, "dropout": 0.3},
            "train": {"epochs": 60, "lr": 2e-3, "weight_decay": 0.1, "wave_augment": True},
        },
    ),
    (
        20.0,
        {
            "data": {"batch_seconds": 300.0},
            "model": {"hidden_size": 512, "num_layers": 4},
            "train": {"epochs": 40, "wave_augment": True, "average_last": 5},
        },
    ),
    (
        200.0,
        {
            "data": {"batch_seconds": 400.0},
            "model": {"subsample": 4, "hidden_size": 768, "num_layers": 5},
            "train": {"epochs": 25, "warmup_steps": 1000, "average_last": 5},
        },
    ),
    (
        math.inf,
        {
            "data": {"batch_seconds": 600.0},
            "model": {"rnn_type": "lstm", "hidden_size": 1024, "num_layers": 5},
            "train": {"epochs": 20, "warmup_steps": 1000, "average_last": 5},
        },
    ),
]
BATCHES_PER_EPOCH = 20  # a small corpus is cut into at least this many batches an epoch
LOW_RATE_MELS = 40  # mel channels for audio below 16 kHz (8 kHz would leave filters empty)
RATE_SAMPLE = 20  # training files whose headers give the sample rate


@dataclass
class CorpusSize:
    """What `config_for_data` reads of a training manifest."""

    utterances: int = 0
    seconds: float = 0.0  # total duration
    longest: float = 0.0  # seconds
    sample_rate: int = 0  # the highest of the first RATE_SAMPLE readable files (0: none read)

    @property
    def hours(self) -> float:
        return self.seconds / 3600


def corpus_size(manifest: Path) -> CorpusSize:
    """Utterances, durations and sample rate of a manifest; lines without a usable duration
    are passed over (training's validation names them)."""
    size = CorpusSize()
    folder = manifest.resolve().parent
    with manifest.open(encoding="utf-8-sig") as f:
        for line in f:
            try:
                row = json.loads(line)
                duration = float(row["duration"])
            except (ValueError, KeyError, TypeError):
                continue
            if not math.isfinite(duration) or duration <= 0:
                continue
            size.utterances += 1
            size.seconds += duration
            size.longest = max(size.longest, duration)
            if size.utterances <= RATE_SAMPLE:
                try:
                    audio = folder / str(row["audio_filepath"])  # (an absolute path stays)
                    size.sample_rate = max(size.sample_rate, sf.info(str(audio)).samplerate)
                except (KeyError, RuntimeError, OSError):  # (sf.LibsndfileError: RuntimeError)
                    pass
    return size


def config_for_data(folder: str | Path) -> tuple[ExperimentConfig, str]:
    """A first config for the manifests `asr prepare` wrote in `folder`: train.jsonl, and
    dev.jsonl when there (else data.dev_manifest stays unset), with the model, epochs, batch
    size and features sized to the training audio (SIZED_SETTINGS). Returns it and the
    start of a log line saying why: the amount of audio and its size class (`describe_run`
    gives the rest). ConfigError when there is no train.jsonl."""
    folder = Path(folder)
    train_manifest, dev_manifest = folder / "train.jsonl", folder / "dev.jsonl"
    if not train_manifest.is_file():
        raise ConfigError(
            f"{train_manifest}: no such manifest (`asr prepare folder|csv|kaldi SOURCE "
            f"--out-dir {folder}` writes train.jsonl and dev.jsonl there)"
        )
    size = corpus_size(train_manifest)
    if not size.utterances:
        raise ConfigError(f"{train_manifest}: no utterance with a duration")
    limit, settings = next((h, s) for h, s in SIZED_SETTINGS if size.hours < h)
    cfg = ExperimentConfig()
    cfg.data.train_manifest = str(train_manifest)
    cfg.data.dev_manifest = str(dev_manifest) if dev_manifest.is_file() else ""
    for section, values in settings.items():
        for key, value in values.items():
            _apply(cfg, section, key, value, "sized settings")
    # at least BATCHES_PER_EPOCH batches, each at least as long as the longest utterance
    cfg.data.batch_seconds = round(
        min(cfg.data.batch_seconds, max(size.seconds / BATCHES_PER_EPOCH, size.longest)), 1
    )
    if 0 < size.sample_rate < cfg.features.sample_rate:
        cfg.features.sample_rate, cfg.features.n_mels = size.sample_rate, LOW_RATE_MELS
    under = f"under {limit:g} h" if math.isfinite(limit) else f"{SIZED_SETTINGS[-2][0]:g} h or more"
    amount = f"{size.hours:.2f} h" if size.hours >= 1 else f"{size.seconds / 60:.1f} min"
    return cfg, f"{train_manifest}: {size.utterances} utterances, {amount}: sized for {under}"


def describe_run(cfg: ExperimentConfig) -> str:
    """The settings a reader of a training log wants first, in one line.

    >>> describe_run(ExperimentConfig())
    '3 x 256 GRU (subsample 2), 30 epochs, lr 0.001, batches of 120 s, 16000 Hz 80 mels'
    """
    m, tc = cfg.model, cfg.train
    rnn = f"{m.num_layers} x {m.hidden_size} {m.rnn_type.upper()}"
    if not m.bidirectional:
        rnn += f" left-to-right, lookahead {m.lookahead_frames}"
    return (
        f"{rnn} (subsample {m.subsample}), "
        f"{tc.epochs} epochs, lr {tc.lr:g}, batches of {cfg.data.batch_seconds:g} s, "
        f"{cfg.features.sample_rate} Hz {cfg.features.n_mels} mels"
    )


def to_dict(cfg: ExperimentConfig) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(d: dict, where: str = "checkpoint") -> ExperimentConfig:
    """The config `to_dict` saved; `where` (the checkpoint's path) names it in errors."""
    cfg = ExperimentConfig()
    for section, values in d.items():
        for key, value in values.items():
            _apply(cfg, section, key, value, where)
    return cfg
