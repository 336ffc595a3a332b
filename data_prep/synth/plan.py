"""The plan of every utterance of a split: its text, voice, speaking rate, pitch shift, noise,
level and output path, all drawn before any audio is made.

Texts come from a seed per split; every other choice of an utterance comes from a seed derived
from (seed, utterance id), so a corpus is byte-for-byte reproducible whatever the number of
worker processes, and (texts of a file aside) the first m plans of a split of n are the plans
of a split of m.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_prep.synth.config import SynthConfig
from data_prep.synth.engines import Voice
from data_prep.synth.text import task_texts


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any values (Python's hash() differs between processes)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class UtterancePlan:
    """Everything needed to render one utterance; every random choice is already made."""

    utt_id: str
    voice: Voice
    text: str  # as spoken (the manifest gets normalize_text of it)
    path: str  # wav to write
    rate: float  # speaking-rate factor
    semitones: float  # pitch shift
    noise: str | None  # noise colour, None for clean
    snr_db: float
    peak_db: float
    seed: int  # for the engine (piper) and the noise


def plan_split(
    cfg: SynthConfig, split: str, n: int, voices: Sequence[Voice], out_dir: Path
) -> list[UtterancePlan]:
    """The utterances of one split: texts from the split's seed, voices in turn, and every
    other choice from the seed of (seed, utterance id)."""
    texts = task_texts(cfg, n, derive_seed(cfg.seed, "text", split))
    plans = []
    for i, text in enumerate(texts):
        utt_id = f"{split}-{i:05d}"
        voice = voices[i % len(voices)]
        rng = np.random.default_rng(derive_seed(cfg.seed, utt_id))
        # Every value is drawn whether used or not, so one setting never shifts the others.
        rate = rng.uniform(*cfg.rate_range)
        semitones = rng.uniform(-cfg.pitch_semitones, cfg.pitch_semitones)
        noisy = rng.random() < cfg.noise_prob
        color = cfg.noise_colors[rng.integers(len(cfg.noise_colors))]
        snr = rng.uniform(*cfg.snr_db)
        peak = rng.uniform(*cfg.peak_db)
        seed = int(rng.integers(2**62))
        folder = out_dir / "wav" / split / voice.id.replace(":", "-")
        plans.append(
            UtterancePlan(
                utt_id=utt_id,
                voice=voice,
                text=text,
                path=str(folder / f"{utt_id}.wav"),
                rate=round(float(rate), 4),
                semitones=round(float(semitones), 3),
                noise=color if noisy else None,
                snr_db=float(snr),
                peak_db=float(peak),
                seed=seed,
            )
        )
    return plans
