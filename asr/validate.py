"""Manifest checks: every problem of a JSON-lines manifest at once, one line each.

What is an error (the line cannot be used as written):
    invalid JSON, a line that is not an object, a missing field (audio_filepath, duration,
    text), a field of the wrong type, a duration or offset that is negative, a zero duration,
    an empty text, a missing or unreadable audio file (or a folder), a duration more than 10%
    off the file's real length (from its header), a duplicate utterance (the same file, or the
    same span of a file for segments with `offset`), a blank line between lines, characters
    outside the model's vocabulary (when a tokenizer is given).
What is accepted and reported as a note (every JSON reader here copes with it):
    a UTF-8 byte-order mark, CRLF line ends, blank lines at the end of the file.
"""

from __future__ import annotations

import hashlib
import json
import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from asr.audio import MAX_SECONDS, AudioError, audio_duration
from asr.audio import _segment_end as segment_end
from asr.data import ManifestError, Utterance
from asr.manifest_index import ManifestIndex, file_stamp
from asr.text import normalize_text
from asr.tokenizers import Tokenizer

FIELDS = ("audio_filepath", "duration", "text")
DURATION_TOLERANCE = 0.10  # a manifest duration more than this share off the header is an error


@dataclass
class Problem:
    """One problem of one manifest line; `audio` when it is about the audio file itself."""

    manifest: Path
    line: int
    cause: str
    audio: bool = False

    def __str__(self) -> str:
        return f"{self.manifest}:{self.line}: {self.cause}"


@dataclass
class Validation:
    """Problems and notes of a manifest, and where its parsed lines are: a few numbers per
    line (never a Python object per line), so a million-line manifest costs megabytes."""

    manifest: Path
    problems: list[Problem] = field(default_factory=list)  # errors, in line order
    notes: list[Problem] = field(default_factory=list)  # accepted, reported
    total: int = 0  # lines holding an utterance (good or bad)
    # per line that parsed, in line order: its number, byte position, duration, offset (NaN:
    # none) and a 64-bit hash of its utterance's key (duplicates are found by sorting these)
    lines: array = field(default_factory=lambda: array("q"))
    starts: array = field(default_factory=lambda: array("q"))
    durations: array = field(default_factory=lambda: array("d"))
    offsets: array = field(default_factory=lambda: array("d"))
    keys: array = field(default_factory=lambda: array("q"))
    stamp: tuple[int, int] = (0, 0)  # (size, mtime in ns) when checked: see ManifestIndex

    def index(self, audio_problems: bool = False, normalise: bool = False) -> ManifestIndex:
        """The utterances of lines without problems, in line order, left on disk; with
        `audio_problems`, also those whose only problems are about their audio file (for a
        reader that names unreadable files itself, as transcription does)."""
        bad = [p.line for p in self.problems if not (audio_problems and p.audio)]
        if not bad:  # every parsed line: the index shares this object's arrays, no copy
            return self._parsed(slice(None), normalise)
        good = np.flatnonzero(~np.isin(np.asarray(self.lines, dtype=np.int64), bad))
        return self._parsed(good, normalise)

    def _parsed(self, rows: np.ndarray | slice, normalise: bool = False) -> ManifestIndex:
        """The utterances of parsed lines number `rows` (0 = the first line that parsed)."""
        start = np.asarray(self.starts, dtype=np.int64)[rows]
        return ManifestIndex(
            [str(self.manifest)],
            np.zeros(len(start), dtype=np.int16),
            start,
            np.asarray(self.durations, dtype=np.float64)[rows],
            np.asarray(self.offsets, dtype=np.float64)[rows],
            normalise,
            stamps=[self.stamp],
        )

    def usable(self, audio_problems: bool = False) -> list[Utterance]:
        """`index(audio_problems)` as a list (for small manifests)."""
        return list(self.index(audio_problems))

    @property
    def bad_lines(self) -> int:
        return len({p.line for p in self.problems})

    def summary(self) -> str:
        if not self.problems:
            return f"{self.manifest}: {self.total} utterance(s), no problems"
        return (
            f"{self.manifest}: {len(self.problems)} problem(s) on {self.bad_lines} of "
            f"{self.total} line(s)"
        )


