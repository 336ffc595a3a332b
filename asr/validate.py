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

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from asr.audio import MAX_SECONDS, AudioError, audio_duration
from asr.audio import _segment_end as segment_end
from asr.data import ManifestError, Utterance
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
    manifest: Path
    parsed: dict[int, Utterance] = field(default_factory=dict)  # line -> utterance, if it parsed
    problems: list[Problem] = field(default_factory=list)  # errors, in line order
    notes: list[Problem] = field(default_factory=list)  # accepted, reported
    total: int = 0  # lines holding an utterance (good or bad)

    def usable(self, audio_problems: bool = False) -> list[Utterance]:
        """The utterances of lines without problems, in line order; with `audio_problems`,
        also those whose only problems are about their audio file (for a reader that names
        unreadable files itself, as transcription does)."""
        bad = {p.line for p in self.problems if not (audio_problems and p.audio)}
        return [u for line, u in self.parsed.items() if line not in bad]

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
    seen: dict[str, int] = {}
    lengths: dict[str, float | str] = {}  # file -> seconds, or why it cannot be read
    crlf: list[int] = []
    blank: list[int] = []  # blank lines since the last utterance: errors unless at the end
    try:
        with path.open("rb") as f:  # line by line: a million-line manifest is never whole
            for lineno, raw in enumerate(f, 1):
                if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    result.notes.append(Problem(path, 1, "note: UTF-8 byte-order mark (accepted)"))
                    raw = raw[3:]
                if raw.endswith(b"\r\n"):
                    crlf.append(lineno)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    result.problems.append(Problem(path, lineno, f"not UTF-8 text ({err.reason})"))
                    continue
                if not line.strip():
                    blank.append(lineno)
                    continue
                result.problems += [Problem(path, n, "blank line") for n in blank]
                blank = []
                _check_line(result, lineno, line, folder, seen, tokenizer)
                utt = result.parsed.get(lineno)
                if check_audio and utt is not None:
                    _check_audio(path, lineno, utt, tolerance, result.problems, lengths)
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
    line: str,
    folder: Path,
    seen: dict[str, int],
    tokenizer: Tokenizer | None,
) -> None:
    """Parse one utterance line into `result`: its problems, and `parsed` when it parses."""
    path = result.manifest
    result.total += 1
    utt = _parse(path, lineno, line, folder, result.problems)
    if utt is None:
        return
    result.parsed[lineno] = utt
    if utt.key in seen:
        cause = f"duplicate of line {seen[utt.key]} ({utt.key})"
        result.problems.append(Problem(path, lineno, cause))
    else:
        seen[utt.key] = lineno
    if tokenizer is not None:
        unknown = tokenizer.unknown(normalize_text(utt.text))
        if unknown:
            chars = " ".join(repr(c) for c in sorted(unknown))
            result.problems.append(
                Problem(path, lineno, f"outside the model's vocabulary: {chars}")
            )


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
