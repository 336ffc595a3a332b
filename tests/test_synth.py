"""Synthetic corpus: texts, seeds, voice splits, noise, caching and failures with a stand-in
engine that writes tones; then a few utterances per real engine (skipped where one is absent)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.audio import load_audio
from asr.cli import main as asr_main
from asr.data import read_manifest
from asr.text import normalize_text
from data_prep import synth
from data_prep.fsdd import DIGIT_WORDS
from data_prep.synth import (
    ALL_VOICES,
    COMMANDS,
    EngineError,
    SynthConfig,
    SynthError,
    UtterancePlan,
    Voice,
    add_noise,
    available_voices,
    commands,
    derive_seed,
    digit_strings,
    make_corpus,
    plan_split,
    render,
    split_voices,
    task_texts,
)

ENGINE_NAMES = ("flite", "espeak-ng", "piper")


class ToneEngine:
    """Stands in for a synthesiser: one tone burst per word, its pitch set by the voice and the
    pitch shift, its length by the rate. Counts its calls; refuses `fail_voice`."""

    def __init__(self, name: str, fail_voice: str | None = None):
        self.name = name
        self.fail_voice = fail_voice
        self.calls = 0

    def probe(self) -> str:
        return "tone 1"

    def has_voice(self, voice: Voice) -> bool:
        return True

    def synthesize(self, voice, text, rate, semitones, seed):
        self.calls += 1
        if voice.id == self.fail_voice:
            raise RuntimeError("tone engine refuses this voice")
        sr = 16000
        f0 = (150 + 10 * (zlib.crc32(voice.id.encode()) % 20)) * 2 ** (semitones / 12)
        n = int(0.12 * sr / rate)
        word = np.sin(2 * np.pi * f0 * np.arange(n) / sr) * np.hanning(n)
        pieces = [np.concatenate([word, np.zeros(n // 2)]) for _ in text.split()]
        return np.concatenate(pieces).astype(np.float32), sr


class MissingEngine:
    def __init__(self, name: str):
        self.name = name

    def probe(self) -> str:
        raise EngineError("not installed on this test machine")


def tone_engines(fail_voice: str | None = None) -> dict[str, ToneEngine]:
    return {name: ToneEngine(name, fail_voice) for name in ENGINE_NAMES}


def small_config(**changes) -> SynthConfig:
    cfg = SynthConfig(num_train=6, num_dev=3, num_test=3, task="mixed", noise_prob=0.5)
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


def make(out_dir: Path, cfg: SynthConfig | None = None, engines=None, **kwargs):
    return make_corpus(
        out_dir, cfg or small_config(), engines=engines or tone_engines(), jobs=1, **kwargs
    )


def corpus_bytes(out_dir: Path) -> dict[str, bytes]:
    """Every manifest and wav, by path relative to the corpus folder."""
    files = [*out_dir.glob("*.jsonl"), *out_dir.rglob("*.wav")]
    return {str(p.relative_to(out_dir)): p.read_bytes() for p in files}


# --- texts and seeds -------------------------------------------------------------------------


def test_digit_strings_are_1_to_7_digit_words_and_seeded():
    texts = digit_strings(400, seed=3)
    assert texts == digit_strings(400, seed=3)
    assert texts != digit_strings(400, seed=4)
    lengths = {len(t.split()) for t in texts}
    assert lengths == set(range(1, 8))
    assert {w for t in texts for w in t.split()} == set(DIGIT_WORDS)
    assert all(normalize_text(t) == t for t in texts)


def test_commands_come_from_the_grammar_and_are_seeded():
    assert len(COMMANDS) == len(set(COMMANDS)) >= 30
    assert "turn on the lights" in COMMANDS and "volume up" in COMMANDS
    texts = commands(200, seed=1)
    assert texts == commands(200, seed=1) != commands(200, seed=2)
    assert set(texts) <= set(COMMANDS)
    assert all(normalize_text(c) == c for c in COMMANDS)


def test_mixed_and_text_file_tasks(tmp_path):
    mixed = task_texts(SynthConfig(task="mixed"), 100, seed=0)
    assert any(t in COMMANDS for t in mixed) and any(t.split()[0] in DIGIT_WORDS for t in mixed)
    lines = tmp_path / "lines.txt"
    lines.write_text("Hello, World!\n\n  ...  \nGood night.\n", encoding="utf-8")
    texts = task_texts(SynthConfig(task="text", text_file=str(lines)), 20, seed=0)
    assert set(texts) == {"Hello, World!", "Good night."}  # spoken as written; empty lines out


def test_derived_seeds_are_stable_and_distinct():
    # A fixed value: Python's own hash() would change between processes and break the corpus.
    assert derive_seed(0, "train-00000") == derive_seed(0, "train-00000")
    assert derive_seed(0, "train-00000") == 6303433856874315568
    assert len({derive_seed(s, f"train-{i:05d}") for s in range(3) for i in range(100)}) == 300


# --- voices ----------------------------------------------------------------------------------


def test_voice_ids_round_trip():
    for spec in ALL_VOICES:
        assert Voice.parse(spec).id == spec
    assert Voice.parse("espeak-ng:en-us+f2") == Voice("espeak-ng", "en-us", "f2")
    with pytest.raises(ValueError, match="ENGINE:NAME"):
        Voice.parse("slt")


def test_default_split_is_disjoint_and_tests_two_engines():
    versions = dict.fromkeys(ENGINE_NAMES, "tone 1")
    voices = split_voices(SynthConfig(), tone_engines(), versions)
    ids = {name: {v.id for v in vs} for name, vs in voices.items()}
    assert not ids["train"] & ids["dev"] and not ids["train"] & ids["test"]
    assert not ids["dev"] & ids["test"]
    assert ids["train"] | ids["dev"] | ids["test"] == set(ALL_VOICES)
    assert len({v.engine for v in voices["test"]}) >= 2
    assert len({v.engine for v in voices["train"]}) == 3


def test_a_voice_in_two_splits_is_refused():
    versions = dict.fromkeys(ENGINE_NAMES, "tone 1")
    cfg = SynthConfig(train_voices=["flite:slt", "flite:kal16"])
    with pytest.raises(SynthError, match="both train and test: flite:slt"):
        split_voices(cfg, tone_engines(), versions)


def test_missing_engines_are_reported_and_skipped():
    lines: list[str] = []
    engines = {"flite": MissingEngine("flite"), "espeak-ng": ToneEngine("espeak-ng")}
    voices = available_voices(ALL_VOICES[:8], engines, report=lines.append)
    assert {v.engine for v in voices} == {"espeak-ng"} and len(voices) == 4
    assert len(lines) == 1 and "flite" in lines[0] and "not installed" in lines[0]
    none = {name: MissingEngine(name) for name in ENGINE_NAMES}
    with pytest.raises(SynthError, match="no speech synthesis engine") as err:
        available_voices(engines=none, report=lines.append)
    assert all(name in str(err.value) for name in ENGINE_NAMES)


# --- audio -----------------------------------------------------------------------------------


@pytest.mark.parametrize("color", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [0.0, 17.5])
def test_noise_has_the_asked_snr(color, snr_db):
    rng = np.random.default_rng(0)
    x = (0.3 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.float32)
    noise = add_noise(x, snr_db, color, rng).astype(np.float64) - x
    measured = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2))
    assert measured == pytest.approx(snr_db, abs=1e-3)
    power = np.abs(np.fft.rfft(noise)) ** 2
    low, high = power[50:500].mean(), power[5000:7500].mean()  # 50-500 Hz vs 5-7.5 kHz
    assert (low / high > 10) if color == "pink" else (0.5 < low / high < 2)


def test_band_limited_audio_has_nothing_above_4_khz(tmp_path):
    cfg = small_config(band_limit=True, sample_rate=16000, noise_prob=1.0, snr_db=(5.0, 5.0))
    manifests = make(tmp_path / "c", cfg)
    for utt in read_manifest(manifests["train"]):
        wav, rate = sf.read(utt.audio_filepath)
        power = np.abs(np.fft.rfft(wav)) ** 2
        freqs = np.fft.rfftfreq(len(wav), 1 / rate)
        assert rate == 16000 and power[freqs > 4100].sum() < 1e-3 * power.sum()
    assert sf.info(str(next((tmp_path / "c").rglob("*.wav")))).subtype == "PCM_16"
    make(tmp_path / "c8", small_config(band_limit=True))
    assert {sf.info(str(p)).samplerate for p in (tmp_path / "c8").rglob("*.wav")} == {8000}


# --- the corpus ------------------------------------------------------------------------------


def test_same_seed_same_bytes_whatever_the_jobs_other_seed_differs(tmp_path):
    a = corpus_bytes(Path(make(tmp_path / "a")["train"]).parent)
    cfg = small_config()
    make_corpus(tmp_path / "b", cfg, engines=tone_engines(), jobs=2)  # worker processes
    assert corpus_bytes(tmp_path / "b") == a
    c = corpus_bytes(Path(make(tmp_path / "c", small_config(seed=1))["train"]).parent)
    assert c != a
    utts = read_manifest(tmp_path / "a" / "train.jsonl")
    assert len(utts) == 6 and all(u.text == normalize_text(u.text) for u in utts)
    line = (tmp_path / "a" / "train.jsonl").read_text().splitlines()[0]
    assert json.loads(line)["audio_filepath"].startswith("wav/train/")  # relative


def test_each_split_has_its_own_texts_and_voices(tmp_path):
    cfg = small_config(num_train=40, num_dev=40, num_test=40, task="digits")
    utts = {s: read_manifest(p) for s, p in make(tmp_path / "c", cfg).items()}
    assert len({tuple(u.text for u in us) for us in utts.values()}) == 3
    folders = {s: {Path(u.audio_filepath).parent.name for u in us} for s, us in utts.items()}
    assert folders["test"] == {"flite-slt", "espeak-ng-en-gb-scotland", "espeak-ng-en-us+f2"}
    assert not folders["train"] & folders["test"] and not folders["dev"] & folders["test"]


def test_plans_seed_every_choice_by_utterance(tmp_path):
    cfg = small_config(noise_prob=0.5)
    voices = [Voice("flite", "slt"), Voice("espeak-ng", "en")]
    plans = plan_split(cfg, "test", 50, voices, tmp_path)
    assert plans == plan_split(cfg, "test", 50, voices, tmp_path)
    assert plans[:10] == plan_split(cfg, "test", 10, voices, tmp_path)  # prefix unchanged
    assert {p.noise for p in plans} == {None, "white", "pink"}
    assert all(0.85 <= p.rate <= 1.15 and abs(p.semitones) <= 2 for p in plans)
    assert all(10 <= p.snr_db <= 40 and -12 <= p.peak_db <= -1 for p in plans)


def test_second_run_is_cached_and_other_settings_are_refused(tmp_path, capsys):
    out = tmp_path / "c"
    make(out)
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    engines = tone_engines()
    assert make(out, engines=engines) == {s: out / f"{s}.jsonl" for s in ("train", "dev", "test")}
    assert sum(e.calls for e in engines.values()) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes
    assert "cached" in capsys.readouterr().err
    settings = json.loads((out / "settings.json").read_text())
    assert settings["config"]["seed"] == 0 and settings["engines"]["flite"] == "tone 1"
    with pytest.raises(SynthError, match=r"other settings \(changed: config.seed\).*--force"):
        make(out, small_config(seed=5))
    engines = tone_engines()
    make(out, small_config(seed=5), engines=engines, force=True)
    assert sum(e.calls for e in engines.values()) == 12
    assert corpus_bytes(out) == corpus_bytes(
        Path(make(tmp_path / "d", small_config(seed=5))["dev"]).parent
    )


def test_an_interrupted_run_resumes_with_the_missing_utterances(tmp_path):
    out = tmp_path / "c"
    make(out)
    whole = corpus_bytes(out)
    (out / ".completed").unlink()
    next(out.rglob("*.wav")).unlink()
    engines = tone_engines()
    make(out, engines=engines)
    assert sum(e.calls for e in engines.values()) == 1
    assert corpus_bytes(out) == whole


def test_failed_utterances_are_reported_and_the_others_kept(tmp_path):
    out, cfg = tmp_path / "c", small_config(num_test=6)  # flite:slt reads test 0 and 3
    with pytest.raises(SynthError, match="2 of 15 utterances failed") as err:
        make(out, cfg, engines=tone_engines(fail_voice="flite:slt"))
    for utt_id in ("test-00000", "test-00003"):
        assert f"{utt_id}: tone engine refuses this voice" in str(err.value)
    assert len(read_manifest(out / "train.jsonl")) == 6
    assert len(read_manifest(out / "test.jsonl")) == 4
    assert not (out / ".completed").exists()
    assert len((out / "failures.txt").read_text().splitlines()) == 2
    engines = tone_engines()
    make(out, cfg, engines=engines)  # the engine works again: only the failed ones are redone
    assert sum(e.calls for e in engines.values()) == 2 and (out / ".completed").exists()
    assert len(read_manifest(out / "test.jsonl")) == 6 and not (out / "failures.txt").exists()


def test_asr_prepare_synth_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(synth, "default_engines", tone_engines)
    args = ["prepare", "synth", "--out-dir", str(tmp_path / "c"), "--num-train", "4"]
    args += ["--num-dev", "2", "--num-test", "2", "--task", "commands", "--jobs", "1"]
    assert asr_main(args) == 0
    assert "test: " in capsys.readouterr().out
    assert all(u.text in COMMANDS for u in read_manifest(tmp_path / "c" / "dev.jsonl"))
    assert asr_main([*args[:-2], "--seed", "3"]) == 1
    assert "--force" in capsys.readouterr().err


def test_asr_prepare_synth_flags_make_the_corpus_of_the_same_settings(tmp_path, monkeypatch):
    """The flags recipes/synth/run.sh and the Makefile pass, and what each sets: the corpus
    `asr prepare synth` makes is the one make_corpus makes of the equivalent SynthConfig."""
    assert [o.flag for o in synth.DATASET.options] == [
        "--num-train", "--num-dev", "--num-test", "--task", "--text", "--train-voices",
        "--dev-voices", "--test-voices", "--band-limit", "--sample-rate", "--noise-prob",
        "--snr-db", "--seed", "--jobs", "--force",
    ]  # fmt: skip
    monkeypatch.setattr(synth, "default_engines", tone_engines)
    args = ["prepare", "synth", "--out-dir", str(tmp_path), "--num-train", "3", "--num-dev", "2"]
    args += ["--num-test", "2", "--band-limit", "--dev-voices", "flite:awb", "--snr-db", "5,20"]
    args += ["--test-voices", "flite:slt,espeak-ng:en-gb-scotland", "--seed", "4", "--jobs", "1"]
    assert asr_main(args) == 0
    cfg = SynthConfig(num_train=3, num_dev=2, num_test=2, band_limit=True, seed=4)
    cfg.dev_voices, cfg.snr_db = ["flite:awb"], (5.0, 20.0)
    cfg.test_voices = ["flite:slt", "espeak-ng:en-gb-scotland"]
    engines = tone_engines()
    make_corpus(tmp_path, cfg, engines=engines, jobs=1)  # found made: the same settings
    assert sum(e.calls for e in engines.values()) == 0


def test_bad_synth_flag_values_name_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        asr_main(["prepare", "synth", "--out-dir", str(tmp_path), "--dev-voices", "slt"])
    assert "argument --dev-voices: bad voice 'slt'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        asr_main(["prepare", "synth", "--out-dir", str(tmp_path), "--snr-db", "10"])
    assert "argument --snr-db: expected MIN,MAX, got '10'" in capsys.readouterr().err


# --- real engines ----------------------------------------------------------------------------


def _real_engine(name: str):
    engine = synth.default_engines()[name]
    try:
        engine.probe()
    except EngineError as err:
        pytest.skip(f"engine {name} not available: {err}")
    return engine


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_real_engine_speaks_plausible_audio(name, tmp_path):
    engine = _real_engine(name)
    voices = [Voice.parse(v) for v in ALL_VOICES if v.startswith(f"{name}:")][:2]
    texts = ["three zero seven", "turn on the lights"]
    for i, (voice, text) in enumerate(zip(voices * 2, texts, strict=False)):
        plan = UtterancePlan(
            utt_id=f"u{i}", voice=voice, text=text, path=str(tmp_path / f"u{i}.wav"),
            rate=1.1, semitones=1.0, noise="pink", snr_db=30.0, peak_db=-3.0, seed=7 + i,
        )  # fmt: skip
        _, duration, error = render(plan, engine, 16000, band_limit=False)
        assert error is None, error
        wav = load_audio(plan.path, 16000)
        assert 0.4 < duration < 3.0 and len(wav) == round(duration * 16000)
        assert wav.abs().max() == pytest.approx(10 ** (-3 / 20), abs=1e-3)
        first = Path(plan.path).read_bytes()
        render(plan, engine, 16000, band_limit=False)
        assert Path(plan.path).read_bytes() == first, f"{voice.id} is not deterministic"


def test_real_engines_make_a_small_corpus(tmp_path):
    engines = {name: _real_engine(name) for name in ("flite", "espeak-ng")}
    cfg = SynthConfig(num_train=4, num_dev=2, num_test=3, task="mixed", band_limit=True)
    cfg.train_voices = ["flite:kal16", "espeak-ng:en-us"]
    manifests = make_corpus(tmp_path / "c", cfg, engines=engines, jobs=2)
    for name, path in manifests.items():
        for utt in read_manifest(path):
            words = len(utt.text.split())
            assert 0.15 * words < utt.duration < 0.2 + 0.8 * words, (name, utt)
            assert sf.info(utt.audio_filepath).samplerate == 8000
