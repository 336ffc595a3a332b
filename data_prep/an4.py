"""CMU AN4 (the Census / alphanumeric database), 16 kHz close-talking microphone.

948 training utterances (74 speakers, 42.4 min) and 130 test utterances (10 other speakers,
6.0 min) of people spelling names, saying numbers, dates and a few commands: 101 words.
Recorded at Carnegie Mellon University around 1991 (Acero, "Acoustical and environmental
robustness in automatic speech recognition", 1993). Licence: CMU's BSD-style licence, free for
any purpose; its LICENSE file must travel with copies. Official release:
http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz (64 MB, NIST SPHERE), which
unpacks to `an4/wav/{an4_clstk,an4test_clstk}/<speaker>/<id>.sph` and `an4/etc/`. CMU
publishes no checksum, so a copy is checked by its counts and by reading every file's header.

`--source` takes an unpacked copy in that layout or in the layout of CMU Sphinx's own
repository of AN4 (cmusphinx/an4: the same tree with RIFF `.wav` files).

Text comes from `etc/an4_{train,test}.transcription`, one `TEXT (utterance-id)` a line (the
training lines wrapped in `<s> ... </s>`), lower-cased; the stray test transcriptions with
another id format (`etc/an4_test.transcription2*`) are not read. Splits:
  test   the official 130-utterance test set
  dev    every utterance of the 7 training speakers in DEV_SPEAKERS (91 utterances): every
         tenth speaker in sorted order, starting from the sixth, so 2 of the 21 women and 5 of
         the 53 men; never heard in training, as the test speakers are not
  train  the other 67 training speakers (857 utterances)
`prepare_an4` also writes `words.txt`, the 101 words of the corpus's pronunciation dictionary
`etc/an4.dic` (as Sphinx decodes AN4): two test words, november and thirteen, never occur in
the training text, so a lexicon of the training text alone cannot output them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from asr.audio import AudioError, audio_duration
from asr.data import Utterance, write_manifest
from asr.datasets import Dataset
from asr.files import atomic_write_text, download_file, extract_archive

URL = "http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz"
ARCHIVE_NAME = "an4_sphere.tar.gz"
FOLDER_NAME = "an4"
PARTS = {"train": "an4_clstk", "test": "an4test_clstk"}  # transcription name -> wav folder
EXPECTED = {"train": 948, "test": 130}
DEV_SPEAKERS = ("fjam", "fplp", "mcen", "meht", "mjhp", "mmtm", "msjr")
AUDIO_SUFFIXES = (".wav", ".sph")
# "<s> TEXT </s> (an251-fash-b)" or "TEXT (an406-fcaw-b)"
_LINE = re.compile(r"^(?:<s>\s+)?(?P<text>.*?)(?:\s+</s>)?\s+\((?P<id>[^()\s]+)\)$")
_ID = re.compile(r"^[a-z0-9]+-(?P<speaker>[a-z0-9]+)-[a-z]$")


class AN4Error(ValueError):
    """An AN4 copy that is incomplete or inconsistent; the message names files and lines."""


@dataclass(frozen=True)
class TranscriptLine:
    utt_id: str  # e.g. an251-fash-b
    speaker: str  # e.g. fash
    text: str  # lower-cased words
    where: str  # "path:line" for messages


def download_an4(root: Path, url: str = URL) -> Path:
    """Download (resuming) and unpack the official release into `root`; returns `root/an4`.

    An earlier finished call makes this a check only."""
    root = Path(root)
    archive = download_file(url, root / ARCHIVE_NAME)
    extract_archive(archive, root)
    source = root / FOLDER_NAME
    for part in PARTS:
        find_audio(source, part)  # counts and readable headers, in place of a checksum
    return source


def read_transcription(path: Path) -> list[TranscriptLine]:
    """The lines of one `an4_*.transcription` file; AN4Error naming every malformed line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise AN4Error(f"{path}: cannot read transcription ({err})") from None
    entries, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        match = _LINE.match(line.strip())
        id_match = _ID.match(match["id"]) if match else None
        if not match or not id_match or not match["text"].strip():
            problems.append(f"{where}: malformed line {line.strip()!r} (expected 'TEXT (id)')")
            continue
        text = " ".join(match["text"].lower().split())
        entries.append(TranscriptLine(match["id"], id_match["speaker"], text, where))
    if problems:
        raise AN4Error("\n".join(problems))
    return entries


