"""The synthetic-speech recipe at reduced size: held-out voices are recognised far above chance.

Needs flite and espeak-ng (Debian packages; `make install-synth` installs them as root); skipped
with the reason when they are absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
missing = [tool for tool in ("flite", "espeak-ng") if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing), reason=f"speech engines absent: {', '.join(missing)}"),
]


def test_reduced_recipe_beats_chance_on_unseen_voices(tmp_path: Path):
    exp = tmp_path / "exp"
    env = {**os.environ, "ASR": f"{sys.executable} -m asr.cli"}
    overrides = [
        "train.progress=false",
        "train.epochs=12",
        "train.max_minutes=0",
        "train.wave_augment=false",
        "model.hidden_size=128",
        "model.num_layers=2",
        "data.batch_seconds=20",
        "train.warmup_steps=50",
    ]
    cmd = ["bash", str(ROOT / "recipes/synth/run.sh"), "--exp-dir", str(exp)]
    cmd += ["--num-train", "400", "--num-eval", "60", "--", *overrides]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads((exp / "results.json").read_text())
    assert results["synth-test"]["utterances"] == 60
    # Guessing digit words gives a WER near 100%; a small model on 400 utterances does far
    # better on voices it never heard.
    assert results["synth-test"]["wer"] < 0.6, results
    # Beam search restricted to the training words with their LM, tuned on the dev voices.
    assert results["synth-test-lm"]["utterances"] == 60
    assert results["synth-test-lm"]["wer"] < 0.6, results
    assert "synth-test: WER" in run.stdout and "== stage 5: summary" in run.stdout
    assert results["training"]["runs"] == 1 and results["training"]["wall_seconds"] > 0
    transcripts = sorted(p.name for p in (exp / "transcripts").iterdir())
    assert [n for n in transcripts if n.endswith(".srt")] and [
        n for n in transcripts if n.endswith(".json")
    ]