def validate_manifest(
    path: str | Path,
    tokenizer: Tokenizer | None = None,
    check_audio: bool = True,
    tolerance: float = DURATION_TOLERANCE,
) -> Validation:
    """Check every line of a manifest; ManifestError only when the file itself cannot be read.

    With `tokenizer`, the (normalised) text must be within its vocabulary. With `check_audio`,
    each file's header is read: it must exist, be readable audio and agree with `duration`.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest")
    result = Validation(path)
    folder = path.resolve().parent
    lengths: dict[str, float | str] = {}  # file -> seconds, or why it cannot be read
    crlf: list[int] = []
    blank: list[int] = []  # blank lines since the last utterance: errors unless at the end
    try:
        with path.open("rb") as f:  # line by line: a million-line manifest is never whole
            result.stamp = file_stamp(f)
            start = 0  # byte position of the line
            for lineno, raw in enumerate(f, 1):
                end = start + len(raw)
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    result.notes.append(Problem(path, 1, "note: UTF-8 byte-order mark (accepted)"))
                    raw = raw[3:]
                    start = 3
                if raw.endswith(b"\r\n"):
                    crlf.append(lineno)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    result.problems.append(Problem(path, lineno, f"not UTF-8 text ({err.reason})"))
                    start = end
                    continue
                if not line.strip():
                    blank.append(lineno)
                    start = end
                    continue
                result.problems += [Problem(path, n, "blank line") for n in blank]
                blank = []
                utt = _check_line(result, lineno, start, line, folder, tokenizer)
                if check_audio and utt is not None:
                    _check_audio(path, lineno, utt, tolerance, result.problems, lengths)
                start = end
            if file_stamp(f) != result.stamp:
                raise ManifestError(f"{path}: changed while it was being checked; check it again")
        _report_duplicates(result)
    except OSError as err:
        raise ManifestError(f"{path}: cannot read the manifest ({err.strerror})") from None
    if crlf:
        result.notes.append(
            Problem(path, crlf[0], f"note: CRLF line ends on {len(crlf)} line(s) (accepted)")
        )
    if blank:
        result.notes.append(Problem(path, blank[0], "note: blank line(s) at the end (accepted)"))
    if result.total == 0:
        result.problems.append(Problem(path, 1, "manifest has no utterances"))
    return result


def _check_line(
    result: Validation,
    lineno: int,
    start: int,
    line: str,
    folder: Path,
    tokenizer: Tokenizer | None,
) -> Utterance | None:
    """Parse one utterance line (at byte `start`) into `result`: its problems, and its place
    when it parses; the utterance, or None."""
    path = result.manifest
    result.total += 1
    utt = _parse(path, lineno, line, folder, result.problems)
    if utt is None:
        return None
    result.lines.append(lineno)
    result.starts.append(start)
    result.durations.append(utt.duration)
    result.offsets.append(math.nan if utt.offset is None else utt.offset)
    result.keys.append(_key_hash(utt.key))
    if tokenizer is not None:
        unknown = tokenizer.unknown(normalize_text(utt.text))
        if unknown:
            chars = " ".join(repr(c) for c in sorted(unknown))
            result.problems.append(
                Problem(path, lineno, f"outside the model's vocabulary: {chars}")
            )
    return utt


def _key_hash(key: str) -> int:
    """A 64-bit hash of an utterance's key, the same in every process."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _report_duplicates(result: Validation) -> None:
    """A problem for each line whose utterance's key an earlier line has: equal hashes are
    found by sorting, then only those lines are read again to compare their keys."""
    keys = np.asarray(result.keys, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    same = ordered[1:] == ordered[:-1]
    result.keys = array("q")  # not needed any more
    if not same.any():
        return
    candidates = np.zeros(len(keys), dtype=bool)
    candidates[order[1:][same]] = True
    candidates[order[:-1][same]] = True
    positions = np.flatnonzero(candidates)  # in line order
    utts = result._parsed(positions)
    first: dict[str, int] = {}
    duplicates = []
    for i, utt in zip(positions.tolist(), utts, strict=True):
        key, lineno = utt.key, result.lines[i]
        if key in first:
            cause = f"duplicate of line {first[key]} ({key})"
            duplicates.append(Problem(result.manifest, lineno, cause))
        else:
            first[key] = lineno
    # A parsed line's first problem is its duplicate one (as when found while reading).
    ids = {id(p) for p in duplicates}
    result.problems = sorted(result.problems + duplicates, key=lambda p: (p.line, id(p) not in ids))


def _parse(
    path: Path, lineno: int, line: str, folder: Path, problems: list[Problem]
) -> Utterance | None:
    """The line's utterance, or None with its problems appended (all of them, not the first)."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        problems.append(Problem(path, lineno, f"not valid JSON ({err.msg}, column {err.colno})"))
        return None
    if not isinstance(obj, dict):
        problems.append(Problem(path, lineno, f"not a JSON object ({type(obj).__name__})"))
        return None
    before = len(problems)
    for name in FIELDS:
        if name not in obj:
            problems.append(Problem(path, lineno, f"missing field {name!r}"))
    audio, duration, text = (obj.get(name) for name in FIELDS)
    if audio is not None and (not isinstance(audio, str) or not audio):
        problems.append(Problem(path, lineno, f"audio_filepath is not a path: {audio!r}"))
    duration = _number(path, lineno, "duration", duration, problems)
    if duration is not None and duration <= 0:
        problems.append(Problem(path, lineno, f"duration must be positive, got {duration:g}"))
    offset = _number(path, lineno, "offset", obj.get("offset"), problems)
    if offset is not None and offset < 0:
        problems.append(Problem(path, lineno, f"offset must not be negative, got {offset:g}"))
    if text is not None and not isinstance(text, str):
        problems.append(Problem(path, lineno, f"text is not a string: {text!r}"))
    elif isinstance(text, str) and not text.strip():
        problems.append(Problem(path, lineno, "empty text"))
    if len(problems) > before:
        return None
    audio_path = Path(audio)
    resolved = audio_path if audio_path.is_absolute() else folder / audio_path
    return Utterance(str(resolved), duration, text, offset)


def _number(path: Path, lineno: int, name: str, value, problems: list[Problem]) -> float | None:
    """A finite number, or None (with a problem appended when it is present but not one)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        problems.append(Problem(path, lineno, f"{name} is not a number: {value!r}"))
        return None
    return float(value)


def _check_audio(
    path: Path,
    lineno: int,
    utt: Utterance,
    tolerance: float,
    problems: list[Problem],
    lengths: dict[str, float | str],
) -> None:
    """The file exists, its header reads, and its length agrees with the manifest's.

    `lengths` caches each file's length (or its error) by path: a file cut into many segments
    has its header read once.
    """
    audio = Path(utt.audio_filepath)
    if utt.audio_filepath not in lengths:
        try:
            lengths[utt.audio_filepath] = audio_duration(audio)
        except AudioError as err:
            lengths[utt.audio_filepath] = str(err)
        except OSError as err:
            lengths[utt.audio_filepath] = f"{audio}: cannot read ({err.strerror})"
    length = lengths[utt.audio_filepath]
    if utt.offset is None:  # a whole file is read once: no need to remember it
        del lengths[utt.audio_filepath]
    if isinstance(length, str):
        problems.append(Problem(path, lineno, length, True))
        return
    real = length
    if utt.offset is not None:
        try:
            real = segment_end(audio, length, utt.offset, utt.duration) - utt.offset
        except AudioError as err:
            problems.append(Problem(path, lineno, str(err)))
            return
    if real > MAX_SECONDS:
        cause = (
            f"{audio}: {real:.1f} s, over the {MAX_SECONDS:g} s an utterance may last "
            "(list it as segments with `offset`, or transcribe it: long files are cut at pauses)"
        )
        problems.append(Problem(path, lineno, cause, True))
        return
    if abs(utt.duration - real) > tolerance * real:
        cause = (
            f"duration {utt.duration:g} s but {audio} is {real:.3f} s long "
            f"(more than {100 * tolerance:g}% off)"
        )
        problems.append(Problem(path, lineno, cause))


def refuse_problems(validation: Validation, audio: bool = True) -> None:
    """ManifestError listing every problem (those about audio files only with `audio`)."""
    problems = [p for p in validation.problems if audio or not p.audio]
    if problems:
        lines = "\n".join(str(p) for p in problems)
        raise ManifestError(
            f"{validation.manifest}: {len(problems)} problem(s); `asr validate "
            f"{validation.manifest}` lists them:\n{lines}"
        )
