"""Shared fixtures: a tiny tone 'language' made on the spot, and the path to ../shared data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data import Utterance, write_manifest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FSDD = SHARED / "free-spoken-digit-dataset-1.0.10"

# Each letter is a tone; letters are 80 ms long with 40 ms of silence between them.
TONES = {"a": 440.0, "b": 880.0, "c": 1320.0, " ": None}
TEXTS = ["abc", "cab", "ba", "ca", "bc", "a b", "cc", "aab", "acb", "b", "bca", "c a"]


def tone_utterance(text: str, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A (S,) float32 waveform: one tone burst per character (a space is a longer pause)."""
    pieces = [np.zeros(int(0.05 * sample_rate))]
    for ch in text:
        n = int(0.08 * sample_rate)
        t = np.arange(n) / sample_rate
        if TONES[ch] is None:
            pieces.append(np.zeros(n))
        else:
            pieces.append(0.3 * np.sin(2 * np.pi * TONES[ch] * t) * np.hanning(n))
        pieces.append(np.zeros(int(0.04 * sample_rate)))
    pieces.append(np.zeros(int(0.05 * sample_rate)))
    wav = np.concatenate(pieces)
    return (wav + 0.003 * rng.standard_normal(len(wav))).astype(np.float32)


def make_tone_corpus(folder: Path, sample_rate: int = 8000, repeats: int = 1) -> Path:
    """Write wavs and a manifest of TEXTS (each `repeats` times) under folder; returns it."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    utts = []
    for r in range(repeats):
        for i, text in enumerate(TEXTS):
            wav = tone_utterance(text, sample_rate, rng)
            path = folder / f"utt{r}_{i}.wav"
            sf.write(path, wav, sample_rate)
            utts.append(Utterance(str(path), len(wav) / sample_rate, text))
    manifest = folder / "manifest.jsonl"
    write_manifest(manifest, utts)
    return manifest


@pytest.fixture
def tone_manifest(tmp_path: Path) -> Path:
    return make_tone_corpus(tmp_path / "tones")


def tiny_overrides(manifest: Path) -> list[str]:
    """Config overrides for a model that trains on the tone corpus in seconds."""
    return [
        f"data.train_manifest={manifest}",
        f"data.dev_manifest={manifest}",
        "data.batch_seconds=1.5",
        "data.num_workers=0",
        "features.sample_rate=8000",
        "features.n_mels=24",
        "model.subsample=1",
        "model.conv_channels=0",
        "model.hidden_size=48",
        "model.num_layers=2",
        "model.dropout=0.1",
        "train.lr=0.01",
        "train.warmup_steps=5",
        "train.progress=false",
    ]
