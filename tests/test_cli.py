"""The `asr` command on the tone corpus: train, transcribe (text/json, bad files), evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from asr.data import read_manifest
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, manifest) of a tiny model trained through the command line."""
    from tests.conftest import make_tone_corpus

    root = tmp_path_factory.mktemp("cli")
    manifest = make_tone_corpus(root / "tones")
    overrides = [*tiny_overrides(manifest), "train.epochs=40", "train.spec_augment=false"]
    assert main(["train", "--out-dir", str(root / "exp"), *overrides]) == 1  # no --config
    config = root / "config.yaml"
    config.write_text("model:\n  rnn_type: gru\n")
    assert main(["train", "--config", str(config), "--out-dir", str(root / "exp"), *overrides]) == 0
    return root / "exp" / "best.pt", manifest


def test_transcribe_text_and_json(trained, capsys):
    model, manifest = trained
    utts = read_manifest(manifest)[:3]
    assert main(["transcribe", "--model", str(model), *(u.audio_filepath for u in utts)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [u.audio_filepath for u in utts]
    assert (
        main(["transcribe", "--model", str(model), "--format", "json", utts[0].audio_filepath]) == 0
    )
    row = json.loads(capsys.readouterr().out)
    assert row["file"] == utts[0].audio_filepath and row["text"] == lines[0].split("\t")[1]


def test_transcribe_goes_on_past_bad_files(trained, tmp_path, capsys):
    model, manifest = trained
    good = read_manifest(manifest)[0].audio_filepath
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 8000)
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    missing = tmp_path / "missing.wav"
    args = ["transcribe", "--model", str(model), str(empty), good, str(text), str(missing)]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0].startswith(good + "\t")  # the good file is still transcribed
    for bad, cause in [(empty, "empty"), (text, "cannot read"), (missing, "no such file")]:
        assert any(str(bad) in line and cause in line for line in err.splitlines()), (bad, err)
    assert "3 input(s) failed, 1 transcribed" in err


def test_transcribe_a_folder(trained, capsys):
    model, manifest = trained
    assert main(["transcribe", "--model", str(model), str(manifest.parent)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(read_manifest(manifest))


def test_evaluate_writes_report_and_results(trained, tmp_path, capsys):
    model, manifest = trained
    results = tmp_path / "results.json"
    args = [
        "evaluate",
        "--model",
        str(model),
        "--manifest",
        str(manifest),
        "--out-dir",
        str(tmp_path),
        "--name",
        "tones",
        "--results",
        str(results),
    ]
    assert main(args) == 0
    assert "tones: WER" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary-tones.json").read_text())
    entry = json.loads(results.read_text())["tones"]
    assert entry["utterances"] == summary["utterances"] == len(read_manifest(manifest))
    assert entry["wer"] == summary["wer"] <= 0.2
    report = (tmp_path / "errs-tones.txt").read_text()
    assert report.startswith("%WER") and report.count("REF:") == entry["utterances"]


def test_user_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["transcribe", "--model", str(bad), str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(bad) in err and "not a readable checkpoint" in err
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--out-dir", str(tmp_path)]) == 1
    assert "none.yaml" in capsys.readouterr().err


def test_console_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "asr.cli", "transcribe", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--format" in out and "FILE_OR_DIR" in out
