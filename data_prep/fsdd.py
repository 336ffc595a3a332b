"""Free Spoken Digit Dataset (FSDD), release v1.0.10.

Spoken English digits, one per recording: 3000 wav files, 6 speakers x 10 digits x 50 takes,
8 kHz mono 16-bit, about 21 MB unpacked. By Jakobovski et al., licence CC BY-SA 4.0.
https://github.com/Jakobovski/free-spoken-digit-dataset

The release archive (GitHub's generated tarball, so no published checksum) unpacks to
`free-spoken-digit-dataset-1.0.10/` with `recordings/{digit}_{speaker}_{take}.wav` and
`metadata.py`. In place of a checksum, the unpacked copy is checked for all 3000 recordings,
each with a readable header.

Splits (`prepare_fsdd(split=...)`):
  standard      test = takes 0-4 of every speaker (300), dev = takes 5-9 (300), train = the rest
                (2400). Takes 0-4 as test is the dataset's own convention.
  speaker:NAME  test = all 500 recordings of NAME, dev = takes 0-4 of the other five speakers
                (250), train = their takes 5-49 (2250): a speaker never heard in training.

    asr prepare fsdd --download-dir data/fsdd --out-dir data/fsdd/manifests
    asr prepare fsdd --source free-spoken-digit-dataset-1.0.10 --out-dir exp/fsdd/data
"""

from __future__ import annotations

from pathlib import Path

from asr.audio import AudioError, audio_duration
from asr.data import Utterance, write_manifest
from asr.datasets import Dataset, Option
from asr.files import download_file, extract_archive

VERSION = "1.0.10"
URL = "https://github.com/Jakobovski/free-spoken-digit-dataset"
ARCHIVE_URL = f"{URL}/archive/refs/tags/v{VERSION}.tar.gz"
FOLDER_NAME = f"free-spoken-digit-dataset-{VERSION}"
SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
# The words of the digits 0-9: FSDD's transcripts, and the vocabulary of synth's digit strings.
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TAKES = 50
NUM_RECORDINGS = len(SPEAKERS) * len(DIGIT_WORDS) * TAKES  # 3000
SPLITS = ("train", "dev", "test")


class FsddError(ValueError):
    """An FSDD copy that is incomplete or unreadable; the message names the folder and files."""


def recording_name(digit: int, speaker: str, take: int) -> str:
    return f"{digit}_{speaker}_{take}.wav"


def download_fsdd(root: Path, url: str = ARCHIVE_URL) -> Path:
    """Download (resuming) and unpack the release into `root`, check it, return the unpacked
    folder. Does nothing but the check when an earlier call finished."""
    root = Path(root)
    archive = download_file(url, root / f"v{VERSION}.tar.gz")
    extract_archive(archive, root)
    source = root / FOLDER_NAME
    check_fsdd(source)
    return source


def check_fsdd(source: Path) -> list[Path]:
    """The 3000 recording paths of an unpacked copy; FsddError if any is missing or unreadable."""
    return list(_durations(Path(source)))


def _durations(source: Path) -> dict[Path, float]:
    """Recording path -> duration in seconds, for every expected recording, in a fixed order."""
    folder = source / "recordings"
    if not folder.is_dir():
        raise FsddError(
            f"{source}: no recordings/ folder; expected the unpacked FSDD release ({FOLDER_NAME}/)"
        )
    paths = [
        folder / recording_name(digit, speaker, take)
        for speaker in SPEAKERS
        for digit in range(len(DIGIT_WORDS))
        for take in range(TAKES)
    ]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise FsddError(
            f"{folder}: {len(missing)} of {NUM_RECORDINGS} recordings missing "
            f"({_first_few(missing)})"
        )
    durations, unreadable = {}, []
    for path in paths:
        try:
            durations[path] = audio_duration(path)
        except AudioError as err:
            unreadable.append(f"{path.name} ({str(err).removeprefix(f'{path}: ')})")
    if unreadable:
        raise FsddError(
            f"{folder}: {len(unreadable)} of {NUM_RECORDINGS} recordings unreadable: "
            f"{_first_few(unreadable)}"
        )
    return durations


def _first_few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def split_of(speaker: str, take: int, held_out: str | None) -> str:
    """Which split a recording goes to: held_out=None is the standard split."""
    if held_out is None:
        return "test" if take < 5 else "dev" if take < 10 else "train"
    if speaker == held_out:
        return "test"
    return "dev" if take < 5 else "train"


def parse_split(split: str) -> str | None:
    """'standard' -> None; 'speaker:NAME' -> NAME; ValueError naming the choices otherwise."""
    if split == "standard":
        return None
    kind, _, name = split.partition(":")
    if kind != "speaker":
        raise ValueError(f"unknown FSDD split {split!r}; choose standard or speaker:NAME")
    if name not in SPEAKERS:
        raise ValueError(
            f"unknown FSDD speaker {name!r} in split {split!r}; choose one of {', '.join(SPEAKERS)}"
        )
    return name


def prepare_fsdd(source: Path, out_dir: Path, split: str = "standard") -> dict[str, Path]:
    """Check the copy in `source` and write train/dev/test.jsonl manifests in `out_dir`.

    Text is the digit as a word ("seven"); audio paths are absolute. Returns {split: path}.
    """
    held_out = parse_split(split)  # before the slower check, so a typo fails at once
    source, out_dir = Path(source).resolve(), Path(out_dir)
    utts: dict[str, list[Utterance]] = {name: [] for name in SPLITS}
    for path, duration in _durations(source).items():
        digit, speaker, take = path.stem.split("_")
        utt = Utterance(str(path), duration, DIGIT_WORDS[int(digit)])
        utts[split_of(speaker, int(take), held_out)].append(utt)
    manifests = {}
    for name in SPLITS:
        manifests[name] = out_dir / f"{name}.jsonl"
        write_manifest(manifests[name], utts[name])
    return manifests


DATASET = Dataset(
    name="fsdd",
    summary="Free Spoken Digit Dataset v1.0.10: 3000 isolated digits, 6 speakers, 8 kHz",
    prepare=prepare_fsdd,
    download=download_fsdd,
    options=(
        Option(
            "split",
            "standard (takes 0-4 test) or speaker:NAME (NAME held out); default standard",
            default="standard",
        ),
    ),
    source_help=f"the unpacked release, {FOLDER_NAME}/",
)
