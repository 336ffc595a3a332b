"""FSDD: download through a local server, completeness check, splits; the real copy if present."""

from __future__ import annotations

import functools
import io
import tarfile
import threading
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.cli import main
from asr.data import read_manifest
from data_prep.fsdd import (
    DIGIT_WORDS,
    FOLDER_NAME,
    SPEAKERS,
    FsddError,
    check_fsdd,
    download_fsdd,
    prepare_fsdd,
)

REAL_FSDD = Path(__file__).resolve().parents[1].parent / "shared/data" / FOLDER_NAME
SAMPLE_RATE = 8000


def _num_samples(take: int) -> int:
    return 400 + take  # a length per take, so durations can be traced back to their file


def _write_fake_archive(path: Path) -> None:
    """A tarball laid out like GitHub's release archive (PAX, a commit id in the global header),
    with 3000 short silent recordings. Built in memory: this disk is slow at creating files."""
    wavs = {}
    for take in range(50):
        buf = io.BytesIO()
        sf.write(buf, np.zeros(_num_samples(take), np.int16), SAMPLE_RATE, format="WAV")
        wavs[take] = buf.getvalue()

    def add(tf: tarfile.TarFile, name: str, data: bytes | None = None) -> None:
        info = tarfile.TarInfo(f"{FOLDER_NAME}/{name}")
        if data is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        else:
            info.size, info.mode = len(data), 0o644
        tf.addfile(info, io.BytesIO(data) if data is not None else None)

    commit = {"comment": "0123456789abcdef0123456789abcdef01234567"}
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers=commit) as tf:
        add(tf, "")
        add(tf, "README.md", b"# Free Spoken Digit Dataset (fake, for tests)\n")
        add(tf, "metadata.py", b"metadata = {}\n")
        add(tf, "recordings")
        for speaker in SPEAKERS:
            for digit in range(10):
                for take in range(50):
                    add(tf, f"recordings/{digit}_{speaker}_{take}.wav", wavs[take])


