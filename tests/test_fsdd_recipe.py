"""The FSDD recipe end to end on the real recordings (skipped when ../shared is absent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FSDD

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason=f"{FSDD} is absent"),
]


def test_recipe_trains_briefly_and_transcribes(tmp_path: Path):
    exp = tmp_path / "exp"
    env = {**os.environ, "ASR": f"{sys.executable} -m asr.cli"}
    # A small model, six epochs, no augmentation: about a minute on two cores.
    overrides = [
        "train.progress=false",
        "train.epochs=6",
        "train.wave_augment=false",
        "train.spec_augment=false",
        "model.hidden_size=128",
        "model.num_layers=2",
        "data.batch_seconds=15",
        "train.lr=3e-3",
        "train.warmup_steps=50",
    ]
    cmd = [
        "bash",
        str(ROOT / "recipes/fsdd/run.sh"),
        "--source",
        str(FSDD),
        "--exp-dir",
        str(exp),
        "--",
        *overrides,
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((exp / "results.json").read_text())
    assert results["test"]["utterances"] == results["dev"]["utterances"] == 300
    # Chance is 90% WER; after six short epochs the model is far better than that.
    assert results["test"]["wer"] < 0.5, results
    # The decoder restricted to the ten digit words is no worse than greedy decoding.
    assert results["test-lexicon"]["wer"] <= results["test"]["wer"], results
    assert results["test-lm"]["utterances"] == 300
    assert results["training"]["runs"] == 1 and results["training"]["wall_seconds"] > 0
    lines = [line for line in run.stdout.splitlines() if "\t" in line]
    assert [Path(line.split("\t")[0]).name for line in lines] == [
        "0_george_0.wav",
        "0_george_1.wav",
    ]
    assert all(line.split("\t")[1] for line in lines)
    assert (exp / "errs-test.txt").read_text().startswith("%WER")
