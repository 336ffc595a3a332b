"""A table of the user's own recordings: `asr prepare csv --source FILE --out-dir OUT
[--path-column C] [--text-column C]`.

FILE is CSV or TSV with a header row naming its columns: a `.tsv` or `.tab` file is split at
tabs with no quoting (as Common Voice writes it: a `"` in a sentence is just a character), a
`.csv` file at commas with the usual double-quote quoting, and any other is sniffed (comma,
tab, semicolon or bar). UTF-8, an Excel byte-order mark allowed. The path column holds the
audio files, relative to FILE's folder or absolute; the text column their transcripts (kept
as written, runs of spaces made one; training normalises it). Without `--path-column` the
path column is the one header name of `PATH_COLUMNS` (any case), without `--text-column` the
text column the one of `TEXT_COLUMNS`; the choice is printed, and none or two such names is an
error listing the header. With `--speaker-column` the split is by speaker, else by utterance
(see `data_prep/split.py`). Durations come from the audio headers, and every sample is read
once (block by block) to refuse NaN or infinite ones; paths in the manifests are absolute.

A row that cannot be used (wrong number of fields, an empty path or text, one that is not
UTF-8, a missing or unreadable file, a file listed twice) is one line naming FILE and its line
number; the other rows are written, and the command then exits with status 1 listing them all.
"""

from __future__ import annotations

import csv
import io
import shlex
import sys
from pathlib import Path

from asr.audio import AudioError, audio_duration, check_samples
from asr.data import Utterance
from asr.datasets import Dataset, Option
from data_prep.split import (
    SPLIT_OPTIONS,
    Entry,
    ImporterError,
    SplitConfig,
    count,
    not_utf8,
    read_table_text,
    write_split,
)

SNIFF_BYTES = 64 * 1024
DELIMITERS = ",\t;|"
# The header names taken for the path and text columns when no flag names them (any case).
PATH_COLUMNS = ("path", "audio", "audio_filepath", "file")
TEXT_COLUMNS = ("text", "sentence", "transcript")


def table_dialect(path: Path, head: str) -> type[csv.Dialect] | csv.Dialect:
    """The dialect of the table at `path`: by its suffix, else sniffed from its first lines."""
    suffix = path.suffix.lower()
    if suffix in (".tsv", ".tab"):
        return _Tsv
    if suffix == ".csv":
        return csv.excel
    try:
        return csv.Sniffer().sniff(head, delimiters=DELIMITERS)
    except csv.Error:
        raise ImporterError(
            f"{path}: cannot tell its column separator (comma, tab, semicolon or bar); "
            "name it .csv or .tsv"
        ) from None


class _Tsv(csv.Dialect):
    """Tab-separated, no quoting: a quote is an ordinary character."""

    delimiter = "\t"
    quoting = csv.QUOTE_NONE
    quotechar = None
    escapechar = None
    doublequote = False
    skipinitialspace = False
    lineterminator = "\n"
    strict = False


