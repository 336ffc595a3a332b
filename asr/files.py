"""Files: atomic writes, checksums, resumable checksummed downloads, archives unpacked safely.

`atomic_write_text` writes through a temporary file and a rename, so readers never see half.

`download_file` fetches into `<dest>.part`, resumes a partial file with an HTTP Range request,
checks size and sha256 (and/or md5, where a publisher lists only that, as OpenSLR does), and
only then renames to `dest`, so `dest` existing means complete.
`extract_archive` refuses members that would land outside the destination and records a
completed extraction with a marker file, so an interrupted one is redone and a finished one is
not.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from asr.progress import progress_bar

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0  # per socket operation, not for the whole download
RETRY_WAIT_S = 2.0  # doubled after each failed attempt
# Client errors that another attempt will not cure (404, 403, ...) fail at once.
_RETRYABLE_HTTP = {408, 425, 429}
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
# tarfile's "data" filter (Python 3.12, 3.11.4, 3.10.12 and later) also resets modes and owners.
_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename, so readers never see half."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """`atomic_write_text` for bytes: temporary file, fsync, rename.

    A failed write (a full disk, say) leaves the previous file as it was and raises OSError
    naming the file and the cause.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(
            err.errno, f"{path}: cannot write ({err.strerror or err}); the previous file is kept"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DownloadError(ValueError):
    """A download or an archive that cannot be used; the message names the file and the cause."""


def file_sha256(path: Path) -> str:
    return file_digests(path, ("sha256",))["sha256"]


def file_digests(path: Path, algorithms: tuple[str, ...]) -> dict[str, str]:
    """{algorithm: hex digest} of the file, every algorithm (hashlib names) in one read."""
    digests = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            for digest in digests.values():
                digest.update(chunk)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def _checksum_mismatch(path: Path, expected: dict[str, str | None]) -> str | None:
    """The first given checksum the file fails ("md5 mismatch, expected X, got Y"), or None."""
    wanted = {name: value.lower() for name, value in expected.items() if value is not None}
    if not wanted:
        return None
    actual = file_digests(path, tuple(wanted))
    for name, value in wanted.items():
        if actual[name] != value:
            return f"{name} mismatch, expected {value}, got {actual[name]}"
    return None


def _is_complete(path: Path, checksums: dict[str, str | None], expected_size: int | None) -> bool:
    if expected_size is not None and path.stat().st_size != expected_size:
        return False
    return _checksum_mismatch(path, checksums) is None


def download_file(
    url: str,
    dest: Path,
    sha256: str | None = None,
    expected_size: int | None = None,
    retries: int = 3,
    md5: str | None = None,
) -> Path:
    """Download `url` to `dest`, resuming `<dest>.part` if an earlier attempt left one.

    `sha256` and `md5` (either, both or neither) are checked when given. Returns `dest` at
    once, without touching the network, when it exists and matches the given size and
    checksums. Raises DownloadError after `retries` failed attempts, at once on a client error
    such as 404, and on a checksum mismatch (the partial file is then deleted, since resuming
    it would only give the same bytes).
    """
    if retries < 1:
        raise ValueError(f"retries must be at least 1, got {retries}")
    dest = Path(dest)
    checksums = {"sha256": sha256, "md5": md5}
    if dest.is_file() and _is_complete(dest, checksums, expected_size):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    for attempt in range(1, retries + 1):
        try:
            _fetch(url, part, expected_size)
            break
        except urllib.error.HTTPError as err:
            if attempt == retries or (err.code < 500 and err.code not in _RETRYABLE_HTTP):
                raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from None
        except (OSError, http.client.HTTPException) as err:
            if attempt == retries:
                raise DownloadError(
                    f"{url}: download failed after {retries} attempts ({err}); "
                    f"run again to resume from {part}"
                ) from None
        time.sleep(RETRY_WAIT_S * 2 ** (attempt - 1))

    size = part.stat().st_size
    if expected_size is not None and size != expected_size:
        part.unlink()
        raise DownloadError(f"{dest}: got {size} bytes from {url}, expected {expected_size}")
    mismatch = _checksum_mismatch(part, checksums)
    if mismatch is not None:
        part.unlink()
        raise DownloadError(f"{dest}: {mismatch} (from {url})")
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, expected_size: int | None) -> None:
    """One attempt: append the rest of `url` to `part`, or rewrite it when the server can't
    resume. Raises OSError (or http.client.HTTPException) when the attempt falls short."""
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have >= expected_size:
        if have == expected_size:
            return
        part.unlink()  # longer than the file can be: not a prefix of it
        have = 0
    headers = {"User-Agent": "rnn-asr-data-prep"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not have:
            raise
        err.close()
        # Nothing left past `have`: the part is complete if the server's length agrees.
        total = _total_from_content_range(err.headers.get("Content-Range", ""))
        if total is not None and total != have:
            part.unlink()  # the next attempt starts again from 0
            raise ConnectionResetError(
                f"partial file is {have} bytes, server has {total}"
            ) from None
        return
    with response:
        if response.status != 206:
            have = 0  # the server sent the whole file (it ignores Range): start again
        elif _content_range_start(response) != have:
            part.unlink(missing_ok=True)
            raise ConnectionResetError("the server answered with another byte range")
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        total = have + remaining if remaining is not None else expected_size
        received = 0
        with (
            open(part, "ab" if have else "wb") as f,
            progress_bar(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
            ) as bar,
        ):
            while chunk := response.read(CHUNK_BYTES):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if remaining is not None and received < remaining:
        raise ConnectionResetError(f"connection closed after {received} of {remaining} bytes")


def _content_range_start(response: http.client.HTTPResponse) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _total_from_content_range(value: str) -> int | None:
    match = re.fullmatch(r"bytes (?:\*|\d+-\d+)/(\d+)", value.strip())
    return int(match.group(1)) if match else None


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack a .tar(.gz/.bz2/.xz), .tgz or .zip archive into the folder `dest`.

    Members that would land outside `dest` (absolute paths, `..`, links pointing out, through
    the archive's own symlinks included) and device files are refused with DownloadError
    before anything is written. The archive is unpacked into a hidden temporary folder in
    `dest`, then merged into place: folders merge with folders already there (two archives
    of one corpus, such as LibriSpeech's parts under `LibriSpeech/`, fill the same tree), and
    its files replace files of the same name (what an interrupted run left). A
    `.<archive name>.completed` marker is written last: a later call with the marker present
    does nothing.
    """
    archive, dest = Path(archive), Path(dest)
    marker = dest / f".{archive.name}.completed"
    stamp = f"{archive.name} {archive.stat().st_size}\n"  # a replaced archive is unpacked again
    if marker.is_file() and marker.read_text(encoding="utf-8") == stamp:
        return
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        _unpack(archive, tmp)
        _merge(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(marker, stamp)


def _merge(source: Path, dest: Path) -> None:
    """Move the entries of folder `source` into folder `dest`, merging sub-folders."""
    for entry in sorted(source.iterdir()):
        target = dest / entry.name
        is_dir = entry.is_dir() and not entry.is_symlink()
        if is_dir and target.is_dir() and not target.is_symlink():
            _merge(entry, target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)


def _unpack(archive: Path, into: Path) -> None:
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                members = zf.infolist()
                for info in members:
                    _check_member(archive, info.filename, {})
                zf.extractall(into, members)
        elif name.endswith(TAR_SUFFIXES):
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                _check_tar_members(archive, members)
                if _HAS_DATA_FILTER:
                    tf.extractall(into, members, filter="data")
                else:
                    tf.extractall(into, members)
        else:
            suffixes = ", ".join((*TAR_SUFFIXES, ".zip"))
            raise DownloadError(f"{archive}: unknown archive type (expected {suffixes})")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as err:
        # tarfile.FilterError is a TarError: the data filter refused something ours let through.
        raise DownloadError(
            f"{archive}: cannot unpack ({err}); delete it to download it again"
        ) from None


def _check_tar_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Refuse any member that the archive could use to write outside the extraction folder."""
    links: dict[str, str] = {}  # where a symlink lies (resolved) -> its target, in archive order
    for m in members:
        _check_member(archive, m.name, links)
        if m.isdev():  # character and block devices, FIFOs
            raise DownloadError(f"{archive}: refusing special file {m.name!r}")
        if not (m.issym() or m.islnk()):
            continue
        head, _, leaf = m.name.rstrip("/").rpartition("/")
        folder = _resolve(head, links) or []  # not None: _check_member walked it already
        # A symlink's target is relative to its folder, a hard link's to the archive's top.
        start = "/".join(folder) if m.issym() else ""
        if (
            leaf in ("", ".", "..")
            or m.linkname.startswith("/")
            or _resolve(posixpath.join(start, m.linkname), links) is None
        ):
            kind = "symlink" if m.issym() else "hard link"
            raise DownloadError(
                f"{archive}: refusing {kind} {m.name!r} -> {m.linkname!r} (points outside)"
            )
        if m.issym():
            links["/".join([*folder, leaf])] = m.linkname


def _check_member(archive: Path, name: str, links: dict[str, str]) -> None:
    absolute = name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) is not None
    if absolute or _resolve(name, links) is None:
        raise DownloadError(f"{archive}: refusing member {name!r} (it would land outside)")


def _resolve(path: str, links: dict[str, str]) -> list[str] | None:
    """The components of archive path `path` once `..` and the archive's own symlinks are
    followed, as the filesystem would after extraction; None when it leaves the top folder."""
    parts: list[str] = []
    todo = path.split("/")[::-1]
    hops = 0
    while todo:
        part = todo.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(part)
        target = links.get("/".join(parts))
        if target is not None:
            hops += 1
            if hops > 40 or target.startswith("/"):  # a loop, or out of the folder
                return None
            parts.pop()
            todo.extend(target.split("/")[::-1])
    return parts
