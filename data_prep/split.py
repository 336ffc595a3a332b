"""Train/dev/test splits and manifests for the importers of a user's own data.

The folder, CSV/TSV and Kaldi importers (`data_prep/folder.py`, `csv_table.py`, `kaldi.py`)
each turn their input into `Entry`s (an utterance and, where the data says, its speaker) and a
list of problems, one line each naming the file and line; `write_split` does the rest:

- split by speaker when every entry has one (a speaker's utterances all land in one set, so
  dev and test measure speakers never heard in training), by utterance otherwise;
- `--dev-fraction` / `--test-fraction` are fractions of the speakers (or utterances), rounded,
  at least one when above zero; a fraction of 0 writes no manifest for that set (and removes
  one an earlier run left in --out-dir);
- the groups are shuffled with `--seed` (after sorting, so the split does not depend on the
  order of the input), and each manifest keeps the input order;
- the good entries are written even when some were bad; the bad ones are then reported all
  together by `SkippedEntries`, a `DatasetError`, so `asr prepare` prints them and exits 1.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.data import Utterance, write_manifest
from asr.datasets import DatasetError, Manifests, Option

SPLITS = ("train", "dev", "test")


class ImporterError(DatasetError):
    """Input an importer cannot use at all (no such file, no good entry, an impossible split)."""


class SkippedEntries(ImporterError):
    """Raised after the manifests of the good entries were written: the message lists every
    skipped entry, one line each (file:line: cause)."""

    def __init__(self, message: str, problems: Sequence[str], manifests: dict[str, Path]):
        super().__init__(message)
        self.problems = list(problems)
        self.manifests = manifests


@dataclass(frozen=True)
class Entry:
    """One utterance an importer found, and who speaks it when the data says."""

    utterance: Utterance
    speaker: str | None = None


@dataclass(frozen=True)
class SplitConfig:
    """How the entries are divided into train/dev/test."""

    dev_fraction: float = 0.1  # of the speakers (or utterances) held out for dev
    test_fraction: float = 0.1  # of the speakers (or utterances) held out for test
    seed: int = 0  # shuffles the speakers (or utterances) before they are dealt out

    def __post_init__(self) -> None:
        for name in ("dev_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                flag = "--" + name.replace("_", "-")
                raise ImporterError(f"{flag} {value}: must be at least 0 and below 1")
        if self.dev_fraction + self.test_fraction >= 1:
            raise ImporterError(
                f"--dev-fraction {self.dev_fraction} + --test-fraction {self.test_fraction} "
                "leaves nothing to train on: their sum must be below 1"
            )


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, in the plural unless `n` is 1 (`plural`: an irregular one).

    >>> count(1, "speaker"), count(3, "speaker"), count(0, "entry", "entries")
    ('1 speaker', '3 speakers', '0 entries')
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def read_table_text(path: Path) -> str:
    """The text of a table file (UTF-8, a leading byte-order mark dropped), each byte that is not
    UTF-8 kept as a lone surrogate so that only the lines holding one are lost (`not_utf8`
    finds them); ImporterError naming the file when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8-sig", errors="surrogateescape")
    except OSError as err:
        raise ImporterError(f"{path}: cannot read ({err.strerror})") from None


# What errors="surrogateescape" makes of a byte that is not UTF-8: U+DC80 to U+DCFF.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def not_utf8(text: str) -> str | None:
    r"""Where the first byte that is not UTF-8 lies in `text` (from `read_table_text`), as
    "byte 0xE9 at character 7"; None when there is none.

    >>> not_utf8(b"caf\xe9".decode("utf-8", "surrogateescape")), not_utf8("café")
    ('byte 0xE9 at character 4', None)
    """
    found = _ESCAPED_BYTE.search(text)
    if found is None:
        return None
    return f"byte 0x{ord(found.group()) - 0xDC00:02X} at character {found.start() + 1}"


def fraction(text: str) -> float:
    """A `--dev-fraction` / `--test-fraction` value: a number at least 0 and below 1."""
    value = float(text)
    if not 0 <= value < 1:
        raise ValueError(f"{text}: a fraction must be at least 0 and below 1")
    return value


# The options every importer takes, after its own.
SPLIT_OPTIONS = (
    Option(
        "dev_fraction",
        "share of the speakers (or utterances) held out for dev (default 0.1; 0: none)",
        default=0.1,
        type=fraction,
        metavar="F",
    ),
    Option(
        "test_fraction",
        "share of the speakers (or utterances) held out for test (default 0.1; 0: none)",
        default=0.1,
        type=fraction,
        metavar="F",
    ),
    Option("seed", "seed of the random split (default 0)", default=0, type=int, metavar="N"),
)


