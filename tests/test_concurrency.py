"""Concurrent writers: two processes writing one file see only whole files (atomic writes);
two `asr transcribe --out-dir` into one folder, and two `asr prepare` into one data folder, do
not corrupt each other's files (prepare takes turns through a lock on the folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.validate import validate_manifest
from tests.bad_audio import RATE, make_checkpoint, tone

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
ASR = [sys.executable, "-m", "asr"]

WRITER = """
import sys
from asr.files import atomic_write_text
path, letter = sys.argv[1], sys.argv[2]
for i in range(200):
    atomic_write_text(path, letter * (50_000 + i))
"""


def test_two_writers_of_one_file_never_leave_half_a_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("x")
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(target), letter], env=ENV)
        for letter in "ab"
    ]
    seen = set()
    while any(w.poll() is None for w in writers):
        text = target.read_text()
        assert len(set(text)) == 1 and (text == "x" or len(text) >= 50_000), len(text)
        seen.add(text[0])
    assert [w.returncode for w in writers] == [0, 0] and seen
    final = target.read_text()
    assert final in ("a" * 50_199, "b" * 50_199)  # the last write of one of them, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]  # no temporary left


@pytest.mark.slow
def test_two_transcribe_runs_into_one_folder(tmp_path):
    model = make_checkpoint(tmp_path / "m.pt")
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(40):
        sf.write(audio / f"f{i:02d}.wav", tone(0.3 + 0.01 * i, RATE), RATE)
    out = tmp_path / "out"
    command = [*ASR, "transcribe", "--model", str(model), "--format", "json", "--out-dir", str(out)]
    runs = [
        subprocess.Popen([*command, str(audio)], env=ENV, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    files = sorted(out.iterdir())
    assert [p.name for p in files] == [f"f{i:02d}.json" for i in range(40)]  # no temporaries
    for path in files:
        record = json.loads(path.read_text())  # whole: either run's (identical) output
        assert record["file"] == str(audio / path.with_suffix(".wav").name)


TOY_PREPARE = """
import sys, time
from pathlib import Path
from asr.datasets import Dataset, prepare_dataset

def prepare(source, out_dir):
    start = time.time()
    (out_dir / "started").write_text(sys.argv[2])
    time.sleep(1.5)
    with open(out_dir / "log", "a") as f:
        f.write(f"{sys.argv[2]} {start} {time.time()}\\n")
    return {}

prepare_dataset(Dataset("toy", "toy", prepare=prepare, takes_source=False), sys.argv[1])
"""


def test_a_second_prepare_into_the_same_folder_waits_for_the_first(tmp_path):
    out = tmp_path / "data"
    first = subprocess.Popen([sys.executable, "-c", TOY_PREPARE, str(out), "1"], env=ENV)
    deadline = time.time() + 60
    while not (out / "started").exists():
        assert time.time() < deadline and first.poll() is None
        time.sleep(0.02)
    second = subprocess.Popen(
        [sys.executable, "-c", TOY_PREPARE, str(out), "2"],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = second.communicate(timeout=60)
    assert first.wait(timeout=60) == 0 and second.returncode == 0
    assert f"asr: {out} is in use by another `asr prepare`; waiting for it to finish" in err
    first_run, second_run = (line.split() for line in (out / "log").read_text().splitlines())
    assert (first_run[0], second_run[0]) == ("1", "2")
    assert float(second_run[1]) >= float(first_run[2])  # one after the other


@pytest.mark.slow
def test_two_prepare_folder_runs_into_one_data_folder(tmp_path):
    src = tmp_path / "src"
    for speaker in ("ann", "bob", "cy"):
        (src / speaker).mkdir(parents=True)
        for i in range(20):
            wav = tone(0.2 + 0.01 * i, RATE) * np.float32(0.5)
            sf.write(src / speaker / f"{speaker}{i}.wav", wav, RATE)
            (src / speaker / f"{speaker}{i}.txt").write_text("abc\n")
    out = tmp_path / "data"
    command = [*ASR, "prepare", "folder", str(src), "--out-dir", str(out), "--speaker-folders"]
    runs = [subprocess.Popen(command, env=ENV, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert names == ["dev.jsonl", "test.jsonl", "train.jsonl"]  # no lock file, no temporaries
    total = 0
    for split in ("train", "dev", "test"):
        result = validate_manifest(out / f"{split}.jsonl")
        assert result.problems == []
        total += result.total
    assert total == 60
