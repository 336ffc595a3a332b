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


def epoch_speeds(cfg: WaveAugmentConfig, seed: int, epoch: int, n: int) -> np.ndarray:
    """(n,) speed factor of each of n utterances in an epoch, drawn all at once.

    Drawn apart from the rest of the augmentation so that the batch sampler can group
    utterances by their length after speed perturbation (S / speed), which keeps padding low.

    >>> speeds = epoch_speeds(WaveAugmentConfig(), seed=0, epoch=1, n=1000)
    >>> again = epoch_speeds(WaveAugmentConfig(), seed=0, epoch=1, n=1000)
    >>> sorted(set(speeds.tolist())), bool((speeds == again).all())
    ([0.9, 1.0, 1.1], True)
    >>> epoch_speeds(WaveAugmentConfig(speed_factors=[]), seed=0, epoch=1, n=2)
    array([1., 1.])
    """
    if not cfg.speed_factors:
        return np.ones(n)
    rng = np.random.default_rng([seed, epoch, n])
    return rng.choice(np.asarray(cfg.speed_factors, dtype=np.float64), size=n)


def augment_waveform(
    wav: torch.Tensor,
    sample_rate: int,
    cfg: WaveAugmentConfig,
    rng: np.random.Generator,
    speed: float = 1.0,
) -> torch.Tensor:
    """(S,) -> (S',) with S' ~ S / speed (see `epoch_speeds`); gain and noise come from `rng`."""
    x = wav.numpy()
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