def held_out_count(fraction_: float, groups: int) -> int:
    """How many of `groups` a fraction takes: rounded, but at least one when above zero.

    >>> held_out_count(0.1, 30), held_out_count(0.1, 3), held_out_count(0.0, 3)
    (3, 1, 0)
    """
    return max(1, round(fraction_ * groups)) if fraction_ > 0 else 0


def split_entries(entries: Sequence[Entry], config: SplitConfig) -> dict[str, list[Entry]]:
    """{train, dev, test: entries}; by speaker when every entry has one, else by utterance.

    ImporterError when the split would leave train empty.

    >>> es = [Entry(Utterance(f"{i}.wav", 1.0, "a"), "sp" + str(i % 4)) for i in range(8)]
    >>> parts = split_entries(es, SplitConfig(0.25, 0.25, seed=1))
    >>> [len(parts[n]) for n in ("train", "dev", "test")]
    [4, 2, 2]
    >>> {e.speaker for e in parts["dev"]} & {e.speaker for e in parts["train"]}
    set()
    """
    by_speaker = bool(entries) and all(e.speaker is not None for e in entries)
    groups: dict[str, list[int]] = {}
    for i, entry in enumerate(entries):
        groups.setdefault(entry.speaker if by_speaker else str(i), []).append(i)
    # Sorted before shuffling: the same speakers (or files and offsets) give the same split
    # whatever order the input lists them in.
    place = (lambda k: k) if by_speaker else (lambda k: _place(entries[int(k)]))
    keys = sorted(groups, key=place)
    random.Random(config.seed).shuffle(keys)
    n_test = held_out_count(config.test_fraction, len(keys))
    n_dev = held_out_count(config.dev_fraction, len(keys))
    if n_test + n_dev >= len(keys):
        unit = count(len(keys), "speaker" if by_speaker else "utterance")
        raise ImporterError(
            f"{unit}: dev takes {n_dev} and test {n_test}, leaving none to train on; "
            "lower --dev-fraction / --test-fraction (0 holds out none) or add data"
        )
    chosen = {"test": keys[:n_test], "dev": keys[n_test : n_test + n_dev]}
    chosen["train"] = keys[n_test + n_dev :]
    parts = {}
    for name in SPLITS:
        indices = sorted(i for key in chosen[name] for i in groups[key])
        parts[name] = [entries[i] for i in indices]
    return parts


def _place(entry: Entry) -> tuple[str, float]:
    """Where an utterance lies: its file and its offset in it."""
    return entry.utterance.audio_filepath, entry.utterance.offset or 0.0


def write_split(
    entries: Sequence[Entry],
    problems: Sequence[str],
    out_dir: Path,
    config: SplitConfig,
    source: Path,
    notes: Sequence[str] = (),
) -> Manifests:
    """Split the good entries and write `out_dir/{train,dev,test}.jsonl` (a set with fraction
    0 is not written, and an earlier run's file of that name removed); returns {set: path},
    with `.speakers` ({set: number of speakers}) when every entry names its speaker.

    Then, when some entries were bad, SkippedEntries listing them all (the manifests hold the
    good ones), and the `notes` (how to fix them) after them. ImporterError, writing nothing,
    when no entry is good or the split leaves train empty.
    """
    tail = [*problems, *notes] if problems else []  # notes only explain problems
    if not entries:
        raise ImporterError(_report(f"{source}: no usable utterance", tail))
    try:
        parts = split_entries(entries, config)
    except ImporterError as err:
        raise ImporterError(_report(f"{source}: {err}", tail)) from None
    manifests = Manifests()
    for name in SPLITS:
        path = Path(out_dir) / f"{name}.jsonl"
        if name != "train" and not parts[name]:
            path.unlink(missing_ok=True)  # its fraction was 0: no stale set of an earlier run
            continue
        manifests[name] = path
        write_manifest(path, [e.utterance for e in parts[name]])
    if all(e.speaker is not None for e in entries):
        manifests.speakers = {n: len({e.speaker for e in parts[n]}) for n in manifests}
    if problems:
        counts = ", ".join(f"{len(parts[n])} {n}" for n in manifests)
        summary = (
            f"{source}: {count(len(problems), 'entry', 'entries')} skipped; the manifests in "
            f"{out_dir} hold the {count(len(entries), 'good utterance')} ({counts})"
        )
        raise SkippedEntries(_report(summary, tail), problems, manifests)
    return manifests


def _report(summary: str, lines: Sequence[str]) -> str:
    """The summary line, then one line per problem."""
    return "\n".join([summary, *lines])
