"""Making a synthetic corpus: check the settings, choose the voices, plan every utterance, render
what the folder does not hold yet, and write one manifest per split.

Each split gets its own texts (its own seed) and a manifest (train.jsonl, dev.jsonl, test.jsonl,
NeMo convention, paths relative to the output folder); audio lies in wav/SPLIT/VOICE/ID.wav.
Utterances that fail are reported by id and cause, the others are kept and written to the
manifests, and the run ends with SynthError listing the failures (also in failures.txt).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from asr.data import Utterance, write_manifest
from asr.files import atomic_write_text
from asr.text import normalize_text
from data_prep.synth.cache import corpus_settings, finished_wavs, reuse_or_reset
from data_prep.synth.config import SPLITS, SynthConfig, SynthError
from data_prep.synth.engines import Engine, default_engines
from data_prep.synth.plan import plan_split
from data_prep.synth.rendering import render_all
from data_prep.synth.text import text_lines
from data_prep.synth.voices import probe_engines, split_voices


def _check_config(cfg: SynthConfig) -> None:
    """SynthError naming the first setting that cannot make a corpus."""
    for name in SPLITS:
        if getattr(cfg, f"num_{name}") < 1:
            raise SynthError(f"num_{name} must be at least 1")
    if cfg.task == "text":
        if cfg.text_file is None:
            raise SynthError("task 'text' needs a text file (--text FILE)")
        text_lines(cfg.text_file)  # readable, with words
    if not 0 < cfg.rate_range[0] <= cfg.rate_range[1]:
        raise SynthError(f"rate_range {cfg.rate_range} must be positive and ordered")
    if not 0 <= cfg.noise_prob <= 1:
        raise SynthError(f"noise_prob {cfg.noise_prob} must be between 0 and 1")
    if cfg.output_rate() < 4000:
        raise SynthError(f"sample rate {cfg.output_rate()} is too low")


def make_corpus(
    out_dir: Path,
    cfg: SynthConfig,
    *,
    jobs: int | None = None,
    force: bool = False,
    engines: Mapping[str, Engine] | None = None,
    progress: bool | None = None,
) -> dict[str, Path]:
    """Make the corpus in out_dir (or find it made) and return {split: manifest path}.

    Args:
        jobs: worker processes (default os.cpu_count(); 1 renders in this process).
        force: replace a corpus made with other settings (otherwise SynthError).
        engines: engine name -> engine object (default flite, espeak-ng, piper); for tests.
        progress: show a progress bar (default: when stderr is a terminal).
    """
    _check_config(cfg)
    out_dir = Path(out_dir).resolve()
    engines = default_engines() if engines is None else engines
    versions = probe_engines(engines)
    voices = split_voices(cfg, engines, versions)
    settings = corpus_settings(cfg, voices, versions)
    manifests = {name: out_dir / f"{name}.jsonl" for name in SPLITS}

    if reuse_or_reset(out_dir, settings, force):
        _stderr(f"synth: {out_dir} is already made with these settings (cached)")
        return manifests
    counts = {"train": cfg.num_train, "dev": cfg.num_dev, "test": cfg.num_test}
    plans = {s: plan_split(cfg, s, counts[s], voices[s], out_dir) for s in SPLITS}
    durations, todo = finished_wavs([p for s in SPLITS for p in plans[s]])
    rendered, failures = render_all(
        todo, engines, cfg.output_rate(), cfg.band_limit, jobs=jobs, progress=progress
    )
    durations.update(rendered)

    total = 0.0
    for name in SPLITS:
        utts = [
            Utterance(p.path, durations[p.utt_id], normalize_text(p.text))
            for p in plans[name]
            if p.utt_id in durations
        ]
        total += sum(u.duration for u in utts)
        write_manifest(manifests[name], utts)
    failures_path = out_dir / "failures.txt"
    if failures:
        lines = [f"{utt_id}: {cause}" for utt_id, cause in sorted(failures.items())]
        atomic_write_text(failures_path, "\n".join(lines) + "\n")
        shown = lines[:20] + ([f"... {len(lines) - 20} more"] if len(lines) > 20 else [])
        raise SynthError(
            f"{len(failures)} of {sum(counts.values())} utterances failed (the others are in the "
            f"manifests; all failures in {failures_path}):\n  " + "\n  ".join(shown)
        )
    failures_path.unlink(missing_ok=True)
    atomic_write_text(out_dir / ".completed", "")
    _stderr(f"synth: {len(durations)} utterances, {total / 60:.1f} min of audio in {out_dir}")
    return manifests


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)
