"""LJ Speech: prepare (through lhotse) on copies generated in the release's layout, the fixed
split, the count check and --allow-partial, malformed metadata lines, the resumable and
checksummed download from a local server, and the whole recipe on a tone corpus (slow)."""

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

from asr.cli import main
from asr.data import read_manifest
from asr.files import DownloadError
from data_prep import ljspeech
from data_prep.ljspeech import (
    LJSpeechError,
    download_ljspeech,
    prepare_ljspeech,
    read_metadata,
    split_of,
)
from tests.conftest import ROOT, tiny_recipe_model, tone_utterance

RATE = 22_050
# (text as read, normalised text, what the manifest must hold), cycled over the clips.
LINES = [
    (
        "Printing, in the only sense with which we are at present concerned,",
        "Printing, in the only sense with which we are at present concerned,",
        "printing in the only sense with which we are at present concerned",
    ),
    (
        'in 1884 the Dallas "Morning News" cost $5.',
        'in eighteen eighty-four the Dallas "Morning News" cost five dollars.',
        "in eighteen eighty four the dallas morning news cost five dollars",
    ),
    (
        "Mr. Müller's café, p. 12.",
        "Mister Müller's café, page twelve.",
        "mister müller's café page twelve",
    ),
]


def clip_id(index: int) -> str:
    """Ids as in the release: chapters LJ001..., numbers from 0001 within each."""
    return f"LJ{1 + index // 40:03d}-{1 + index % 40:04d}"


def clip_samples(index: int) -> int:
    return RATE // 5 + 11 * index  # lengths tell the clips apart


