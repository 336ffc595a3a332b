"""The settings of a synthetic corpus (`SynthConfig`), its splits, and the error it raises."""

from __future__ import annotations

from dataclasses import dataclass, field

SPLITS = ("train", "dev", "test")

# Held-out voices: never heard in training, two engines each (see voices.split_voices).
DEFAULT_DEV_VOICES = ("flite:awb", "espeak-ng:en-029", "espeak-ng:en+f3")
DEFAULT_TEST_VOICES = ("flite:slt", "espeak-ng:en-gb-scotland", "espeak-ng:en-us+f2")


class SynthError(ValueError):
    """A corpus that cannot be made; the message names the voices, utterances or settings."""


@dataclass
class SynthConfig:
    # Text: digits (1-7 digit strings as words), commands (a small grammar), mixed (half each),
    # or text (lines of text_file).
    task: str = "digits"
    text_file: str | None = None  # a UTF-8 text file, one utterance a line (task "text")
    num_train: int = 2400  # utterances per split
    num_dev: int = 300
    num_test: int = 300
    # Voices as ENGINE:NAME[+VARIANT]; train None = every available voice not in dev or test.
    train_voices: list[str] | None = None
    dev_voices: list[str] = field(default_factory=lambda: list(DEFAULT_DEV_VOICES))
    test_voices: list[str] = field(default_factory=lambda: list(DEFAULT_TEST_VOICES))
    seed: int = 0  # every random choice derives from it
    # Output sample rate; None = 16000, or 8000 with band_limit.
    sample_rate: int | None = None
    band_limit: bool = False  # resample through 8 kHz (telephone / FSDD-like bandwidth)
    rate_range: tuple[float, float] = (0.85, 1.15)  # speaking-rate factor (>1 faster)
    pitch_semitones: float = 2.0  # pitch shift drawn from +-this, where the engine allows
    noise_prob: float = 0.5  # chance that an utterance gets additive noise
    snr_db: tuple[float, float] = (10.0, 40.0)  # SNR range of that noise (whole-utterance power)
    noise_colors: tuple[str, ...] = ("white", "pink")  # noise spectra to draw from
    peak_db: tuple[float, float] = (-12.0, -1.0)  # final peak level in dBFS, drawn per utterance

    def output_rate(self) -> int:
        """The sample rate of the wavs written.

        >>> SynthConfig().output_rate(), SynthConfig(band_limit=True).output_rate()
        (16000, 8000)
        """
        if self.sample_rate is not None:
            return self.sample_rate
        return 8000 if self.band_limit else 16000