class CountingHandler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(server, url) serving a fake v1.0.10.tar.gz from 127.0.0.1."""
    folder = tmp_path_factory.mktemp("served")
    _write_fake_archive(folder / "v1.0.10.tar.gz")
    handler = functools.partial(CountingHandler, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1.0.10.tar.gz"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(scope="module")
def fake_source(served, tmp_path_factory) -> Path:
    """The fake release as download_fsdd unpacks it (tests restore what they break in it)."""
    _, url = served
    return download_fsdd(tmp_path_factory.mktemp("fsdd"), url=url)


def test_download_fsdd_unpacks_checks_and_is_idempotent(served, fake_source):
    httpd, url = served
    root = fake_source.parent
    assert fake_source == root / FOLDER_NAME
    assert (fake_source / "metadata.py").is_file()
    assert (root / "v1.0.10.tar.gz").is_file()
    assert httpd.requests == ["/v1.0.10.tar.gz"]
    assert download_fsdd(root, url=url) == fake_source
    assert httpd.requests == ["/v1.0.10.tar.gz"]  # the second call fetched nothing


def test_check_fsdd_finds_all_recordings(fake_source):
    paths = check_fsdd(fake_source)
    assert len(paths) == len(set(paths)) == 3000
    assert fake_source / "recordings" / "9_yweweler_49.wav" in paths


def test_check_fsdd_names_a_missing_recording(fake_source):
    victim = fake_source / "recordings" / "7_theo_42.wav"
    hidden = victim.with_name("hidden.bin")
    victim.rename(hidden)
    try:
        with pytest.raises(FsddError, match=r"1 of 3000 recordings missing \(7_theo_42\.wav\)"):
            check_fsdd(fake_source)
    finally:
        hidden.rename(victim)


def test_check_fsdd_names_an_unreadable_recording(fake_source):
    victim = fake_source / "recordings" / "3_lucas_0.wav"
    original = victim.read_bytes()
    victim.write_bytes(b"this is not a wav file")
    try:
        with pytest.raises(FsddError, match=r"1 of 3000 recordings unreadable: 3_lucas_0\.wav \("):
            check_fsdd(fake_source)
    finally:
        victim.write_bytes(original)


def test_check_fsdd_wrong_folder(tmp_path):
    with pytest.raises(FsddError, match="no recordings/ folder"):
        check_fsdd(tmp_path)


@pytest.mark.parametrize(
    ("split", "counts"),
    [("standard", (2400, 300, 300)), ("speaker:theo", (2250, 250, 500))],
)
def test_prepare_fsdd_splits(fake_source, tmp_path, split, counts):
    manifests = prepare_fsdd(fake_source, tmp_path / "manifests", split=split)
    assert list(manifests) == ["train", "dev", "test"]
    utts = {name: read_manifest(path) for name, path in manifests.items()}
    assert tuple(len(utts[name]) for name in manifests) == counts

    # (speaker, take) per split, from the file names; text and duration traced to the file.
    seen: dict[str, set[tuple[str, int]]] = {name: set() for name in utts}
    files = set()
    for name, split_utts in utts.items():
        for utt in split_utts:
            digit, speaker, take = Path(utt.audio_filepath).stem.split("_")
            assert utt.text == DIGIT_WORDS[int(digit)]
            assert utt.duration == pytest.approx(_num_samples(int(take)) / SAMPLE_RATE, abs=1e-4)
            seen[name].add((speaker, int(take)))
            files.add(utt.audio_filepath)
    assert len(files) == 3000  # each recording in exactly one split

    if split == "standard":
        assert {take for _, take in seen["test"]} == set(range(5))
        assert {take for _, take in seen["dev"]} == set(range(5, 10))
        assert {take for _, take in seen["train"]} == set(range(10, 50))
    else:
        assert {speaker for speaker, _ in seen["test"]} == {"theo"}
        assert "theo" not in {speaker for speaker, _ in seen["train"] | seen["dev"]}
        assert {take for _, take in seen["dev"]} == set(range(5))


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ("random", "choose standard or speaker:NAME"),
        ("speaker:bob", "choose one of george, jackson, lucas, nicolas, theo, yweweler"),
    ],
)
def test_prepare_fsdd_unknown_split(tmp_path, split, message):
    # Refused before the source is even looked at (it does not exist here).
    with pytest.raises(ValueError, match=message):
        prepare_fsdd(tmp_path / "nowhere", tmp_path / "manifests", split=split)


def test_asr_prepare_fsdd_writes_manifests_and_reports_errors(fake_source, tmp_path, capsys):
    assert main(["prepare", "fsdd", "--source", str(fake_source), "--out-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"train: {tmp_path / 'train.jsonl'}"
    assert main(["prepare", "fsdd", "--source", str(tmp_path), "--out-dir", str(tmp_path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("asr: error: ") and "no recordings/ folder" in line


def test_asr_prepare_fsdd_downloads(served, fake_source, tmp_path, monkeypatch, capsys):
    import data_prep.fsdd

    _, url = served
    local = functools.partial(download_fsdd, url=url)
    monkeypatch.setattr(data_prep.fsdd, "DATASET", replace(data_prep.fsdd.DATASET, download=local))
    args = ["prepare", "fsdd", "--download-dir", str(fake_source.parent)]
    assert main([*args, "--out-dir", str(tmp_path), "--split", "speaker:theo"]) == 0
    assert len(read_manifest(tmp_path / "test.jsonl")) == 500
    assert main(["prepare", "fsdd", "--out-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "fsdd needs --source DIR" in err and "or --download-dir DIR" in err


def test_real_fsdd(tmp_path):
    if not REAL_FSDD.is_dir():
        pytest.skip(f"no FSDD copy at {REAL_FSDD}")
    assert len(check_fsdd(REAL_FSDD)) == 3000
    manifests = prepare_fsdd(REAL_FSDD, tmp_path)
    counts = {name: len(read_manifest(path)) for name, path in manifests.items()}
    assert counts == {"train": 2400, "dev": 300, "test": 300}
    test = read_manifest(manifests["test"])
    assert {u.text for u in test} == set(DIGIT_WORDS)
    assert all(0.1 < u.duration < 3.0 for u in test)
