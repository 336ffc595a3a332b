"""A folder of the user's own recordings: `asr prepare folder --source DIR --out-dir OUT`.

The audio files are found recursively (the suffixes `asr transcribe` reads, any case:
`asr.audio.AUDIO_SUFFIXES`: .wav, .flac, .ogg, .mp3, .opus, ... through libsndfile; .m4a,
.mp4, .mov, .webm, .mkv, ... through PyAV, the `formats` extra). Their text comes either from

- a sidecar: `talks/day1/a.wav` is said by `talks/day1/a.txt` (UTF-8; its words on one or
  more lines, joined by single spaces), or
- one transcript file (`--transcripts FILE`), a line `NAME<TAB>TEXT` per recording: NAME is
  the file's path under DIR, with or without its suffix (`day1/a.wav`, `day1/a`), or just its
  name (`a.wav`, `a`) when only one file in the tree has it. Blank lines are skipped.

The text is kept as written (line breaks and runs of spaces become one space); training
normalises it. With `--speaker-folders` the first folder level under DIR names the speaker
(`DIR/alice/*.wav`, `DIR/bob/session2/*.wav`) and the split is by speaker; otherwise by
utterance (see `data_prep/split.py`). Durations come from the audio headers, and every
sample is read once (block by block) to refuse NaN or infinite ones; paths in the manifests
are absolute.

Nothing is lost silently: an audio file without text, a sidecar or line without audio, a
malformed line, an unreadable file, a name listed twice: each is one line naming the file (and
line), the others are written, and the command then exits with status 1 listing them all.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

from asr.audio import AUDIO_SUFFIXES, MAX_SECONDS, AudioError, audio_duration, check_samples
from asr.data import Utterance
from asr.datasets import Dataset, Option
from data_prep.split import SPLIT_OPTIONS, Entry, ImporterError, SplitConfig, write_split


def find_audio(folder: Path) -> list[Path]:
    """Every audio file under `folder`, recursively, in sorted order."""
    return sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
    )


def read_text(path: Path) -> str:
    """A transcript file's words on one line; ImporterError naming the file when unreadable."""
    try:
        return " ".join(path.read_text(encoding="utf-8-sig").split())
    except UnicodeDecodeError:
        raise ImporterError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise ImporterError(f"{path}: cannot read ({err.strerror})") from None


def sidecar_texts(folder: Path, audio: list[Path]) -> tuple[dict[Path, str], list[str]]:
    """{audio file: the text of its sidecar .txt} and the problems (no sidecar, an empty or
    unreadable one, a .txt with no audio, two audio files sharing one .txt)."""
    claims: dict[Path, list[Path]] = {}
    for path in audio:
        claims.setdefault(path.with_suffix(".txt"), []).append(path)
    texts, problems = {}, []
    for sidecar, paths in claims.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            problems.append(f"{sidecar}: the sidecar of several audio files ({names}): rename one")
            continue
        if not sidecar.is_file():
            problems.append(f"{paths[0]}: no transcript {sidecar.name} beside it")
            continue
        try:
            text = read_text(sidecar)
        except ImporterError as err:
            problems.append(str(err))
            continue
        if not text:
            problems.append(f"{sidecar}: empty transcript")
            continue
        texts[paths[0]] = text
    for txt in sorted(folder.rglob("*.txt")):
        if txt not in claims:
            problems.append(_unclaimed(txt))
    return texts, problems


def _unclaimed(txt: Path) -> str:
    """The problem with a sidecar no audio file claims: none of the same name, or one whose
    suffix is not an audio format read."""
    others = sorted(
        p for p in txt.parent.glob(f"{glob.escape(txt.stem)}.*") if p != txt and p.is_file()
    )
    if not others:
        return f"{txt}: transcript with no audio file of the same name"
    names = ", ".join(p.name for p in others)
    return (
        f"{txt}: transcript beside {names}, whose format is not supported as audio (the "
        f"suffixes read: {', '.join(sorted(AUDIO_SUFFIXES))})"
    )


def _lookup_names(folder: Path, audio: Iterable[Path]) -> dict[str, list[Path]]:
    """Every name a transcript line may give a file by -> the files it names."""
    names: dict[str, list[Path]] = {}
    for path in audio:
        relative = path.relative_to(folder)
        spellings = {
            relative.as_posix(),
            relative.with_suffix("").as_posix(),
            path.name,
            path.stem,
        }
        for name in spellings:
            names.setdefault(name, []).append(path)
    return names


