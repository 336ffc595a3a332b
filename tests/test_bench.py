"""Every script in bench/ runs, as a user runs it, on a tiny model and manifest: twelve tone
utterances at 16 kHz, an untrained checkpoint of their characters and a word bigram LM of their
texts. The figures mean nothing at this size; what is checked is that each script still works
against the library and reports what it promises. Each runs in a process of its own (a few
seconds: marked slow beyond that). The peers run in their own venvs and are skipped, with the
command that makes the venv, when it is absent. bench/audio_formats.py has its smoke run in
tests/test_audio_formats.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pytest

from asr.data import read_manifest
from asr.lm import build_lm
from tests.bad_audio import make_checkpoint
from tests.conftest import ROOT, make_tone_corpus

BENCH = ROOT / "bench"
PYCTCDECODE_PYTHON = BENCH / ".venv-pyctcdecode" / "bin" / "python"
POCKETSPHINX_PYTHON = BENCH / ".venv-pocketsphinx" / "bin" / "python"


@dataclass
class BenchInputs:
    manifest: Path  # 12 tone utterances, 16 kHz
    model: Path  # untrained checkpoint of their characters
    lm: Path  # word bigram LM folder of their texts (lm.bin, lexicon.txt)
    config: Path  # a small training config for the training benchmarks
    tmp: Path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> BenchInputs:
    root = tmp_path_factory.mktemp("bench")
    manifest = make_tone_corpus(root / "tones", sample_rate=16000)
    config = root / "config.yaml"
    config.write_text(
        "data:\n  batch_seconds: 1.5\n  num_workers: 0\n"
        "features:\n  n_mels: 24\n"
        "model:\n  subsample: 1\n  conv_channels: 0\n  hidden_size: 16\n  num_layers: 1\n"
        "train:\n  progress: false\n  wave_augment: false\n"
    )
    return BenchInputs(
        manifest=manifest,
        model=make_checkpoint(root / "model.pt", sample_rate=16000),
        lm=build_lm(manifest, root / "lm", order=2).binary.parent,
        config=config,
        tmp=root,
    )


def run_bench(script: str, *args: str | Path) -> str:
    """bench/SCRIPT's stdout; the test fails with its stderr when it exits with an error."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(BENCH / script), *map(str, args)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, f"{script} failed:\n{run.stderr[-3000:]}"
    return run.stdout


def last_json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_decode_compares_decoders_and_skips_an_absent_peer(inputs: BenchInputs) -> None:
    out = inputs.tmp / "decode.json"
    stdout = run_bench(
        "decode.py",
        *("--model", inputs.model, "--manifest", inputs.manifest, "--lm", inputs.lm),
        *("--beams", "2,4", "--peer-python", inputs.tmp / "no-venv" / "python", "--out", out),
    )
    result = json.loads(out.read_text())
    assert result["utterances"] == 12 and result["lexicon_words"] == 12
    assert [(r["method"], r["beam"]) for r in result["rows"]] == [
        ("greedy", None),
        *[(method, beam) for method in ("ours, no LM", "ours + LM") for beam in (2, 4)],
        *[(m, beam) for m in ("pyctcdecode, no LM", "pyctcdecode + LM") for beam in (2, 4)],
    ]
    for row in result["rows"][:5]:
        assert row["ms_per_utt"] > 0 and row["wer"] >= 0 and len(row["hypotheses"]) == 12
    for row in result["rows"][5:]:
        assert row["skipped"].endswith("create it with `bash bench/setup_pyctcdecode.sh`")
    assert "| ours + LM | 4 |" in stdout
    assert result["ratios"] == []  # nothing to compare with


@pytest.mark.slow
@pytest.mark.skipif(
    not PYCTCDECODE_PYTHON.is_file(),
    reason=f"{PYCTCDECODE_PYTHON} is absent: bash bench/setup_pyctcdecode.sh makes it",
)
def test_decode_against_pyctcdecode(inputs: BenchInputs) -> None:
    out = inputs.tmp / "decode-peer.json"
    run_bench(
        "decode.py",
        *("--model", inputs.model, "--manifest", inputs.manifest, "--lm", inputs.lm),
        *("--beams", "4", "--out", out),
    )
    result = json.loads(out.read_text())
    peer_rows = [r for r in result["rows"] if r["method"].startswith("pyctcdecode")]
    assert len(peer_rows) == 2 and all(len(r["hypotheses"]) == 12 for r in peer_rows)
    assert [(r["beam"], r["lm"]) for r in result["ratios"]] == [(4, True), (4, False)]


@pytest.mark.slow
def test_features_against_librosa(inputs: BenchInputs) -> None:
    result = last_json_line(
        run_bench("features.py", "--manifest", inputs.manifest, "--batch", "4", "--repeats", "1")
    )
    assert result["files"] == 12 and result["frames"] > 0
    assert result["mel_power_max_rel_diff"] < 1e-3  # the two compute the same thing
    assert result["ours_frames_per_s"] > 0 and result["librosa_frames_per_s"] > 0


