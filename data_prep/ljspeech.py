"""LJ Speech 1.1: one speaker (Linda Johnson) reading passages of seven non-fiction books.

13,100 clips, 1 to 10 s each, about 24 hours in all; 22,050 Hz mono 16-bit wav. The texts were
published between 1884 and 1964 and the audio recorded for LibriVox in 2016-17: public domain.
Made by Keith Ito for speech synthesis, used here for single-speaker recognition.
https://keithito.com/LJ-Speech-Dataset/

The archive https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2 (about 2.6 GB) unpacks
to `LJSpeech-1.1/metadata.csv`, `LJSpeech-1.1/README` and `LJSpeech-1.1/wavs/LJ001-0001.wav`
... Its sha256 is the one torchaudio's LJSPEECH dataset checks (torchaudio/datasets/ljspeech.py).
metadata.csv has no header and one clip a line, three fields separated by `|` and no quoting
(a `"` is an ordinary character): the id (`LJ<chapter>-<number>`, e.g. LJ001-0001), the text as
read, and the text with numbers, ordinals and money spelt out ("1884" -> "eighteen eighty-four").
The manifests hold the third field through `normalize_text`, since the clips say the words.

Preparation is lhotse's `prepare_ljspeech` (durations from the wav headers), wrapped: lhotse
skips a line whose wav is missing with only a warning in the log, and a malformed line fails
with Python's "not enough values to unpack" and no file or line, so metadata.csv is checked
first here: every line must have three fields, an id of the form LJnnn-nnnn listed once and a
text, every id its wav and every wav its line, every wav a readable header (lhotse's message for
one that is not runs over many lines, one per audio backend it tried), each problem one line
naming metadata.csv and the line; then the count must be the release's 13,100.
`--allow-partial` prepares what a partial copy holds instead (lines without a wav are left out,
named on stderr); its split then differs from the one below.

Split (fixed; there is no official one): of the clips in sorted id order, numbered from 0, those
whose index is 0 modulo 50 are the dev set (262 clips), 25 modulo 50 the test set (262), the
rest training (12,576). So dev and test each take one clip in fifty from every chapter of every
book, spread over the whole corpus: the books' vocabularies differ (LJ001 is a history of
printing, most chapters the Warren Commission report), and blocks cut from the end would test
one book only. About 29 minutes each: enough to tell WERs apart by half a point.

    asr prepare ljspeech --download-dir data/ljspeech --out-dir exp/ljspeech/data
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from asr.audio import AudioError, audio_duration
from asr.data import Utterance, write_manifest
from asr.datasets import Dataset, DatasetError, Option
from asr.files import download_file, extract_archive
from asr.text import normalize_text
from data_prep.lhotse_manifests import require_lhotse, utterances_from_lhotse

URL = "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2"
SHA256 = "be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5"  # torchaudio's
ARCHIVE_NAME = "LJSpeech-1.1.tar.bz2"
FOLDER_NAME = "LJSpeech-1.1"
EXPECTED_CLIPS = 13_100
SPLIT_PERIOD = 50  # one clip in 50 for dev, one for test
DEV_INDEX, TEST_INDEX = 0, 25  # their places within each run of 50
MAX_LISTED = 20
_ID = re.compile(r"LJ\d{3}-\d{4}")


class LJSpeechError(DatasetError):
    """An LJ Speech copy that cannot be prepared; the message names files and lines."""


@dataclass(frozen=True)
class MetadataLine:
    clip_id: str  # e.g. LJ001-0001
    text: str  # the third field: numbers and money spelt out
    where: str  # "metadata.csv:line", for messages


def download_ljspeech(root: Path, url: str = URL, sha256: str | None = SHA256) -> Path:
    """Download (resuming) and unpack the archive into `root`; returns `root/LJSpeech-1.1`.

    An earlier finished call makes this a check only. The count is checked by prepare."""
    root = Path(root)
    archive = download_file(url, root / ARCHIVE_NAME, sha256=sha256)
    extract_archive(archive, root)
    source = root / FOLDER_NAME
    if not (source / "metadata.csv").is_file() or not (source / "wavs").is_dir():
        raise LJSpeechError(f"{archive}: unpacked, but {source} has no metadata.csv and wavs/")
    return source


def read_metadata(path: Path) -> list[MetadataLine]:
    """The lines of metadata.csv; LJSpeechError listing every malformed one."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise LJSpeechError(f"{path}: cannot read ({err})") from None
    entries, problems, seen = [], [], {}
    for number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split("|")
        if len(fields) != 3:
            problems.append(
                f"{where}: {len(fields)} '|'-separated fields, expected 3 (id|text|normalised text)"
            )
            continue
        clip_id, text = fields[0].strip(), normalize_text(fields[2])
        if not _ID.fullmatch(clip_id):
            problems.append(f"{where}: id {clip_id!r} is not of the form LJnnn-nnnn")
        elif clip_id in seen:
            problems.append(f"{where}: id {clip_id} listed twice (first at line {seen[clip_id]})")
        elif not text:
            problems.append(f"{where}: no words in the normalised text {fields[2]!r}")
        else:
            seen[clip_id] = number
            entries.append(MetadataLine(clip_id, text, where))
    if problems:
        raise LJSpeechError(_listing(f"{len(problems)} malformed line(s) in {path}", problems))
    return entries


