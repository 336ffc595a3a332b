"""AN4: both layouts (official SPHERE tree, cmusphinx WAV tree), every problem named, the
resumed download, and the real copy in ../shared when it is there."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from asr.data import read_manifest
from data_prep import an4
from data_prep.an4 import AN4Error, download_an4, prepare_an4
from tests.conftest import SHARED

REAL_AN4 = SHARED / "an4"
RATE = 16000

# A small corpus in AN4's layout: fash trains, fjam is one of the DEV_SPEAKERS, fcaw is tested.
TRAIN = [
    ("an251-fash-b", "YES"),
    ("an253-fash-b", "GO"),
    ("cen1-fash-b", "H I N E S"),
    ("an2-fjam-b", "ERASE T W O"),
    ("cen7-fjam-b", "NINETEEN SIXTY EIGHT"),
]
TEST = [("an406-fcaw-b", "RUBOUT G M E F THREE NINE"), ("an407-fcaw-b", "ERASE C Q Q F SEVEN")]
DICTIONARY = "A\t\tAH\nA(2)\t\tEY\nNOVEMBER\tN OW V EH M B ER\nYES\tY EH S\n"


def _samples(index: int) -> int:
    return 1600 + 160 * index  # every file its own length, so durations trace back to files


def write_an4(root: Path, suffix: str) -> Path:
    """The corpus under root/an4: `.sph` (NIST SPHERE, as an4_sphere.tar.gz) or `.wav`."""
    source = root / "an4"
    etc = source / "etc"
    etc.mkdir(parents=True)
    for part, folder, utts in (("train", "an4_clstk", TRAIN), ("test", "an4test_clstk", TEST)):
        lines, ids = [], []
        for i, (utt_id, text) in enumerate(utts):
            speaker = utt_id.split("-")[1]
            path = source / "wav" / folder / speaker / f"{utt_id}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            wav = (0.1 * np.sin(np.arange(_samples(i)) / 7)).astype(np.float32)
            if suffix == ".sph":
                sf.write(path, wav, RATE, format="NIST", subtype="PCM_16", endian="BIG")
            else:
                sf.write(path, wav, RATE, subtype="PCM_16")
            lines.append(f"<s> {text} </s> ({utt_id})" if part == "train" else f"{text} ({utt_id})")
            ids.append(f"{folder}/{speaker}/{utt_id}")
        (etc / f"an4_{part}.transcription").write_text("\n".join(lines) + "\n")
        (etc / f"an4_{part}.fileids").write_text("\n".join(ids) + "\n")
    # The stray copy with another id format, which must not be read.
    (etc / "an4_test.transcription253239").write_text("RUBOUT G (fcaw-AN406-FCAW-B)\n")
    (etc / "an4.dic").write_text(DICTIONARY)
    (source / "LICENSE").write_text("CMU licence (fake, for tests)\n")
    return source


@pytest.fixture(autouse=True)
def small_counts(monkeypatch):
    monkeypatch.setattr(an4, "EXPECTED", {"train": len(TRAIN), "test": len(TEST)})


@pytest.mark.parametrize("suffix", [".sph", ".wav"])
def test_prepare_checks_every_field(tmp_path: Path, suffix: str):
    source = write_an4(tmp_path, suffix)
    out = prepare_an4(source, tmp_path / "manifests")
    rows = {
        split: [json.loads(line) for line in out[split].read_text().splitlines()]
        for split in ("train", "dev", "test")
    }
    expected = {
        "train": [(TRAIN[i], i, "an4_clstk") for i in range(3)],
        "dev": [(TRAIN[i], i, "an4_clstk") for i in (3, 4)],
        "test": [(TEST[i], i, "an4test_clstk") for i in range(2)],
    }
    for split, entries in expected.items():
        assert len(rows[split]) == len(entries)
        for row, ((utt_id, text), index, folder) in zip(rows[split], entries, strict=True):
            speaker = utt_id.split("-")[1]
            assert row["audio_filepath"] == str(
                source.resolve() / "wav" / folder / speaker / f"{utt_id}{suffix}"
            )
            assert row["duration"] == pytest.approx(_samples(index) / RATE, abs=1e-4)
            assert row["text"] == text.lower()
    assert out["words"].read_text().split() == ["a", "november", "yes"]
    assert read_manifest(out["test"])[0].text == "rubout g m e f three nine"


def test_dev_speakers_are_whole_training_speakers():
    assert len(set(an4.DEV_SPEAKERS)) == 7
    assert all(s[0] in "fm" for s in an4.DEV_SPEAKERS)


def test_line_without_audio_is_named_with_its_line(tmp_path: Path):
    source = write_an4(tmp_path, ".wav")
    (source / "wav/an4_clstk/fash/an253-fash-b.wav").unlink()
    transcription = source / "etc/an4_train.transcription"
    with pytest.raises(AN4Error, match=rf"{transcription}:2: no audio file fash/an253-fash-b"):
        prepare_an4(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written from a broken copy


def test_audio_without_line_is_named(tmp_path: Path):
    source = write_an4(tmp_path, ".sph")
    extra = source / "wav/an4test_clstk/fcaw/an408-fcaw-b.sph"
    sf.write(extra, np.zeros(800, np.float32), RATE, format="NIST", subtype="PCM_16")
    with pytest.raises(AN4Error, match=rf"{extra}: audio file with no line in .*an4_test"):
        prepare_an4(source, tmp_path / "out")


def test_malformed_line_is_named_with_its_line(tmp_path: Path):
    source = write_an4(tmp_path, ".wav")
    transcription = source / "etc/an4_test.transcription"
    lines = transcription.read_text().splitlines()
    transcription.write_text(lines[0] + "\nERASE C Q Q F SEVEN an407-fcaw-b\n")
    with pytest.raises(AN4Error, match=rf"{transcription}:2: malformed line 'ERASE C Q Q F"):
        prepare_an4(source, tmp_path / "out")


def test_unreadable_audio_is_named(tmp_path: Path):
    source = write_an4(tmp_path, ".wav")
    bad = source / "wav/an4_clstk/fjam/an2-fjam-b.wav"
    bad.write_bytes(b"RIFF but not really")
    with pytest.raises(AN4Error, match=rf"an4_train.transcription:4: {bad}"):
        prepare_an4(source, tmp_path / "out")


def test_count_check_names_the_shortfall(tmp_path: Path, monkeypatch):
    source = write_an4(tmp_path, ".wav")
    monkeypatch.setattr(an4, "EXPECTED", {"train": 948, "test": len(TEST)})
    with pytest.raises(AN4Error, match=r"an4_train.transcription: 5 train utterances, .* 948"):
        prepare_an4(source, tmp_path / "out")


def test_not_an_an4_folder(tmp_path: Path):
    with pytest.raises(AN4Error, match=rf"{tmp_path}: no wav/an4_clstk/ folder"):
        prepare_an4(tmp_path, tmp_path / "out")


def _archive_bytes(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(root / "an4", arcname="an4")
    return buf.getvalue()


def test_download_resumes_a_partial_archive_then_prepares(tmp_path: Path, range_server):
    served, base_url = range_server
    write_an4(tmp_path / "made", ".sph")
    archive = _archive_bytes(tmp_path / "made")
    served.files["/an4/an4_sphere.tar.gz"] = archive
    url = f"{base_url}/an4/an4_sphere.tar.gz"
    root = tmp_path / "download"
    root.mkdir()
    half = len(archive) // 2
    (root / "an4_sphere.tar.gz.part").write_bytes(archive[:half])  # an interrupted run
    source = download_an4(root, url=url)
    assert served.requests == [("/an4/an4_sphere.tar.gz", f"bytes={half}-")]
    assert (root / "an4_sphere.tar.gz").read_bytes() == archive
    assert download_an4(root, url=url) == source  # finished: no second request
    assert len(served.requests) == 1
    out = prepare_an4(source, tmp_path / "manifests")
    assert [u.text for u in read_manifest(out["test"])] == [t.lower() for _, t in TEST]


@pytest.mark.skipif(not REAL_AN4.is_dir(), reason=f"AN4 not found at {REAL_AN4}")
def test_real_an4(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(an4, "EXPECTED", {"train": 948, "test": 130})
    out = prepare_an4(REAL_AN4, tmp_path)
    utts = {split: read_manifest(out[split]) for split in ("train", "dev", "test")}
    assert len(utts["train"]) + len(utts["dev"]) == 948 and len(utts["test"]) == 130
    assert len(utts["dev"]) == 91
    minutes = sum(u.duration for split in utts.values() for u in split) / 60
    assert minutes == pytest.approx(48.4, abs=0.05)
    speakers = {
        split: {Path(u.audio_filepath).parent.name for u in us} for split, us in utts.items()
    }
    assert speakers["dev"] == set(an4.DEV_SPEAKERS)
    assert not speakers["dev"] & speakers["train"] and len(speakers["test"]) == 10
    words = out["words"].read_text().split()
    train_words = {w for u in utts["train"] + utts["dev"] for w in u.text.split()}
    assert len(words) == 101 and {"november", "thirteen"} <= set(words) - train_words


def test_asr_prepare_an4(tmp_path: Path, capsys):
    source = write_an4(tmp_path, ".wav")
    out = tmp_path / "manifests"
    assert main(["prepare", "an4", "--source", str(source), "--out-dir", str(out)]) == 0
    assert f"test: {out / 'test.jsonl'}" in capsys.readouterr().out
    (source / "wav/an4_clstk/fash/an251-fash-b.wav").unlink()
    assert main(["prepare", "an4", "--source", str(source), "--out-dir", str(out)]) == 1
    err = capsys.readouterr().err
    assert "an4_train.transcription:1: no audio file fash/an251-fash-b" in err