@pytest.mark.slow
def test_inference_times_transcribe_and_skips_an_absent_peer(inputs: BenchInputs) -> None:
    first = read_manifest(inputs.manifest)[:3]
    small = inputs.tmp / "three.jsonl"
    small.write_text(
        "".join(
            json.dumps({"audio_filepath": u.audio_filepath, "duration": u.duration, "text": u.text})
            + "\n"
            for u in first
        )
    )
    result = last_json_line(
        run_bench(
            "inference.py",
            *("--model", inputs.model, "--lm", inputs.lm, "--manifest", small),
            *("--wavs", inputs.tmp / "tones" / "utt0_[0-2].wav", "--seconds", "1.5"),
            *("--repeats", "1", "--peer-python", inputs.tmp / "no-venv" / "python"),
        )
    )
    assert result["joined_utterances"] >= 1
    for name in ("ours_greedy", "ours_beam_lm"):
        assert result[name]["wall_s"] > 0 and result[name]["peak_rss_mib"] > 0
        assert result["test_set"][name]["rtf"] > 0
    assert result["test_set"]["utterances"] == 3
    assert "bash bench/setup_pocketsphinx.sh" in result["pocketsphinx"]["skipped"]


def test_pocketsphinx_peer_prints_a_line_per_file(inputs: BenchInputs) -> None:
    """In its own venv when there, else in this one when pocketsphinx is installed here (the
    dev extra), as the peer imports nothing from the toolkit."""
    if POCKETSPHINX_PYTHON.is_file():
        python = str(POCKETSPHINX_PYTHON)
    elif find_spec("pocketsphinx") is not None:
        python = sys.executable
    else:
        pytest.skip(f"{POCKETSPHINX_PYTHON} is absent: bash bench/setup_pocketsphinx.sh makes it")
    files = [u.audio_filepath for u in read_manifest(inputs.manifest)[:2]]
    cmd = [python, str(BENCH / "pocketsphinx_peer.py"), *files]
    run = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert [line.split("\t")[0] for line in run.stdout.splitlines()] == files


@pytest.mark.slow
def test_long_audio_transcribes_a_joined_file(inputs: BenchInputs) -> None:
    result = last_json_line(
        run_bench(
            "long_audio.py",
            *("--model", inputs.model, "--manifest", inputs.manifest, "--lm", inputs.lm),
            *("--hours", "0.003", "--out", inputs.tmp / "long.json"),
        )
    )
    assert result["audio_seconds"] >= 10.8 and result["segments"]["count"] >= 1
    for name in ("greedy", "greedy_json", "beam_lm"):
        assert result[name]["wall_s"] > 0 and result[name]["wer"] >= 0


@pytest.mark.slow
def test_manifest_memory_measures_each_size(inputs: BenchInputs) -> None:
    result = last_json_line(
        run_bench(
            "manifest_memory.py",
            *("--source", inputs.manifest, "--sizes", "50,100", "--workers", "0"),
            *("--batches", "1", "--batch-seconds", "2"),
        )
    )
    assert [size["lines"] for size in result["sizes"]] == [50, 100]
    assert all(size["peak_rss_mib"] > 0 for size in result["sizes"])


@pytest.mark.slow
def test_throughput_reports_padding_training_and_inference(inputs: BenchInputs) -> None:
    manifest = inputs.manifest
    result = json.loads(
        run_bench(
            "throughput.py",
            *("--manifest", manifest, "--config", inputs.config, "--steps", "1"),
            *(f"data.train_manifest={manifest}", f"data.dev_manifest={manifest}"),
        )
    )
    assert result["utterances"] == 12 and result["inference_files"] == 12
    assert 0 <= result["padding_waste_bucketed"] < 1
    assert result["train_audio_seconds_per_second"] > 0 and result["inference_rtf"] > 0


@pytest.mark.slow
def test_train_throughput_times_bare_and_end_to_end_steps(inputs: BenchInputs) -> None:
    manifest = inputs.manifest
    result = last_json_line(
        run_bench(
            "train_throughput.py",
            *("--train", manifest, "--config", inputs.config),
            *("--steps", "2", "--warmup", "1"),
            *(f"data.train_manifest={manifest}", f"data.dev_manifest={manifest}"),
        )
    )
    assert result["steps"] == 2 and len(result["rounds"]) == 1
    assert result["bare_audio_s_per_s"] > 0 and result["e2e_audio_s_per_s"] > 0


def test_every_bench_script_is_run_by_a_test() -> None:
    """A script added to bench/ without a smoke run fails here: run it from a test (or from a
    script a test runs, as decode.py runs its peer)."""

    def named(paths) -> set[str]:  # the "NAME.py" strings of these files
        text = "\n".join(p.read_text(encoding="utf-8") for p in paths)
        return set(re.findall(r'"(?:bench/)?(\w+\.py)"', text))

    run = named((ROOT / "tests").glob("test_*.py"))
    run |= named(BENCH / name for name in run if (BENCH / name).is_file())
    assert sorted(p.name for p in BENCH.glob("*.py") if p.name not in run) == []
