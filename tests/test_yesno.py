"""yesno: prepare on a generated copy in the release's layout, its errors, the resumable
download from a local server, and the whole recipe on the real corpus (slow, the CI smoke test
of the recipe machinery; skipped when $ASR_DATA/yesno is absent)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.data import read_manifest
from asr.datasets import Dataset
from data_prep import yesno
from data_prep.yesno import FILE_NAMES, YesnoError, download_yesno, prepare_yesno
from tests.conftest import ROOT, SHARED

YESNO = SHARED / "yesno" / "waves_yesno"
SAMPLE_RATE = 8000


def make_yesno_copy(folder: Path) -> Path:
    """`folder/waves_yesno/`: the release's 60 file names, each a short 8 kHz 16-bit wav of
    noise whose length encodes its position (0.1 s + i ms), and a README."""
    waves = folder / "waves_yesno"
    waves.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate(FILE_NAMES):
        samples = 0.1 * rng.standard_normal(SAMPLE_RATE // 10 + 8 * i)
        sf.write(waves / name, samples, SAMPLE_RATE, subtype="PCM_16")
    (waves / "README").write_text("This dataset can be found at ...\n")
    return waves


@pytest.fixture
def waves(tmp_path: Path) -> Path:
    return make_yesno_copy(tmp_path / "corpus")


def test_prepare_writes_kaldis_split_field_by_field(waves: Path, tmp_path: Path):
    manifests = prepare_yesno(waves, tmp_path / "out")
    assert manifests == {
        name: tmp_path / "out" / f"{name}.jsonl" for name in ("train", "dev", "test")
    }
    rows = {
        name: [json.loads(line) for line in path.read_text().splitlines()]
        for name, path in manifests.items()
    }
    # lhotse's recipes/yesno.py: of the sorted files, every other one from the first trains.
    assert [Path(r["audio_filepath"]).name for r in rows["train"]] == sorted(FILE_NAMES)[::2]
    assert [Path(r["audio_filepath"]).name for r in rows["test"]] == sorted(FILE_NAMES)[1::2]
    assert rows["dev"] == rows["train"]
    for row in rows["train"] + rows["test"]:
        assert set(row) == {"audio_filepath", "duration", "text"}
        path = Path(row["audio_filepath"])
        assert path.is_absolute() and path.parent == waves.resolve()
        i = FILE_NAMES.index(path.name)
        assert row["duration"] == pytest.approx((SAMPLE_RATE // 10 + 8 * i) / SAMPLE_RATE)
        words = row["text"].split(" ")
        assert len(words) == 8 and set(words) <= {"yes", "no"}
        assert "_".join("1" if w == "yes" else "0" for w in words) + ".wav" == path.name
    assert rows["train"][0]["text"] == "no no no no yes yes yes yes"  # 0_0_0_0_1_1_1_1.wav
    assert rows["train"][1]["text"] == "no no no yes no yes yes no"  # 0_0_0_1_0_1_1_0.wav
    assert rows["test"][-1]["text"] == " ".join(["yes"] * 8)  # 1_1_1_1_1_1_1_1.wav
    assert len(read_manifest(manifests["test"])) == 30


def test_prepare_accepts_the_folder_holding_waves_yesno(waves: Path, tmp_path: Path):
    a = prepare_yesno(waves, tmp_path / "a")["test"].read_text()
    assert prepare_yesno(waves.parent, tmp_path / "b")["test"].read_text() == a


def _error(source: Path, tmp_path: Path) -> str:
    with pytest.raises(YesnoError) as err:
        prepare_yesno(source, tmp_path / "out")
    message = str(err.value)
    assert "\n" not in message and str(source) in message
    assert not (tmp_path / "out").exists()  # nothing written from a bad copy
    return message


def test_missing_file_is_named(waves: Path, tmp_path: Path):
    (waves / "0_1_1_0_0_1_1_0.wav").unlink()
    assert "missing: 0_1_1_0_0_1_1_0.wav" in _error(waves, tmp_path)


def test_wrongly_named_file_is_named(waves: Path, tmp_path: Path):
    (waves / "0_1_1_0_0_1_1_0.wav").rename(waves / "0_1_1_0_0_1_1.wav")  # a digit short
    message = _error(waves, tmp_path)
    assert "0_1_1_0_0_1_1.wav: not a yesno file name" in message


def test_file_not_in_the_release_is_named(waves: Path, tmp_path: Path):
    (waves / "0_0_0_0_0_0_0_0.wav").write_bytes((waves / FILE_NAMES[0]).read_bytes())
    assert "not in the release: 0_0_0_0_0_0_0_0.wav" in _error(waves, tmp_path)


def test_unreadable_file_is_named(waves: Path, tmp_path: Path):
    (waves / "1_0_1_0_1_0_0_1.wav").write_bytes(b"not a wav file")
    assert "unreadable: 1_0_1_0_1_0_0_1.wav (cannot read audio header" in _error(waves, tmp_path)


def test_missing_folder_is_named(tmp_path: Path):
    assert "no such folder" in _error(tmp_path / "nowhere", tmp_path)


def _archive_of(waves: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(waves, arcname="waves_yesno")
    return buf.getvalue()


def test_download_resumes_a_partial_archive(range_server, waves: Path, tmp_path: Path):
    served, base = range_server
    body = _archive_of(waves)
    served.files["/resources/1/waves_yesno.tar.gz"] = body
    url, sha = f"{base}/resources/1/waves_yesno.tar.gz", hashlib.sha256(body).hexdigest()
    root = tmp_path / "download"
    root.mkdir()
    (root / "waves_yesno.tar.gz.part").write_bytes(body[:1000])  # an interrupted download

    source = download_yesno(root, url=url, sha256=sha)
    assert source == root / "waves_yesno"
    assert served.requests == [("/resources/1/waves_yesno.tar.gz", "bytes=1000-")]
    assert (root / "waves_yesno.tar.gz").read_bytes() == body
    assert sorted(p.name for p in source.glob("*.wav")) == sorted(FILE_NAMES)
    assert (source / "README").is_file()
    # Finished: a second call checks the copy and fetches nothing.
    assert download_yesno(root, url=url, sha256=sha) == source
    assert len(served.requests) == 1


def test_dataset_record():
    assert isinstance(yesno.DATASET, Dataset)
    assert yesno.DATASET.name == "yesno" and yesno.DATASET.takes_source
    assert yesno.DATASET.prepare is prepare_yesno and yesno.DATASET.download is download_yesno


@pytest.mark.slow
@pytest.mark.skipif(not YESNO.is_dir(), reason=f"{YESNO} is absent (set ASR_DATA)")
def test_recipe_gets_every_correctly_labelled_word(tmp_path: Path):
    exp = tmp_path / "exp"
    env = {**os.environ, "ASR": f"{sys.executable} -m asr.cli", "ASR_DATA": str(SHARED)}
    cmd = ["bash", str(ROOT / "recipes/yesno/run.sh"), "--exp-dir", str(exp)]
    cmd += ["--", "train.progress=false"]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert f"using the local copy {YESNO}" in run.stdout
    results = json.loads((exp / "results.json").read_text())
    assert results["training"]["runs"] == 1 and results["training"]["wall_seconds"] > 0
    # Beam search over the two words: 0% on the 29 correctly labelled test files. The one
    # error allowed is in MISLABELLED (seven words spoken, eight in its name).
    for name in ("test-lexicon", "test-lm"):
        assert results[name]["utterances"] == 30
        assert results[name]["wer"] <= 1 / 240, results
        assert _files_with_errors(exp / f"errs-{name}.txt") <= {yesno.MISLABELLED}
    assert results["test"]["wer"] < 0.1, results  # greedy: a few misspelt words at most
    lines = [line.split("\t") for line in run.stdout.splitlines() if "\t" in line]
    assert [Path(f).name for f, _ in lines] == sorted(FILE_NAMES)[1:5:2]
    assert [text for _, text in lines] == [yesno.text_of(Path(f).name) for f, _ in lines]


def _files_with_errors(report: Path) -> set[str]:
    """File names of the utterances with word errors in an errs-NAME.txt report."""
    names = set()
    for line in report.read_text().splitlines():
        path, sep, counts = line.partition("  word errors ")
        if sep and not counts.startswith("0/"):
            names.add(Path(path).name)
    return names