def _listing(title: str, problems: list[str]) -> str:
    shown = problems[:MAX_LISTED]
    more = [f"... and {len(problems) - MAX_LISTED} more"] if len(problems) > MAX_LISTED else []
    return "\n".join([f"{title}:", *shown, *more])


def check_copy(source: Path, allow_partial: bool = False) -> list[MetadataLine]:
    """The metadata lines whose wav is present, after the checks of the module docstring."""
    if not (source / "metadata.csv").is_file():
        raise LJSpeechError(
            f"{source}: no metadata.csv; expected the unpacked {FOLDER_NAME}/ folder"
        )
    entries = read_metadata(source / "metadata.csv")
    wavs = {p.stem for p in (source / "wavs").glob("*.wav")}
    listed = {e.clip_id for e in entries}
    missing = [
        f"{e.where}: no wav {source / 'wavs' / e.clip_id}.wav"
        for e in entries
        if e.clip_id not in wavs
    ]
    extra = [
        f"{source / 'wavs' / name}.wav: no line in metadata.csv" for name in sorted(wavs - listed)
    ]
    if extra or (missing and not allow_partial):
        problems = missing + extra
        raise LJSpeechError(_listing(f"{len(problems)} problem(s) in {source}", problems))
    present = [e for e in entries if e.clip_id in wavs]
    unreadable = []
    for entry in present:
        try:
            audio_duration(source / "wavs" / f"{entry.clip_id}.wav")
        except AudioError as err:
            unreadable.append(f"{entry.where}: {err}")
    if unreadable:
        raise LJSpeechError(
            _listing(f"{len(unreadable)} unreadable wav(s) in {source}", unreadable)
        )
    if len(present) != EXPECTED_CLIPS:
        message = (
            f"{source}: {len(present)} clips with a wav, the release has {EXPECTED_CLIPS:,}: "
            "a partial copy"
        )
        if not allow_partial:
            raise LJSpeechError(message + " (--allow-partial prepares it anyway)")
        print(f"{message}; prepared as it is (--allow-partial), the split differs", file=sys.stderr)
        if missing:
            print(_listing(f"left out {len(missing)} line(s)", missing), file=sys.stderr)
    return present


def split_of(index: int) -> str:
    """The set of the clip at `index` in sorted id order.

    >>> [split_of(i) for i in (0, 1, 25, 50, 75, 13_099)]
    ['dev', 'train', 'test', 'dev', 'test', 'train']
    """
    place = index % SPLIT_PERIOD
    return "dev" if place == DEV_INDEX else "test" if place == TEST_INDEX else "train"


def prepare_ljspeech(source: Path, out_dir: Path, allow_partial: bool = False) -> dict[str, Path]:
    """Check the copy in `source` (`LJSpeech-1.1/` or the folder holding it), prepare it with
    lhotse and write train/dev/test.jsonl in `out_dir`. Returns {split: path}; audio paths
    are absolute."""
    source = Path(source).resolve()
    if not (source / "metadata.csv").is_file() and (source / FOLDER_NAME).is_dir():
        source = source / FOLDER_NAME
    entries = check_copy(source, allow_partial)
    require_lhotse("ljspeech")
    from lhotse.recipes import prepare_ljspeech as lhotse_prepare_ljspeech

    try:
        prepared = lhotse_prepare_ljspeech(source)
    except Exception as err:  # lhotse's own checks and audio readers raise many kinds
        detail = " ".join(str(err).split())[:300]  # its messages run over several lines
        raise LJSpeechError(
            f"{source}: lhotse's prepare_ljspeech failed ({type(err).__name__}: {detail})"
        ) from None
    text = {e.clip_id: e.text for e in entries}
    supervisions = [
        dataclasses.replace(sup, text=text[sup.id])
        for sup in prepared["supervisions"]
        if sup.id in text
    ]
    converted = utterances_from_lhotse(prepared["recordings"], supervisions)
    utts = dict(zip((s.id for s in supervisions), converted, strict=True))
    if len(utts) != len(entries):
        raise LJSpeechError(
            f"{source}: lhotse prepared {len(utts)} clips of the {len(entries)} checked"
        )
    splits: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for index, clip_id in enumerate(sorted(utts)):
        splits[split_of(index)].append(utts[clip_id])
    if not splits["test"]:
        raise LJSpeechError(f"{source}: {len(utts)} clips, too few for a test set (26 at least)")
    outputs = {}
    for name, split in splits.items():
        outputs[name] = Path(out_dir) / f"{name}.jsonl"
        write_manifest(outputs[name], split)
    return outputs


DATASET = Dataset(
    name="ljspeech",
    summary="LJ Speech 1.1: 13,100 clips (24 h) of one speaker reading non-fiction, 22.05 kHz",
    prepare=prepare_ljspeech,
    download=download_ljspeech,
    options=(
        Option(
            "allow_partial",
            "prepare a copy with fewer than the 13,100 clips (its split then differs)",
            type=bool,
        ),
    ),
    source_help=f"the unpacked {FOLDER_NAME}/ (metadata.csv, wavs/) or the folder holding it",
)
