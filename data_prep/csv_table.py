"""A table of the user's own recordings: `asr prepare csv --source FILE --path-column C
--text-column C --out-dir OUT`.

FILE is CSV or TSV with a header row naming its columns: a `.tsv` or `.tab` file is split at
tabs with no quoting (as Common Voice writes it: a `"` in a sentence is just a character), a
`.csv` file at commas with the usual double-quote quoting, and any other is sniffed (comma,
tab, semicolon or bar). UTF-8, an Excel byte-order mark allowed. The path column holds the
audio files, relative to FILE's folder or absolute; the text column their transcripts (kept
as written, runs of spaces made one; training normalises it). With `--speaker-column` the split
is by speaker, else by utterance (see `data_prep/split.py`). Durations come from the audio
headers, and every sample is read once (block by block) to refuse NaN or infinite ones; paths
in the manifests are absolute.

A row that cannot be used (wrong number of fields, an empty path or text, a missing or
unreadable file, a file listed twice) is one line naming FILE and its line number; the other
rows are written, and the command then exits with status 1 listing them all.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from asr.audio import AudioError, audio_duration, check_samples
from asr.data import Utterance
from asr.datasets import Dataset, Option
from data_prep.split import SPLIT_OPTIONS, Entry, ImporterError, SplitConfig, write_split

SNIFF_BYTES = 64 * 1024
DELIMITERS = ",\t;|"


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
    """The header and the (line number, fields) of every non-blank row of the table."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ImporterError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise ImporterError(f"{path}: cannot read ({err.strerror})") from None
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
    if path_column is None or text_column is None:
        raise ImporterError("csv needs --path-column and --text-column (names in the header)")
    table = Path(source).resolve()
    if not table.is_file():
        raise ImporterError(f"{source}: no such file")
    header, rows = read_table(table)
    columns = {"path": column_index(table, header, "--path-column", path_column)}
    columns["text"] = column_index(table, header, "--text-column", text_column)
    if speaker_column is not None:
        columns["speaker"] = column_index(table, header, "--speaker-column", speaker_column)
    entries, problems = [], []
    seen: dict[Path, int] = {}
    for number, fields in rows:
        where = f"{table}:{number}"
        if len(fields) != len(header):
            problems.append(f"{where}: {len(fields)} fields, the header has {len(header)}")
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
        Option("path_column", "the column of audio paths (relative to the table)", metavar="C"),
        Option("text_column", "the column of transcripts", metavar="C"),
        Option("speaker_column", "a column naming the speaker: split by speaker", metavar="C"),
        *SPLIT_OPTIONS,
    ),
    source_help="the table: .csv, .tsv, or sniffed; a header row names the columns",
)
