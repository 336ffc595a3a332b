"""Which voices a corpus uses: the engines that work here, their voices, and the disjoint
train/dev/test voice split.

Voices are split disjointly: the test voices and the dev voices are never heard in training,
so the test set measures unseen voices. By default test = flite slt + espeak-ng en-gb-scotland
and en-us+f2 (two engines), dev = flite awb + espeak-ng en-029 and en+f3, train = every other
available voice. A voice of an engine that does not run here is reported and skipped; a voice
that a working engine lacks is an error.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Mapping, Sequence

from data_prep.synth.config import SPLITS, SynthConfig, SynthError
from data_prep.synth.engines import ALL_VOICES, Engine, EngineError, Voice, default_engines


def probe_engines(
    engines: Mapping[str, Engine], report: Callable[[str], None] | None = None
) -> dict[str, str]:
    """Engine name -> version of every engine that works; one report line per missing engine.
    SynthError when none works."""
    report = report or _stderr
    versions, problems = {}, []
    for name, engine in engines.items():
        try:
            versions[name] = engine.probe()
        except EngineError as err:
            problems.append(f"{name}: {err}")
            report(f"synth: skipping engine {name}: {err}")
    if not versions:
        raise SynthError("no speech synthesis engine works: " + "; ".join(problems))
    return versions


def available_voices(
    voices: Sequence[str] = ALL_VOICES,
    engines: Mapping[str, Engine] | None = None,
    report: Callable[[str], None] | None = None,
) -> list[Voice]:
    """The voices (of `voices`) whose engine works; voices of missing engines are reported and
    skipped. SynthError when no engine works or a working engine lacks a voice asked for."""
    engines = default_engines() if engines is None else engines
    versions = probe_engines(engines, report)
    return _usable(voices, engines, versions)


def _usable(
    specs: Sequence[str], engines: Mapping[str, Engine], versions: Mapping[str, str]
) -> list[Voice]:
    voices = []
    for spec in specs:
        voice = Voice.parse(spec)
        if voice.engine not in engines:
            raise SynthError(
                f"voice {spec}: unknown engine {voice.engine!r}; choose {', '.join(engines)}"
            )
        if voice.engine not in versions:
            continue  # already reported by probe_engines
        if not engines[voice.engine].has_voice(voice):
            raise SynthError(f"voice {spec}: {voice.engine} has no such voice or variant")
        voices.append(voice)
    return voices


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def split_voices(
    cfg: SynthConfig, engines: Mapping[str, Engine], versions: Mapping[str, str]
) -> dict[str, list[Voice]]:
    """Usable voices per split; SynthError when splits share a voice or one has none."""
    dev = _usable(cfg.dev_voices, engines, versions)
    test = _usable(cfg.test_voices, engines, versions)
    held_out = set(dev) | set(test)
    if cfg.train_voices is None:
        train = [v for v in _usable(ALL_VOICES, engines, versions) if v not in held_out]
    else:
        train = _usable(cfg.train_voices, engines, versions)
    voices = {"train": train, "dev": dev, "test": test}
    for a, b in itertools.combinations(SPLITS, 2):
        shared = sorted(v.id for v in set(voices[a]) & set(voices[b]))
        if shared:
            raise SynthError(f"voices in both {a} and {b}: {', '.join(shared)}")
    for name in SPLITS:
        if not voices[name]:
            raise SynthError(
                f"no {name} voice available (engines working: {', '.join(versions)}); "
                f"choose {name} voices with --{name}-voices"
            )
    return voices