def make_lj_copy(root: Path, clips: int = 80, wav=None) -> Path:
    """`root/LJSpeech-1.1/` with metadata.csv, README and `clips` wavs (22.05 kHz, 16-bit);
    `wav(index) -> samples` makes the audio (noise by default)."""
    source = root / "LJSpeech-1.1"
    (source / "wavs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    order = list(range(clips))
    rng.shuffle(order)  # metadata.csv's order is not the split's: the split sorts the ids
    for index in order:
        raw, normalised, _ = LINES[index % len(LINES)]
        samples = wav(index) if wav else 0.05 * rng.standard_normal(clip_samples(index))
        sf.write(source / "wavs" / f"{clip_id(index)}.wav", samples, RATE, subtype="PCM_16")
        lines.append(f"{clip_id(index)}|{raw}|{normalised}\n")
    (source / "metadata.csv").write_text("".join(lines), encoding="utf-8")
    (source / "README").write_text("LJ Speech Dataset\n")
    return source


@pytest.fixture
def lj_copy(tmp_path: Path) -> Path:
    return make_lj_copy(tmp_path / "corpus")


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_split_of_the_full_release():
    counts = {name: 0 for name in ("train", "dev", "test")}
    for index in range(ljspeech.EXPECTED_CLIPS):
        counts[split_of(index)] += 1
    assert counts == {"train": 12_576, "dev": 262, "test": 262}


def test_prepare_field_by_field_with_allow_partial(lj_copy: Path, tmp_path: Path, capsys):
    manifests = prepare_ljspeech(lj_copy, tmp_path / "out", allow_partial=True)
    assert manifests == {s: tmp_path / "out" / f"{s}.jsonl" for s in ("train", "dev", "test")}
    assert "80 clips with a wav, the release has 13,100: a partial copy" in capsys.readouterr().err
    rows = {name: rows_of(path) for name, path in manifests.items()}
    # Sorted ids, one in 50 from 0 for dev, one in 50 from 25 for test.
    assert [Path(r["audio_filepath"]).stem for r in rows["dev"]] == [clip_id(0), clip_id(50)]
    assert [Path(r["audio_filepath"]).stem for r in rows["test"]] == [clip_id(25), clip_id(75)]
    train = [i for i in range(80) if i % 25]
    assert [Path(r["audio_filepath"]).stem for r in rows["train"]] == [clip_id(i) for i in train]
    for row in rows["train"] + rows["dev"] + rows["test"]:
        assert set(row) == {"audio_filepath", "duration", "text"}  # whole files: no offset
        path = Path(row["audio_filepath"])
        assert path.is_absolute() and path.parent == lj_copy.resolve() / "wavs"
        index = [clip_id(i) for i in range(80)].index(path.stem)
        assert row["duration"] == pytest.approx(clip_samples(index) / RATE, abs=1e-4)
        assert row["text"] == LINES[index % len(LINES)][2]
    assert len(read_manifest(manifests["train"])) == 76


def test_prepare_accepts_the_folder_holding_it(lj_copy: Path, tmp_path: Path):
    a = prepare_ljspeech(lj_copy, tmp_path / "a", allow_partial=True)["dev"].read_text()
    assert (
        prepare_ljspeech(lj_copy.parent, tmp_path / "b", allow_partial=True)["dev"].read_text() == a
    )


def _error(source: Path, tmp_path: Path, allow_partial: bool = False) -> str:
    with pytest.raises(LJSpeechError) as err:
        prepare_ljspeech(source, tmp_path / "out", allow_partial=allow_partial)
    assert not (tmp_path / "out").exists()  # nothing written from a bad copy
    return str(err.value)


def test_partial_copy_is_refused_by_count(lj_copy: Path, tmp_path: Path):
    assert _error(lj_copy, tmp_path) == (
        f"{lj_copy.resolve()}: 80 clips with a wav, the release has 13,100: a partial copy "
        "(--allow-partial prepares it anyway)"
    )


def test_the_release_count_passes_without_allow_partial(tmp_path: Path, monkeypatch):
    source = make_lj_copy(tmp_path / "corpus", clips=52)
    monkeypatch.setattr(ljspeech, "EXPECTED_CLIPS", 52)  # 13,100 wavs would take a while
    manifests = prepare_ljspeech(source, tmp_path / "out")
    assert [len(rows_of(manifests[s])) for s in ("train", "dev", "test")] == [49, 2, 1]


def _edit_metadata(source: Path, number: int, edit) -> None:
    lines = (source / "metadata.csv").read_text(encoding="utf-8").split("\n")
    lines[number - 1] = edit(lines[number - 1])
    (source / "metadata.csv").write_text("\n".join(lines), encoding="utf-8")


def test_malformed_lines_are_named_with_file_and_line(lj_copy: Path, tmp_path: Path):
    metadata = lj_copy / "metadata.csv"
    first_id = metadata.read_text().split("|", 1)[0]
    _edit_metadata(lj_copy, 3, lambda line: line.rsplit("|", 1)[0])  # no normalised text
    _edit_metadata(lj_copy, 5, lambda line: "LJ1-01" + line[10:])
    _edit_metadata(lj_copy, 7, lambda line: first_id + line[10:])
    _edit_metadata(lj_copy, 9, lambda line: line.rsplit("|", 1)[0] + "| ... ")
    message = _error(lj_copy, tmp_path, allow_partial=True)
    where = lj_copy.resolve() / "metadata.csv"
    assert message.splitlines() == [
        f"4 malformed line(s) in {where}:",
        f"{where}:3: 2 '|'-separated fields, expected 3 (id|text|normalised text)",
        f"{where}:5: id 'LJ1-01' is not of the form LJnnn-nnnn",
        f"{where}:7: id {first_id} listed twice (first at line 1)",
        f"{where}:9: no words in the normalised text ' ... '",
    ]


def test_missing_and_unlisted_wavs_are_named(lj_copy: Path, tmp_path: Path):
    (lj_copy / "wavs" / f"{clip_id(7)}.wav").rename(lj_copy / "wavs" / "LJ099-0001.wav")
    message = _error(lj_copy, tmp_path)
    line = read_metadata(lj_copy / "metadata.csv")
    where = next(e.where for e in line if e.clip_id == clip_id(7))
    assert message.splitlines() == [
        f"2 problem(s) in {lj_copy.resolve()}:",
        f"{where.replace(str(lj_copy), str(lj_copy.resolve()))}: no wav "
        f"{lj_copy.resolve() / 'wavs' / clip_id(7)}.wav",
        f"{lj_copy.resolve() / 'wavs' / 'LJ099-0001'}.wav: no line in metadata.csv",
    ]


def test_allow_partial_leaves_out_lines_without_a_wav(lj_copy: Path, tmp_path: Path, capsys):
    (lj_copy / "wavs" / f"{clip_id(3)}.wav").unlink()
    manifests = prepare_ljspeech(lj_copy, tmp_path / "out", allow_partial=True)
    ids = [Path(r["audio_filepath"]).stem for s in manifests.values() for r in rows_of(s)]
    assert len(ids) == 79 and clip_id(3) not in ids
    err = capsys.readouterr().err
    assert "79 clips with a wav" in err and f"no wav {lj_copy.resolve() / 'wavs'}" in err


def test_unreadable_wav_is_named(lj_copy: Path, tmp_path: Path):
    (lj_copy / "wavs" / f"{clip_id(4)}.wav").write_bytes(b"RIFF junk")
    message = _error(lj_copy, tmp_path, allow_partial=True)
    where = next(
        e.where for e in read_metadata(lj_copy / "metadata.csv") if e.clip_id == clip_id(4)
    )
    wav = lj_copy / "wavs" / f"{clip_id(4)}.wav"
    assert message.splitlines()[0] == f"1 unreadable wav(s) in {lj_copy.resolve()}:"
    assert message.splitlines()[1].startswith(
        f"{where.replace(str(lj_copy), str(lj_copy.resolve()))}: {wav.resolve()}: "
        "cannot read audio header"
    )


def _archive_of(source: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        tar.add(source, arcname="LJSpeech-1.1")
    return buf.getvalue()


def test_download_resumes_a_partial_archive(range_server, tmp_path: Path):
    served, base = range_server
    body = _archive_of(make_lj_copy(tmp_path / "corpus", clips=30))
    served.files["/data/speech/LJSpeech-1.1.tar.bz2"] = body
    url, sha = f"{base}/data/speech/LJSpeech-1.1.tar.bz2", hashlib.sha256(body).hexdigest()
    root = tmp_path / "download"
    root.mkdir()
    (root / "LJSpeech-1.1.tar.bz2.part").write_bytes(body[:1000])  # an interrupted download

    source = download_ljspeech(root, url=url, sha256=sha)
    assert source == root / "LJSpeech-1.1"
    assert served.requests == [("/data/speech/LJSpeech-1.1.tar.bz2", "bytes=1000-")]
    assert (root / "LJSpeech-1.1.tar.bz2").read_bytes() == body
    assert len(list((source / "wavs").glob("*.wav"))) == 30
    assert len(read_metadata(source / "metadata.csv")) == 30
    assert download_ljspeech(root, url=url, sha256=sha) == source  # done: nothing fetched
    assert len(served.requests) == 1


def test_download_rejects_a_bad_checksum(range_server, tmp_path: Path):
    served, base = range_server
    served.files["/LJSpeech-1.1.tar.bz2"] = b"not the archive" * 100
    root = tmp_path / "download"
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download_ljspeech(root, url=f"{base}/LJSpeech-1.1.tar.bz2")  # the release's sha256
    assert not (root / "LJSpeech-1.1.tar.bz2").exists()
    assert not (root / "LJSpeech-1.1.tar.bz2.part").exists()  # not resumed next time
    assert not (root / "LJSpeech-1.1").exists()


def test_asr_prepare_ljspeech(lj_copy: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    args = ["prepare", "ljspeech", "--source", str(lj_copy), "--out-dir", str(out)]
    assert main(args) == 1
    assert "a partial copy (--allow-partial prepares it anyway)" in capsys.readouterr().err
    assert main([*args, "--allow-partial"]) == 0
    assert capsys.readouterr().out.split() == [
        "train:",
        str(out / "train.jsonl"),
        "dev:",
        str(out / "dev.jsonl"),
        "test:",
        str(out / "test.jsonl"),
    ]


def test_dataset_record():
    spec = ljspeech.DATASET
    assert spec.name == "ljspeech" and spec.takes_source
    assert spec.prepare is prepare_ljspeech and spec.download is download_ljspeech
    assert ljspeech.URL == "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"


TONE_TEXTS = ["abc", "cab", "ba", "ca", "bc", "a b", "cc", "aab", "acb", "b", "bca", "c a"]


@pytest.mark.slow
def test_recipe_runs_every_stage_on_a_tone_corpus(tmp_path: Path):
    """The tone "language" of conftest as an LJ Speech copy: 80 clips, 76 to train on."""
    rng = np.random.default_rng(1)
    texts = {clip_id(i): TONE_TEXTS[i % len(TONE_TEXTS)] for i in range(80)}
    source = make_lj_copy(
        tmp_path / "corpus", clips=80, wav=lambda i: tone_utterance(texts[clip_id(i)], RATE, rng)
    )
    metadata = source / "metadata.csv"
    lines = [line.split("|")[0] for line in metadata.read_text().splitlines()]
    metadata.write_text("".join(f"{i}|{texts[i].upper()}.|{texts[i]}\n" for i in lines))
    exp = tmp_path / "exp"
    env = {**os.environ, "ASR": f"{sys.executable} -m asr.cli", "OMP_NUM_THREADS": "1"}
    cmd = ["bash", str(ROOT / "recipes/ljspeech/run.sh"), "--source", str(source)]
    cmd += ["--allow-partial", "--exp-dir", str(exp), "--", *tiny_recipe_model(epochs=10)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads((exp / "results.json").read_text())
    assert results["training"]["runs"] == 1
    for name, count in (("dev", 2), ("test", 2), ("test-lm", 2)):
        assert results[name]["utterances"] == count and results[name]["failed"] == 0
    assert results["test"]["cer"] < 0.5, results
    lines = [line.split("\t") for line in run.stdout.splitlines() if "\t" in line]
    assert [Path(f).stem for f, _ in lines] == [clip_id(25), clip_id(75)]
