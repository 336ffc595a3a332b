"""Waveform augmentation for training: speed perturbation, gain and additive noise."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import soxr
import torch


@dataclass
class WaveAugmentConfig:
    # Speed factors drawn uniformly per utterance (Ko et al. 2015 use 0.9, 1.0, 1.1).
    speed_factors: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    # Random gain range in dB; with level normalisation off it teaches level invariance.
    gain_db: tuple[float, float] = (-10.0, 10.0)
    # Probability of adding white noise, and its SNR range in dB.
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (10.0, 40.0)


def augment_waveform(
    wav: torch.Tensor, sample_rate: int, cfg: WaveAugmentConfig, rng: np.random.Generator
) -> torch.Tensor:
    """(S,) -> (S',) with S' ~ S / speed; every random choice comes from `rng`."""
    x = wav.numpy()
    speed = float(rng.choice(cfg.speed_factors)) if cfg.speed_factors else 1.0
    if speed != 1.0:
        # Playing back faster = reading the samples as if recorded at rate * speed.
        x = soxr.resample(x, sample_rate * speed, sample_rate, quality="HQ")
    x = x * np.float32(10 ** (rng.uniform(*cfg.gain_db) / 20))
    if rng.random() < cfg.noise_prob:
        power = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
        snr = rng.uniform(*cfg.snr_db)
        noise = rng.standard_normal(x.shape)
        x = x + noise.astype(np.float32) * np.float32(np.sqrt(power / 10 ** (snr / 10)))
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
