"""A corpus of good and bad audio files, written at test time, and an untrained checkpoint.

`make_bad_audio(folder)` writes every kind of bad file the toolkit must name and returns
(good, bad): the files that must be read (8-bit, 24-bit, float PCM, 6 channels at 96 kHz, a
FLAC named .wav) and {path: words the error line must hold} for those that must be named and
left out.
"""

from __future__ import annotations

import os
import struct
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asr.checkpoint import save_checkpoint
from asr.features import FeatureConfig
from asr.model import ModelConfig, Recogniser
from asr.text import CharTokenizer

RATE = 8000
SILENCE_HOURS = 3


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """(S,) or (S, channels) float32: a 440 Hz tone at 0.3 (each channel a little softer)."""
    t = np.arange(round(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    if channels == 1:
        return wav
    return np.stack([wav * (1 - 0.1 * c) for c in range(channels)], axis=1)


def _wav_header(data_bytes: int, rate: int, bits: int, channels: int = 1, tag: int = 1) -> bytes:
    """A 44-byte canonical RIFF/WAVE header (format tag 1 = PCM)."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def write_silence(path: Path, hours: float, rate: int = RATE) -> Path:
    """`hours` of 16-bit silence, written sparsely: a header, then the file is extended with
    truncate() (zeros that take no disk space and no time to write)."""
    data = round(hours * 3600 * rate) * 2
    with open(path, "wb") as f:
        f.write(_wav_header(data, rate, 16))
        f.truncate(44 + data)
    return path


def make_bad_audio(folder: Path) -> tuple[list[Path], dict[Path, str]]:
    """Write the corpus under `folder` -> (good files, {bad file: words its error holds})."""
    folder.mkdir(parents=True, exist_ok=True)
    good = []
    for name, rate, subtype, channels, fmt in [
        ("pcm8.wav", RATE, "PCM_U8", 1, "WAV"),
        ("pcm24.wav", 16000, "PCM_24", 1, "WAV"),
        ("float.wav", RATE, "FLOAT", 1, "WAV"),
        ("six_channels_96k.wav", 96000, "PCM_16", 6, "WAV"),
        ("flac_named.wav", RATE, "PCM_16", 1, "FLAC"),  # libsndfile sniffs the content
    ]:
        path = folder / name
        sf.write(path, tone(0.6, rate, channels), rate, subtype=subtype, format=fmt)
        good.append(path)

    bad: dict[Path, str] = {}
    pcm = (tone(0.6, RATE) * 32767).astype("<i2").tobytes()

    def put(name: str, data: bytes, cause: str) -> None:
        (folder / name).write_bytes(data)
        bad[folder / name] = cause

    put("zero_bytes.wav", b"", "empty file (0 bytes)")
    put("truncated_header.wav", _wav_header(len(pcm), RATE, 16)[:20], "cannot read audio")
    put("truncated_data.wav", _wav_header(len(pcm), RATE, 16) + pcm[: len(pcm) // 3], "truncated")
    put("not_audio.wav", b"This is a text file, not a recording.\n" * 20, "cannot read audio")
    put("unknown_codec.wav", _wav_header(len(pcm), RATE, 16, tag=0x1234) + pcm, "cannot read")
    for name, value in [("all_nan.wav", np.nan), ("all_inf.wav", np.inf)]:
        sf.write(folder / name, np.full(RATE, value, np.float32), RATE, subtype="FLOAT")
        bad[folder / name] = "NaN or infinite"
    sf.write(folder / "zero_samples.wav", np.zeros(0, np.float32), RATE)
    bad[folder / "zero_samples.wav"] = "empty audio"
    sf.write(folder / "one_sample.wav", np.zeros(1, np.float32), RATE)
    bad[folder / "one_sample.wav"] = "too short"
    (folder / "a_folder.wav").mkdir(exist_ok=True)
    bad[folder / "a_folder.wav"] = "folder"
    locked = folder / "no_permission.wav"
    sf.write(locked, tone(0.6, RATE), RATE)
    os.chmod(locked, 0)
    if os.access(locked, os.R_OK):  # root reads anything: the case cannot be made
        os.chmod(locked, 0o644)
        locked.unlink()
    else:
        bad[locked] = "ermission denied"
    return good, bad


def make_checkpoint(path: Path, sample_rate: int = RATE) -> Path:
    """An untrained but complete recogniser checkpoint (characters "abc "), for tests that
    only need files to go through the model."""
    torch.manual_seed(0)
    tok = CharTokenizer.from_texts(["abc cab"])
    fc = FeatureConfig(sample_rate=sample_rate, n_mels=24)
    mc = ModelConfig(
        n_mels=24,
        vocab_size=tok.vocab_size,
        conv_channels=0,
        subsample=1,
        hidden_size=16,
        num_layers=1,
    )
    model = Recogniser(fc, mc).eval()
    state = {
        "config": {"features": asdict(fc), "model": asdict(mc)},
        "tokenizer": tok.state_dict(),
        "model": model.state_dict(),
    }
    save_checkpoint(path, state)
    return path
