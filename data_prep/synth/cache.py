"""The corpus folder as a cache of rendered audio, keyed by the corpus settings.

The output folder holds settings.json (every setting, the voices and the engine versions) and a
.completed marker. A re-run with the same settings does nothing; an interrupted run resumes
(finished wavs are kept); a run with different settings refuses unless `force`, which deletes
the old corpus first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from asr.audio import AudioError, audio_duration
from asr.files import atomic_write_text
from data_prep.synth.config import SynthConfig, SynthError
from data_prep.synth.engines import Voice
from data_prep.synth.plan import UtterancePlan

FORMAT_VERSION = 1  # bump when the same settings would give different audio


def corpus_settings(
    cfg: SynthConfig, voices: Mapping[str, list[Voice]], versions: Mapping[str, str]
) -> dict:
    """What settings.json records: the config (and the text file's hash), the output rate, the
    voices of each split and the versions of the engines they use, as JSON types."""
    config = asdict(cfg)
    if cfg.text_file is not None:
        config["text_sha256"] = hashlib.sha256(Path(cfg.text_file).read_bytes()).hexdigest()
    used = sorted({v.engine for vs in voices.values() for v in vs})
    settings = {
        "format": FORMAT_VERSION,
        "config": config,
        "output_rate": cfg.output_rate(),
        "voices": {name: [v.id for v in vs] for name, vs in voices.items()},
        "engines": {name: versions[name] for name in used},
    }
    return json.loads(json.dumps(settings))  # tuples -> lists, as they come back from the file


def _changed_keys(old: dict, new: dict) -> list[str]:
    """Top-level keys (config.KEY inside config) whose values differ.

    >>> _changed_keys({"format": 1, "config": {"seed": 0}}, {"format": 1, "config": {"seed": 5}})
    ['config.seed']
    """
    changed = []
    for key in sorted({*old, *new}):
        a, b = old.get(key), new.get(key)
        if key == "config" and isinstance(a, dict) and isinstance(b, dict):
            changed += [f"config.{k}" for k in sorted({*a, *b}) if a.get(k) != b.get(k)]
        elif a != b:
            changed.append(key)
    return changed


def reuse_or_reset(out_dir: Path, settings: dict, force: bool) -> bool:
    """True when out_dir holds the finished corpus of these settings. Otherwise prepare it
    for rendering: keep the wavs of an interrupted run of the same settings, delete those of
    other settings (only with force: SynthError without), and write settings.json."""
    settings_path, completed = out_dir / "settings.json", out_dir / ".completed"
    old = json.loads(settings_path.read_text("utf-8")) if settings_path.is_file() else None
    if old == settings and completed.is_file() and not force:
        return True
    if not force and old is not None and old != settings:
        raise SynthError(
            f"{out_dir} holds a corpus made with other settings (changed: "
            f"{', '.join(_changed_keys(old, settings))}); pass --force to replace it, "
            "or choose another --out-dir"
        )
    if not force and old is None and (out_dir / "wav").exists():
        raise SynthError(f"{out_dir} has a wav/ folder but no settings.json; --force replaces it")
    if force or old != settings:
        completed.unlink(missing_ok=True)
        shutil.rmtree(out_dir / "wav", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings_path, json.dumps(settings, indent=2) + "\n")
    return False


def finished_wavs(plans: list[UtterancePlan]) -> tuple[dict[str, float], list[UtterancePlan]]:
    """({id: duration} of the plans whose wav is on disk, the plans still to render)."""
    durations: dict[str, float] = {}
    todo = []
    for plan in plans:
        try:  # a wav left by an interrupted run with the same settings is whole: keep it
            durations[plan.utt_id] = audio_duration(plan.path)
        except AudioError:
            todo.append(plan)
    return durations, todo