def _audio_path(folder: Path, entry: TranscriptLine) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        path = folder / entry.speaker / f"{entry.utt_id}{suffix}"
        if path.is_file():
            return path
    return None


def find_audio(source: Path, part: str) -> list[tuple[TranscriptLine, Path, float]]:
    """(line, audio file, duration) for every transcript line of `part` (train or test).

    AN4Error listing every line without audio, audio without a line and unreadable file, and
    naming what is missing when the count is not the official one."""
    source = Path(source)
    transcription = source / "etc" / f"an4_{part}.transcription"
    folder = source / "wav" / PARTS[part]
    if not folder.is_dir():
        raise AN4Error(
            f"{source}: no wav/{PARTS[part]}/ folder; expected an unpacked AN4 copy "
            f"({FOLDER_NAME}/ of {ARCHIVE_NAME}, or cmusphinx/an4)"
        )
    entries = read_transcription(transcription)
    found, problems = [], []
    for entry in entries:
        path = _audio_path(folder, entry)
        if path is None:
            problems.append(f"{entry.where}: no audio file {entry.speaker}/{entry.utt_id}.wav|.sph")
            continue
        try:
            found.append((entry, path, audio_duration(path)))
        except AudioError as err:
            problems.append(f"{entry.where}: {err}")
    listed = {e.utt_id for e in entries}
    for path in sorted(folder.glob("*/*")):
        if path.suffix in AUDIO_SUFFIXES and path.stem not in listed:
            problems.append(f"{path}: audio file with no line in {transcription}")
    if problems:
        raise AN4Error(f"{len(problems)} problem(s) in {source} ({part}):\n" + "\n".join(problems))
    if len(found) != EXPECTED[part]:
        raise AN4Error(
            f"{transcription}: {len(found)} {part} utterances, the official release has "
            f"{EXPECTED[part]}: an incomplete or different copy"
        )
    return found


def dictionary_words(source: Path) -> list[str]:
    """The words of `etc/an4.dic`, lower-cased, alternative pronunciations (`WORD(2)`) merged."""
    path = Path(source) / "etc" / "an4.dic"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise AN4Error(f"{path}: cannot read the dictionary ({err})") from None
    words: dict[str, None] = {}
    for line in lines:
        if line.strip():
            words[re.sub(r"\(\d+\)$", "", line.split()[0]).lower()] = None
    return list(words)


def prepare_an4(source: Path, out_dir: Path) -> dict[str, Path]:
    """Check the copy in `source`; write train/dev/test.jsonl and words.txt in `out_dir`.

    Audio paths are absolute. Returns {name: path}."""
    source, out_dir = Path(source).resolve(), Path(out_dir)
    splits: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for part in PARTS:
        for entry, path, duration in find_audio(source, part):
            split = "dev" if part == "train" and entry.speaker in DEV_SPEAKERS else part
            splits[split].append(Utterance(str(path), duration, entry.text))
    words = dictionary_words(source)
    outputs = {}
    for name, utts in splits.items():
        outputs[name] = out_dir / f"{name}.jsonl"
        write_manifest(outputs[name], utts)
    outputs["words"] = out_dir / "words.txt"
    atomic_write_text(outputs["words"], "".join(w + "\n" for w in words))
    return outputs


DATASET = Dataset(
    name="an4",
    summary="CMU AN4: 948 + 130 utterances of spelt names, numbers and dates, 16 kHz, 101 words",
    prepare=prepare_an4,
    download=download_an4,
    source_help="an unpacked AN4 copy: an4/ of an4_sphere.tar.gz (.sph) or cmusphinx/an4 (.wav)",
)
