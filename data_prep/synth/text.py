"""The texts a synthetic corpus speaks: connected digit strings, spoken commands from a small
grammar, or lines of a text file, each list drawn from a seed: the same seed, the same texts.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asr.text import normalize_text
from data_prep.fsdd import DIGIT_WORDS
from data_prep.synth.config import SynthConfig, SynthError

# "(a|b)" marks alternatives; every combination is a command (56 in all).
COMMAND_GRAMMAR = (
    "turn (on|off) the (lights|fan|heater|radio|television)",
    "switch (on|off) the (kitchen|bedroom|hall) lights",
    "(play|pause|stop) (music|the radio)",
    "play the (next|previous) song",
    "volume (up|down)",
    "(mute|unmute|stop|go|start|cancel|yes|no|help)",
    "(open|close|lock|unlock) the (door|window)",
    "set a timer for (two|three|five|ten|twenty) minutes",
    "what time is it",
    "what is the weather (today|tomorrow)",
    "call (mom|dad|home)",
    "(raise|lower) the temperature",
)


def expand_grammar(patterns: Sequence[str]) -> list[str]:
    """Every sentence of patterns with (a|b) alternatives, in order, without duplicates.

    >>> expand_grammar(["(turn|switch) on the (fan|radio)", "turn on the fan"])
    ['turn on the fan', 'turn on the radio', 'switch on the fan', 'switch on the radio']
    """
    sentences: list[str] = []
    for pattern in patterns:
        pieces = re.split(r"\(([^)]*)\)", pattern)  # odd pieces are alternatives
        options = [p.split("|") if i % 2 else [p] for i, p in enumerate(pieces)]
        for combo in itertools.product(*options):
            sentence = " ".join("".join(combo).split())
            if sentence not in sentences:
                sentences.append(sentence)
    return sentences


COMMANDS = tuple(expand_grammar(COMMAND_GRAMMAR))


def digit_strings(n: int, seed: int) -> list[str]:
    """n strings of 1-7 digits as words: "three zero seven"."""
    rng = np.random.default_rng(seed)
    # One string at a time, so the first m of n strings are the m strings of a smaller corpus.
    return [
        " ".join(DIGIT_WORDS[d] for d in rng.integers(0, 10, size=rng.integers(1, 8)))
        for _ in range(n)
    ]


def commands(n: int, seed: int) -> list[str]:
    """n commands drawn uniformly from COMMANDS: "turn on the lights"."""
    rng = np.random.default_rng(seed)
    return [COMMANDS[i] for i in rng.integers(0, len(COMMANDS), size=n)]


def text_lines(path: str | Path) -> list[str]:
    """The lines of a text file that have words left after normalisation."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SynthError(f"{path}: cannot read the text file ({err})") from None
    lines = [line.strip() for line in lines if normalize_text(line)]
    if not lines:
        raise SynthError(f"{path}: no line with words in it")
    return lines


def task_texts(cfg: SynthConfig, n: int, seed: int) -> list[str]:
    """n texts for one split."""
    if cfg.task == "digits":
        return digit_strings(n, seed)
    if cfg.task == "commands":
        return commands(n, seed)
    if cfg.task == "mixed":
        digits, cmds = digit_strings(n, seed + 1), commands(n, seed + 2)
        pick = np.random.default_rng(seed).random(n) < 0.5
        return [d if p else c for d, c, p in zip(digits, cmds, pick, strict=True)]
    if cfg.task == "text":
        if cfg.text_file is None:
            raise SynthError("task 'text' needs a text file")
        lines = text_lines(cfg.text_file)
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(lines), size=n, replace=n > len(lines))
        return [lines[i] for i in picks]
    raise SynthError(f"unknown task {cfg.task!r}; choose digits, commands, mixed or text")
