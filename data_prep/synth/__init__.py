"""Synthetic speech: a multi-voice corpus made offline from text by speech synthesisers.

Each utterance is a text (connected digit strings, short spoken commands, or lines of a text
file) read by one voice at a random speaking rate and pitch, optionally with white or pink noise
at a random SNR and band-limited to 8 kHz (telephone / FSDD-like), then scaled to a random peak
level and written as 16-bit PCM wav. Every random choice of an utterance comes from a seed
derived from (seed, utterance id), so a corpus is byte-for-byte reproducible whatever `--jobs`.
The engines are flite, espeak-ng and piper (each optional); the dev and test voices are never
heard in training. The output folder holds one manifest per split, the wavs, settings.json and
a .completed marker; a re-run with the same settings does nothing.

    asr prepare synth --out-dir data/synth --task mixed --jobs 2

Modules, in the order data flows through them:
  config     SynthConfig (every setting), SPLITS, SynthError
  text       the texts: digit strings, commands of a small grammar, lines of a file
  engines    Voice, the Engine protocol and the flite, espeak-ng and piper engines
  voices     the engines that work here and the disjoint train/dev/test voice split
  plan       every utterance's text, voice and random choices, from derived seeds
  rendering  one plan -> one wav (rate, pitch, noise, band limit, level); many in processes
  cache      settings.json, reuse of a finished corpus, resumption of an interrupted one
  corpus     make_corpus: all of the above -> manifests
This module is the `asr prepare synth` entry (`DATASET`) and re-exports the public names.
"""

from __future__ import annotations

from pathlib import Path

from asr.datasets import Dataset, Option
from data_prep.synth.cache import FORMAT_VERSION
from data_prep.synth.config import (
    DEFAULT_DEV_VOICES,
    DEFAULT_TEST_VOICES,
    SPLITS,
    SynthConfig,
    SynthError,
)
from data_prep.synth.corpus import make_corpus
from data_prep.synth.engines import (
    ALL_VOICES,
    Engine,
    EngineError,
    EspeakEngine,
    FliteEngine,
    PiperEngine,
    Voice,
    default_engines,
)
from data_prep.synth.plan import UtterancePlan, derive_seed, plan_split
from data_prep.synth.rendering import add_noise, render, render_all
from data_prep.synth.text import (
    COMMAND_GRAMMAR,
    COMMANDS,
    commands,
    digit_strings,
    expand_grammar,
    task_texts,
    text_lines,
)
from data_prep.synth.voices import available_voices, probe_engines, split_voices

__all__ = [
    "ALL_VOICES",
    "COMMANDS",
    "COMMAND_GRAMMAR",
    "DATASET",
    "DEFAULT_DEV_VOICES",
    "DEFAULT_TEST_VOICES",
    "FORMAT_VERSION",
    "SPLITS",
    "Engine",
    "EngineError",
    "EspeakEngine",
    "FliteEngine",
    "PiperEngine",
    "SynthConfig",
    "SynthError",
    "UtterancePlan",
    "Voice",
    "add_noise",
    "available_voices",
    "commands",
    "default_engines",
    "derive_seed",
    "digit_strings",
    "expand_grammar",
    "make_corpus",
    "plan_split",
    "prepare_synth",
    "probe_engines",
    "render",
    "render_all",
    "split_voices",
    "task_texts",
    "text_lines",
]


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    try:
        return float(low), float(high)
    except ValueError:
        raise ValueError(f"expected MIN,MAX, got {text!r}") from None


def _voice_list(text: str) -> list[str]:
    """'flite:slt, espeak-ng:en-us' -> the voice ids; ValueError names a malformed one."""
    specs = [s.strip() for s in text.split(",") if s.strip()]
    for spec in specs:
        Voice.parse(spec)
    return specs


def prepare_synth(
    source: None,
    out_dir: Path,
    *,
    task: str = SynthConfig.task,
    text: str | None = None,
    jobs: int | None = None,
    force: bool = False,
    dev_voices: list[str] | None = None,
    test_voices: list[str] | None = None,
    **settings,
) -> dict[str, Path]:
    """`asr prepare synth`: make the corpus of these settings in out_dir -> {split: manifest}.

    `source` is None (the corpus is made here); `text` is a file whose lines are spoken instead
    of `task`; `settings` are the other SynthConfig fields (num_train, seed, band_limit, ...).
    """
    cfg = SynthConfig(task="text" if text else task, text_file=text, **settings)
    if dev_voices is not None:
        cfg.dev_voices = dev_voices
    if test_voices is not None:
        cfg.test_voices = test_voices
    return make_corpus(Path(out_dir), cfg, jobs=jobs, force=force, engines=default_engines())


def _options() -> tuple[Option, ...]:
    d = SynthConfig()
    counts = [
        Option(f"num_{name}", f"{name} utterances ({n})", default=n, type=int)
        for name, n in (("train", d.num_train), ("dev", d.num_dev), ("test", d.num_test))
    ]
    voices = [
        Option(f"{name}_voices", f"comma-separated ({','.join(default)})", type=_voice_list)
        for name, default in (("dev", d.dev_voices), ("test", d.test_voices))
    ]
    return (
        *counts,
        Option(
            "task",
            f"text to speak ({d.task})",
            default=d.task,
            choices=("digits", "commands", "mixed"),
        ),
        Option("text", "speak lines of FILE instead of --task", metavar="FILE"),
        Option("train_voices", "comma-separated (default: all others)", type=_voice_list),
        *voices,
        Option(
            "band_limit",
            "band-limit through 8 kHz (stored at 8 kHz unless --sample-rate)",
            type=bool,
        ),
        Option("sample_rate", "output rate (16000; 8000 band-limited)", type=int),
        Option("noise_prob", f"chance of noise ({d.noise_prob})", default=d.noise_prob, type=float),
        Option("snr_db", "noise SNR range MIN,MAX in dB (10,40)", default=d.snr_db, type=_pair),
        Option("seed", f"random seed ({d.seed})", default=d.seed, type=int),
        Option("jobs", "worker processes (default: CPU count)", type=int),
        Option("force", "replace a corpus of other settings", type=bool),
    )


DATASET = Dataset(
    name="synth",
    summary="connected digits and commands spoken by flite, espeak-ng and piper voices",
    prepare=prepare_synth,
    options=_options(),
    takes_source=False,
    out_dir_help="where wavs, manifests and settings go",
)
