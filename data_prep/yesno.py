"""Kaldi's "yesno" corpus (OpenSLR 1): the smoke test of the recipe machinery.

60 wav files, 8 kHz mono 16-bit, 6.1 min in all (4.9-7.0 s each), one male speaker saying eight
words per file, each "yes" or "no" (Hebrew "ken" / "lo", per lhotse's description; the
corpus's own README says English). The transcript is the file name: `0_1_1_0_1_0_0_1.wav` is
"no yes yes no yes no no yes". Made for the Kaldi project by an anonymous contributor; licence
CC BY 4.0. https://www.openslr.org/1/

The archive `waves_yesno.tar.gz` (4.5 MB) unpacks to `waves_yesno/` (the 60 wavs and a
README). Its sha256 is the one torchaudio's YESNO dataset checks
(torchaudio/datasets/yesno.py); the unpacked copy is also checked for exactly the 60 published
file names, each with a readable header.

Split (lhotse's recipes/yesno.py, which icefall's egs/yesno uses): of the 60 files in sorted
order, every other one from the first is the training set (30), the others the test set (30).
There is no dev set; `dev.jsonl` repeats the training set, for best-checkpoint selection and
decoder tuning (there is nothing else to hold out).

Kaldi's egs/yesno/s5 split (local/create_yesno_waves_test_train.pl: the first 30 sorted files
train, the rest test) is not used: every one of its training files begins with "no" and every
test file but one with "yes", and a recurrent model learns that as a prior (the first words of
"yes yes ..." test files came out as "es", "n" or went missing: 0%, 1.25% and 0.42% WER with
a lexicon on three seeds). One caveat of lhotse's split: `0_1_0_1_0_0_0_0.wav` holds seven
spoken words, not the eight of its name (seven bursts of speech), and it falls in the test set,
so 1 error in 240 words (0.42%) is the floor there.

    asr prepare yesno --source ../shared/data/yesno/waves_yesno --out-dir exp/yesno/data
"""

from __future__ import annotations

import re
from pathlib import Path

from asr.audio import AudioError, audio_duration
from asr.data import Utterance, write_manifest
from asr.datasets import Dataset
from asr.files import download_file, extract_archive

URL = "https://www.openslr.org/resources/1/waves_yesno.tar.gz"
SHA256 = "c3f49e0cca421f96b75b41640749167b52118f232498667ca7a5f9416aef8e73"
FOLDER_NAME = "waves_yesno"
WORDS = {"0": "no", "1": "yes"}
NAME_PATTERN = re.compile(r"[01](_[01]){7}\.wav")
# The 60 labels of the release (its file names without the underscores), in sorted order.
_LABEL_TEXT = """
00001111 00010001 00010110 00100010 00100110 00100111 00101000 00101001 00101011 00110001
00110100 00110110 00110111 00111000 00111001 00111100 00111110 01000100 01000110 01001010
01001011 01010000 01011010 01011100 01100110 01100111 01110000 01110010 01110101 01111010
01111111 10000000 10000001 10000011 10001001 10010111 10101001 10110111 10111010 10111101
11000001 11000111 11001010 11001011 11001110 11010100 11010110 11011001 11011011 11011110
11100001 11100101 11100111 11101010 11101011 11110010 11110100 11111000 11111100 11111111
"""
LABELS = _LABEL_TEXT.split()
FILE_NAMES = ["_".join(label) + ".wav" for label in LABELS]
MISLABELLED = "0_1_0_1_0_0_0_0.wav"  # seven words spoken; a test file in this split


class YesnoError(ValueError):
    """A yesno copy that is incomplete, misnamed or unreadable; names the folder and files."""


def text_of(file_name: str) -> str:
    """`0_1_1_0_1_0_0_1.wav` -> "no yes yes no yes no no yes"."""
    return " ".join(WORDS[digit] for digit in file_name.removesuffix(".wav").split("_"))


def download_yesno(root: Path, url: str = URL, sha256: str | None = SHA256) -> Path:
    """Download (resuming) and unpack the archive into `root`, check it, return `root/waves_yesno`.

    Does nothing but the check when an earlier call finished.
    """
    root = Path(root)
    archive = download_file(url, root / "waves_yesno.tar.gz", sha256=sha256)
    extract_archive(archive, root)
    source = root / FOLDER_NAME
    check_yesno(source)
    return source


def check_yesno(source: Path) -> dict[Path, float]:
    """Wav path -> duration for the 60 files of `source`, in sorted order; YesnoError if a file
    is missing, misnamed, unexpected or unreadable."""
    source = Path(source)
    if not source.is_dir():
        raise YesnoError(f"{source}: no such folder; expected the unpacked {FOLDER_NAME}/")
    present = {p.name for p in source.iterdir() if p.suffix.lower() == ".wav"}
    misnamed = sorted(n for n in present if not NAME_PATTERN.fullmatch(n))
    if misnamed:
        raise YesnoError(
            f"{source}: {_first_few(misnamed)}: not a yesno file name (8 binary digits joined "
            f"by '_', e.g. 0_1_1_0_1_0_0_1.wav)"
        )
    missing = [n for n in FILE_NAMES if n not in present]
    unexpected = sorted(present - set(FILE_NAMES))
    if missing or unexpected:
        found = f"; not in the release: {_first_few(unexpected)}" if unexpected else ""
        raise YesnoError(
            f"{source}: {len(present)} wav files, expected the 60 of {FOLDER_NAME}; "
            f"missing: {_first_few(missing) or 'none'}{found}"
        )
    durations, unreadable = {}, []
    for name in FILE_NAMES:
        path = source / name
        try:
            durations[path] = audio_duration(path)
        except AudioError as err:
            unreadable.append(f"{name} ({str(err).removeprefix(f'{path}: ')})")
    if unreadable:
        raise YesnoError(f"{source}: unreadable: {_first_few(unreadable)}")
    return durations


def _first_few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def prepare_yesno(source: Path, out_dir: Path) -> dict[str, Path]:
    """Check the copy in `source` (the `waves_yesno/` folder, or the folder holding it) and
    write train/dev/test.jsonl in `out_dir`; dev.jsonl is the training set. Returns
    {split: path}. Audio paths are absolute."""
    source = Path(source).resolve()
    if not source.joinpath(FILE_NAMES[0]).exists() and (source / FOLDER_NAME).is_dir():
        source = source / FOLDER_NAME
    utts = [Utterance(str(p), d, text_of(p.name)) for p, d in check_yesno(source).items()]
    splits = {"train": utts[::2], "dev": utts[::2], "test": utts[1::2]}  # lhotse's split
    manifests = {}
    for name, split in splits.items():
        manifests[name] = Path(out_dir) / f"{name}.jsonl"
        write_manifest(manifests[name], split)
    return manifests


DATASET = Dataset(
    name="yesno",
    summary="Kaldi yesno (OpenSLR 1): 60 files of eight yes/no words, one speaker, 8 kHz",
    prepare=prepare_yesno,
    download=download_yesno,
    source_help="the unpacked waves_yesno/ folder (or the folder holding it)",
)