def transcript_file_texts(
    folder: Path, transcripts: Path, audio: list[Path]
) -> tuple[dict[Path, str], list[str]]:
    """{audio file: text} from the `NAME<TAB>TEXT` lines of `transcripts`, and the problems
    (malformed or empty lines, names with no file or several, files named twice or never)."""
    try:
        lines = transcripts.read_text(encoding="utf-8-sig").split("\n")  # not at \u2028
    except UnicodeDecodeError:
        raise ImporterError(f"{transcripts}: not UTF-8 text") from None
    except OSError as err:
        raise ImporterError(f"{transcripts}: cannot read ({err.strerror})") from None
    names = _lookup_names(folder, audio)
    texts: dict[Path, str] = {}
    first_line: dict[Path, int] = {}
    problems = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{transcripts}:{number}"
        name, tab, text = line.partition("\t")
        name, text = name.strip(), " ".join(text.split())
        if not tab:
            problems.append(f"{where}: no tab; expected NAME<TAB>TEXT, got {line.strip()!r}")
            continue
        if not name or not text:
            problems.append(f"{where}: empty {'name' if not name else 'text'} in {line!r}")
            continue
        paths = names.get(name.removeprefix("./"), [])
        if not paths:
            problems.append(f"{where}: no audio file {name!r} under {folder}")
            continue
        if len(paths) > 1:
            found = ", ".join(str(p.relative_to(folder)) for p in paths[:3])
            problems.append(f"{where}: {name!r} names several files ({found}); give its path")
            continue
        if paths[0] in texts:
            problems.append(f"{where}: {name!r} already given on line {first_line[paths[0]]}")
            continue
        texts[paths[0]] = text
        first_line[paths[0]] = number
    for path in audio:
        if path not in texts:
            problems.append(f"{path}: audio file with no line in {transcripts}")
    return texts, problems


def speaker_of(folder: Path, path: Path) -> str | None:
    """The first folder level of `path` under `folder`, or None for a file directly in it."""
    parts = path.relative_to(folder).parts
    return parts[0] if len(parts) > 1 else None


def prepare_folder(
    source: Path,
    out_dir: Path,
    transcripts: str | None = None,
    speaker_folders: bool = False,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, Path]:
    """Write train/dev/test.jsonl in `out_dir` from the audio under `source` and its sidecars
    (or the `transcripts` file: its path as given, else under `source`). Returns {set: path}.

    SkippedEntries after writing when some files or lines could not be used."""
    config = SplitConfig(dev_fraction, test_fraction, seed)
    folder = Path(source).resolve()
    if not folder.is_dir():
        raise ImporterError(f"{source}: not a folder")
    audio = find_audio(folder)
    if not audio:
        suffixes = ", ".join(sorted(AUDIO_SUFFIXES))
        raise ImporterError(f"{folder}: no audio files ({suffixes}) in it or its subfolders")
    if transcripts is None:
        texts, problems = sidecar_texts(folder, audio)
    else:
        table = Path(transcripts)
        if not table.is_file() and (folder / table).is_file():
            table = folder / table
        if not table.is_file():
            raise ImporterError(f"--transcripts {transcripts}: no such file (nor under {folder})")
        texts, problems = transcript_file_texts(folder, table.resolve(), audio)
    entries = []
    for path in audio:
        if path not in texts:
            continue  # already reported
        speaker = speaker_of(folder, path) if speaker_folders else None
        if speaker_folders and speaker is None:
            problems.append(f"{path}: not in a speaker folder (--speaker-folders)")
            continue
        try:
            duration = audio_duration(path)
        except AudioError as err:
            problems.append(str(err))
            continue
        if duration > MAX_SECONDS:  # a whole recording: training would refuse it
            problems.append(
                f"{path}: {duration:.1f} s, over the {MAX_SECONDS:g} s an utterance may last "
                "(cut it into utterances)"
            )
            continue
        try:
            check_samples(path)  # after the length check: a recording of hours is not read
        except AudioError as err:
            problems.append(str(err))
            continue
        entries.append(Entry(Utterance(str(path), duration, texts[path]), speaker))
    return write_split(entries, problems, Path(out_dir), config, folder)


DATASET = Dataset(
    name="folder",
    summary="your own recordings: a folder of audio files with .txt sidecars or one "
    "NAME<TAB>TEXT file",
    prepare=prepare_folder,
    options=(
        Option(
            "transcripts",
            "one file of NAME<TAB>TEXT lines instead of sidecars (NAME: the path under the "
            "folder, with or without its suffix, or a unique file name)",
            metavar="FILE",
        ),
        Option(
            "speaker_folders",
            "the first folder level names the speaker: split by speaker",
            type=bool,
        ),
        *SPLIT_OPTIONS,
    ),
    source_help="the folder of recordings (searched recursively)",
)
