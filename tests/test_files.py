"""download_file against a local HTTP server with Range support; extract_archive's safety checks."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from asr import files as download
from asr.files import DownloadError, download_file, extract_archive

PAYLOAD = bytes(range(256)) * 400  # 100 KiB


@dataclass
class ServerState:
    files: dict[str, bytes]
    honour_range: bool = True
    cut_after: int | None = None  # send this many bytes of the next response, then hang up
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ServerState.files; answers `Range: bytes=N-` with 206 (or 416 past the end)."""

    def do_GET(self) -> None:
        state: ServerState = self.server.state
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if range_header and state.honour_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if state.cut_after is not None:
            self.wfile.write(body[start : start + state.cut_after])
            state.cut_after = None
            return  # HTTP/1.0: the connection closes, short of Content-Length
        self.wfile.write(body[start:])

    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def server():
    """(state, base_url) of a server on 127.0.0.1 serving /data.bin = PAYLOAD."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.state = ServerState(files={"/data.bin": PAYLOAD})
    # A short poll interval: shutdown() waits for it.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch):
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_full_download_with_checksum(server, tmp_path):
    state, base = server
    dest = download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256=SHA)
    assert dest == tmp_path / "data.bin"
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()
    assert state.requests == [("/data.bin", None)]


def test_resume_from_partial_file(server, tmp_path):
    state, base = server
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:1000])
    dest = download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert state.requests == [("/data.bin", "bytes=1000-")]


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    state, base = server
    state.honour_range = False
    (tmp_path / "data.bin.part").write_bytes(b"x" * 1000)  # would corrupt the file if appended to
    dest = download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert state.requests == [("/data.bin", "bytes=1000-")]


def test_complete_partial_file_gets_416(server, tmp_path):
    state, base = server
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    dest = download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert state.requests == [("/data.bin", f"bytes={len(PAYLOAD)}-")]


def test_dropped_connection_is_resumed_by_the_next_attempt(server, tmp_path):
    state, base = server
    state.cut_after = 5000
    dest = download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert state.requests == [("/data.bin", None), ("/data.bin", "bytes=5000-")]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    _, base = server
    wrong = "0" * 64
    with pytest.raises(DownloadError) as err:
        download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256=wrong)
    message = str(err.value)
    assert "data.bin" in message and wrong in message and SHA in message
    assert "\n" not in message
    assert list(tmp_path.iterdir()) == []


MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_md5_alone_and_with_sha256(server, tmp_path):
    state, base = server
    dest = download_file(f"{base}/data.bin", tmp_path / "a.bin", md5=MD5.upper())
    assert dest.read_bytes() == PAYLOAD
    dest = download_file(f"{base}/data.bin", tmp_path / "b.bin", sha256=SHA, md5=MD5)
    assert dest.read_bytes() == PAYLOAD
    download_file(f"{base}/data.bin", tmp_path / "b.bin", sha256=SHA, md5=MD5)  # complete
    assert len(state.requests) == 2


@pytest.mark.parametrize("good_sha256", [True, False])
def test_md5_mismatch_leaves_nothing(server, tmp_path, good_sha256):
    _, base = server
    wrong = "f" * 32
    with pytest.raises(DownloadError) as err:
        download_file(
            f"{base}/data.bin",
            tmp_path / "data.bin",
            sha256=SHA if good_sha256 else None,
            md5=wrong,
        )
    assert str(err.value) == (
        f"{tmp_path / 'data.bin'}: md5 mismatch, expected {wrong}, got {MD5} (from {base}/data.bin)"
    )
    assert list(tmp_path.iterdir()) == []


def test_existing_file_with_a_wrong_md5_is_downloaded_again(server, tmp_path):
    state, base = server
    (tmp_path / "data.bin").write_bytes(PAYLOAD[:-1] + b"x")
    dest = download_file(f"{base}/data.bin", tmp_path / "data.bin", md5=MD5)
    assert dest.read_bytes() == PAYLOAD
    assert state.requests == [("/data.bin", None)]


def test_size_mismatch_is_an_error(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match=f"expected {len(PAYLOAD) + 10}$"):
        download_file(f"{base}/data.bin", tmp_path / "data.bin", expected_size=len(PAYLOAD) + 10)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_needs_no_network(server, tmp_path):
    state, base = server
    (tmp_path / "data.bin").write_bytes(PAYLOAD)
    download_file(f"{base}/data.bin", tmp_path / "data.bin", sha256=SHA)
    download_file(f"{base}/data.bin", tmp_path / "data.bin")
    assert state.requests == []


def test_not_found_fails_without_retrying(server, tmp_path):
    state, base = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{base}/missing.bin", tmp_path / "missing.bin")
    assert len(state.requests) == 1


# --- extraction --------------------------------------------------------------------------------


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"hello") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _member(kind: str, name: str, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    if kind == "file":
        return _file(name)
    info = tarfile.TarInfo(name)
    types = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "chardev": tarfile.CHRTYPE}
    info.type, info.linkname = types[kind], target
    return info, None


def test_extract_tar_and_zip(tmp_path):
    tar = _tar(
        tmp_path / "good.tar.gz",
        [
            _file("top/a.txt"),
            _file("top/sub/b.txt", b"bee"),
            _member("symlink", "top/link", "sub/b.txt"),
        ],
    )
    extract_archive(tar, tmp_path / "out")
    assert (tmp_path / "out/top/a.txt").read_bytes() == b"hello"
    assert (tmp_path / "out/top/link").read_bytes() == b"bee"
    with zipfile.ZipFile(tmp_path / "good.zip", "w") as zf:
        zf.writestr("z/c.txt", "sea")
    extract_archive(tmp_path / "good.zip", tmp_path / "zout")
    assert (tmp_path / "zout/z/c.txt").read_text() == "sea"
    # Only the entries and the marker: no temporary folder left behind.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".good.tar.gz.completed", "top"]


# The own check runs first either way; without the data filter it is all there is.
@pytest.mark.parametrize("data_filter", [True, False], ids=["data-filter", "own-check-only"])
@pytest.mark.parametrize(
    ("kind", "name", "target"),
    [
        ("file", "top/../../evil", ""),
        ("file", "{tmp}/evil-absolute", ""),  # under tmp_path, should the check ever fail
        ("symlink", "top/out", "../../outside"),
        ("symlink", "top/abs", "/etc/passwd"),
        ("hardlink", "top/hard", "../outside"),
        ("chardev", "top/dev", ""),
        # Reads as top/s -> top (inside), but with top/d -> . it is top/x/../../..: outside.
        ("symlink", "top/s", "d/x/../../.."),
    ],
)
def test_tar_escapes_are_refused(tmp_path, monkeypatch, data_filter, kind, name, target):
    monkeypatch.setattr(download, "_HAS_DATA_FILTER", data_filter)
    name = name.format(tmp=tmp_path)
    good = [_file("top/ok.txt"), _file("top/x/keep.txt"), _member("symlink", "top/d", ".")]
    tar = _tar(tmp_path / "bad.tar.gz", [*good, _member(kind, name, target)])
    dest = tmp_path / "a" / "b" / "out"
    with pytest.raises(DownloadError) as err:
        extract_archive(tar, dest)
    assert "bad.tar.gz" in str(err.value) and repr(name) in str(err.value)
    # Nothing was written anywhere: not the good members, not outside.
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "bad.tar.gz", "out"]


def test_zip_escape_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../evil.txt", "nope")
    with pytest.raises(DownloadError, match=r"bad\.zip.*'\.\./evil\.txt'"):
        extract_archive(tmp_path / "bad.zip", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "ok.txt").exists()


def test_extraction_is_idempotent_and_redone_when_interrupted(tmp_path):
    tar = _tar(tmp_path / "data.tar.gz", [_file("top/a.txt"), _file("top/b.txt")])
    dest = tmp_path / "out"
    extract_archive(tar, dest)
    (dest / "top/a.txt").write_bytes(b"changed")
    extract_archive(tar, dest)  # completed before: left alone
    assert (dest / "top/a.txt").read_bytes() == b"changed"

    # An interrupted run: some of the tree, no marker. The next call puts back every file of
    # the archive; a file it does not hold may be another archive's, and stays.
    (dest / ".data.tar.gz.completed").unlink()
    (dest / "top/b.txt").unlink()
    (dest / "top/other.txt").write_bytes(b"another archive's")
    extract_archive(tar, dest)
    assert sorted(p.name for p in (dest / "top").iterdir()) == ["a.txt", "b.txt", "other.txt"]
    assert (dest / "top/a.txt").read_bytes() == b"hello"


def test_archives_of_one_tree_merge(tmp_path):
    """Two parts that unpack under the same top folder (as LibriSpeech's do) both stay."""
    one = _tar(tmp_path / "one.tar.gz", [_file("LibriSpeech/dev-clean/1.txt", b"1")])
    two = _tar(tmp_path / "two.tar.gz", [_file("LibriSpeech/test-clean/2.txt", b"2")])
    extract_archive(one, tmp_path / "out")
    extract_archive(two, tmp_path / "out")
    tree = tmp_path / "out" / "LibriSpeech"
    assert (tree / "dev-clean/1.txt").read_bytes() == b"1"
    assert (tree / "test-clean/2.txt").read_bytes() == b"2"


def test_corrupt_archive_is_named(tmp_path):
    tar = tmp_path / "broken.tar.gz"
    tar.write_bytes(b"not a tarball at all")
    with pytest.raises(DownloadError, match=r"broken\.tar\.gz"):
        extract_archive(tar, tmp_path / "out")


def test_a_full_disk_leaves_the_previous_manifest(tmp_path, monkeypatch):
    import errno
    import os

    from asr.data import Utterance, read_manifest, write_manifest

    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, [Utterance("a.wav", 1.0, "old")])

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match=r"train\.jsonl: cannot write \(No space left on device\)"):
        write_manifest(manifest, [Utterance("b.wav", 2.0, "new")])
    monkeypatch.undo()
    assert [u.text for u in read_manifest(manifest)] == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]  # no temporary file left