def read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (line number, fields) of every non-blank row of the table; a byte
    that is not UTF-8 stays in its field as `read_table_text` keeps it."""
    text = read_table_text(path)
    # newline="": line ends inside quoted fields reach the reader as written (csv's rule).
    reader = csv.reader(io.StringIO(text, newline=""), table_dialect(path, text[:SNIFF_BYTES]))
    rows, start = [], 1
    try:
        for fields in reader:
            # A quoted field may span lines: a row is named by the line it starts on.
            if any(f.strip() for f in fields):
                rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as err:
        raise ImporterError(f"{path}:{start}: {err}") from None
    if not rows:
        raise ImporterError(f"{path}: empty table (no header row)")
    (_, header), *body = rows
    return [name.strip() for name in header], body


def column_index(path: Path, header: list[str], flag: str, name: str) -> int:
    """Where the column `name` is; ImporterError listing the header when it is not there."""
    if name in header:
        return header.index(name)
    have = ", ".join(repr(h) for h in header)
    raise ImporterError(f"{path}:1: {flag} {name!r}: no such column; the header has {have}")


def one_of(names: tuple[str, ...]) -> str:
    """`names` as a list in words.

    >>> one_of(("text", "sentence", "transcript"))
    'text, sentence or transcript'
    """
    return ", ".join(names[:-1]) + " or " + names[-1]


def column_by_name(path: Path, header: list[str], flag: str, names: tuple[str, ...]) -> int:
    """Where the one column of the header named like one of `names` (any case) is;
    ImporterError listing the header when there is none or more than one."""
    found = [i for i, h in enumerate(header) if h.lower() in names]
    if len(found) == 1:
        return found[0]
    have = ", ".join(repr(h) for h in header)
    if not found:
        raise ImporterError(
            f"{path}:1: no column named {one_of(names)}: name one with {flag}; the header has "
            f"{have}"
        )
    both = " and ".join(repr(header[i]) for i in found)
    raise ImporterError(
        f"{path}:1: columns {both} could both be meant: choose one with {flag}; the header "
        f"has {have}"
    )


def prepare_csv_table(
    source: Path,
    out_dir: Path,
    path_column: str | None = None,
    text_column: str | None = None,
    speaker_column: str | None = None,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, Path]:
    """Write train/dev/test.jsonl in `out_dir` from the table `source`. Returns {set: path}.

    SkippedEntries after writing when some rows could not be used."""
    config = SplitConfig(dev_fraction, test_fraction, seed)
    table = Path(source).resolve()
    if not table.is_file():
        raise ImporterError(f"{source}: no such file")
    header, rows = read_table(table)
    columns, chosen = {}, []
    for key, flag, given, names in [
        ("path", "--path-column", path_column, PATH_COLUMNS),
        ("text", "--text-column", text_column, TEXT_COLUMNS),
    ]:
        if given is not None:
            columns[key] = column_index(table, header, flag, given)
        else:
            columns[key] = column_by_name(table, header, flag, names)
            chosen.append(f"{flag} {shlex.quote(header[columns[key]])}")
    if chosen:
        print(f"{table}: chose {' '.join(chosen)} from the header", file=sys.stderr)
    if speaker_column is not None:
        columns["speaker"] = column_index(table, header, "--speaker-column", speaker_column)
    entries, problems = [], []
    seen: dict[Path, int] = {}
    for number, fields in rows:
        where = f"{table}:{number}"
        if len(fields) != len(header):
            problems.append(f"{where}: {count(len(fields), 'field')}, the header has {len(header)}")
            continue
        bad = [
            f"{b} of column {header[i]!r}" for i in columns.values() if (b := not_utf8(fields[i]))
        ]
        if bad:
            problems.append(f"{where}: not UTF-8 text ({bad[0]})")
            continue
        value = {key: fields[i].strip() for key, i in columns.items()}
        empty = [header[columns[k]] for k in columns if not value[k]]
        if empty:
            problems.append(f"{where}: empty {', '.join(repr(e) for e in empty)}")
            continue
        audio = (table.parent / value["path"]).resolve()
        if audio in seen:
            problems.append(f"{where}: {value['path']} already listed on line {seen[audio]}")
            continue
        seen[audio] = number
        if not audio.is_file():
            problems.append(f"{where}: no audio file {audio}")
            continue
        try:
            duration = audio_duration(audio)
            check_samples(audio)
        except AudioError as err:
            problems.append(f"{where}: {err}")
            continue
        text = " ".join(value["text"].split())
        entries.append(Entry(Utterance(str(audio), duration, text), value.get("speaker")))
    return write_split(entries, problems, Path(out_dir), config, table)


DATASET = Dataset(
    name="csv",
    summary="your own recordings: a CSV or TSV table of audio paths and transcripts",
    prepare=prepare_csv_table,
    options=(
        Option(
            "path_column",
            "the column of audio paths, relative to the table (default: the one column named "
            f"{one_of(PATH_COLUMNS)})",
            metavar="C",
        ),
        Option(
            "text_column",
            f"the column of transcripts (default: the one column named {one_of(TEXT_COLUMNS)})",
            metavar="C",
        ),
        Option("speaker_column", "a column naming the speaker: split by speaker", metavar="C"),
        *SPLIT_OPTIONS,
    ),
    source_help="the table: .csv, .tsv, or sniffed; a header row names the columns",
)
