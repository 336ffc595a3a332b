"""load_audio: formats, mono mixing, resampling, and errors that name the file and the cause."""

from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import (
    SEGMENT_SLACK,
    AudioError,
    audio_duration,
    load_audio,
    segment_duration,
    to_mono_resampled,
)


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_mono_file_reads_back_as_float32(tmp_path, suffix):
    x = sine(440, 16000, 0.5)
    path = tmp_path / f"a.{suffix}"
    sf.write(path, x, 16000, subtype="PCM_16")
    wav = load_audio(path, 16000)
    assert wav.dtype == torch.float32
    assert wav.shape == (8000,)
    np.testing.assert_allclose(wav.numpy(), x, atol=1 / 2**14)  # 16-bit quantisation


@pytest.mark.parametrize("suffix", ["wav", "flac"])
def test_stereo_is_mixed_to_mono_by_mean(tmp_path, suffix):
    rng = np.random.default_rng(0)
    stereo = (0.4 * rng.uniform(-1, 1, size=(4000, 2))).astype(np.float32)
    path = tmp_path / f"stereo.{suffix}"
    sf.write(path, stereo, 16000, subtype="PCM_16")
    stored, _ = sf.read(path, dtype="float32")  # what the file holds after quantisation
    wav = load_audio(path, 16000)
    assert wav.shape == (4000,)
    np.testing.assert_allclose(wav.numpy(), stored.mean(axis=1), atol=1e-6)


def test_resampling_8k_to_16k_keeps_duration_and_frequency(tmp_path):
    x = sine(1000, 8000, 1.0)
    path = tmp_path / "narrowband.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    wav = load_audio(path, 16000).numpy()
    assert len(wav) == 2 * len(x)
    assert peak_hz(wav, 16000) == pytest.approx(1000, abs=2)
    # The level is kept too: a resampled sine is still a sine of the same amplitude.
    middle = wav[2000:-2000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_to_mono_resampled_takes_arrays():
    x = np.stack([sine(300, 16000, 0.25), np.zeros(4000, np.float32)], axis=1)  # (S, 2)
    wav = to_mono_resampled(x, 16000, 16000)
    np.testing.assert_allclose(wav.numpy(), x[:, 0] / 2, atol=1e-7)
    with pytest.raises(AudioError, match=r"<array>.*shape"):
        to_mono_resampled(np.zeros((2, 3, 4)), 16000, 16000)


def test_nist_sphere_round_trip(tmp_path):
    x = sine(500, 16000, 0.3)
    path = tmp_path / "utt.sph"
    sf.write(path, x, 16000, format="NIST", subtype="PCM_16")
    assert sf.info(path).format == "NIST"
    wav = load_audio(path, 16000)
    assert wav.shape == (len(x),)
    np.testing.assert_allclose(wav.numpy(), x, atol=1 / 2**14)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.wav"
    with pytest.raises(AudioError, match="no such file") as err:
        load_audio(path, 16000)
    assert str(path) in str(err.value)


def test_empty_audio_is_named(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"empty audio \(0 samples\)") as err:
        load_audio(path, 16000)
    assert str(path) in str(err.value)


def test_non_audio_file_is_named(tmp_path):
    path = tmp_path / "text.wav"
    path.write_text("this is a transcript, not audio\n")
    with pytest.raises(AudioError, match="cannot read audio") as err:
        load_audio(path, 16000)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["empty.wav", "empty.m4a", "empty.webm"])
def test_a_zero_byte_file_is_an_empty_file(tmp_path, name):
    """Not "Format not recognised": the file has no bytes at all, whatever its suffix."""
    path = tmp_path / name
    path.write_bytes(b"")
    for read in (lambda: load_audio(path, 16000), lambda: audio_duration(path)):
        with pytest.raises(AudioError) as err:
            read()
        assert str(err.value) == f"{path}: empty file (0 bytes)"


def test_nan_samples_are_named(tmp_path):
    x = sine(200, 16000, 0.1)
    x[100] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN") as err:
        load_audio(path, 16000)
    assert str(path) in str(err.value)


def test_too_long_is_named(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, sine(200, 16000, 3.0), 16000)
    with pytest.raises(AudioError, match="limit") as err:
        load_audio(path, 16000, max_seconds=1.0)
    assert str(path) in str(err.value)
    assert load_audio(path, 16000, max_seconds=5.0).shape == (48000,)


def test_segment_reads_exactly_its_span(tmp_path):
    ramp = (np.arange(16000) / 16000).astype(np.float32)  # sample i holds i / 16000
    path = tmp_path / "ramp.wav"
    sf.write(path, ramp, 16000, subtype="FLOAT")
    wav = load_audio(path, 16000, offset=0.25, duration=0.5)
    assert wav.shape == (8000,)
    np.testing.assert_array_equal(wav.numpy(), ramp[4000:12000])
    assert segment_duration(path, 0.25, 0.5) == pytest.approx(0.5)
    # to the end of the file when no duration is given
    np.testing.assert_array_equal(load_audio(path, 16000, offset=0.75).numpy(), ramp[12000:])


def test_segment_may_end_slightly_past_the_file(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, sine(440, 16000, 1.0), 16000)
    # rounded segment times: up to SEGMENT_SLACK past the end reads what is there
    assert load_audio(path, 16000, offset=0.5, duration=0.5 + SEGMENT_SLACK / 2).shape == (8000,)
    assert segment_duration(path, 0.5, 0.5 + SEGMENT_SLACK / 2) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("offset", "duration", "cause"),
    [
        (1.5, 0.2, "segment 1.5-1.7 s lies past the end of the audio (1.000 s)"),
        (0.5, 1.0, "segment 0.5-1.5 s lies past the end of the audio (1.000 s)"),
        (-0.1, 0.2, "bad segment"),
        (0.1, 0.0, "bad segment"),
    ],
)
def test_segment_outside_the_file_is_named(tmp_path, offset, duration, cause):
    path = tmp_path / "a.wav"
    sf.write(path, sine(440, 16000, 1.0), 16000)
    for read in (
        lambda: load_audio(path, 16000, offset=offset, duration=duration),
        lambda: segment_duration(path, offset, duration),
    ):
        with pytest.raises(AudioError, match=re.escape(f"{path}: ") + re.escape(cause)):
            read()
