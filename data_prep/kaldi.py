"""A Kaldi data directory: `asr prepare kaldi --source DATA_DIR --out-dir OUT`.

Reads the files Kaldi's data preparation writes (kaldi-asr.org/doc/data_prep.html):

  wav.scp    RECORDING PATH        the audio files (required)
  text       UTTERANCE TEXT...     the transcripts (required)
  segments   UTTERANCE RECORDING START END
             utterances that are stretches of a recording, in seconds; END -1 is the end of
             the file. Each becomes a manifest line with the NeMo `offset` (START) and
             `duration` (END - START), so nothing is cut. Without segments an utterance is a
             whole recording and shares its id.
  utt2spk    UTTERANCE SPEAKER     (or spk2utt: SPEAKER UTTERANCE...): the split is then by
             speaker, else by utterance (see `data_prep/split.py`); utt2spk wins when both are
             there. Kaldi recipes without speaker information map each utterance to itself,
             which is a split by utterance.

Relative paths in wav.scp are Kaldi's: relative to the recipe folder the scripts ran in
(`s5/` of `s5/data/train`, two levels above DATA_DIR); DATA_DIR itself and the current folder
are tried next, or `--audio-root DIR` says where. Durations come from the audio headers, and a
segment must lie within its file: one ending up to `asr.audio.SEGMENT_SLACK` seconds past the
end (rounded times) is cut at the end, as Kaldi's extract-segments cuts (up to 0.5 s there).
Every sample of a recording is read once (block by block): a recording with NaN or infinite
samples anywhere is refused with the time of the first, and its utterances counted as lost.

A wav.scp entry that is a command (`sph2pipe -f wav a.sph |`) or a byte offset into an archive
(`feats.ark:1234`) is refused with the command that writes it as a real file (Kaldi's
`wav-copy RXFILENAME OUT.wav` does both). Every entry that cannot be used is one line naming
its file and line (a line that is not UTF-8 too: the byte and where it is), reported once even
where other tables name it; the others are written, and the command then exits with status 1
listing them all. Transcripts are kept as written (training normalises them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from asr.audio import SEGMENT_SLACK, AudioError, audio_duration, check_samples
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

# An "extended filename" with a byte offset into an archive: foo.ark:1234, foo.ark:1234[0:99]
_ARCHIVE_OFFSET = re.compile(r":\d+(\[[^\]]*\])?$")
CONVERT_ALL = (
    "to write every recording as a file: mkdir -p wav && while read -r id rx; do "
    'wav-copy "$rx" "wav/$id.wav"; done < wav.scp (Kaldi\'s wav-copy runs commands and reads '
    "archives), then make a new wav.scp of `ID wav/ID.wav` lines"
)


@dataclass(frozen=True)
class Line:
    """One line of a Kaldi table file: its key and the rest."""

    where: str  # "path:line" for messages
    key: str
    value: str  # the rest of the line, outer spaces stripped


@dataclass
class Table:
    """A Kaldi `KEY VALUE...` file as read."""

    lines: dict[str, Line]  # the usable lines by key, in file order
    refused: dict[str, Line]  # lines reported and not used (not UTF-8, malformed), by key
    problems: list[str]  # one per refused line, and per key given twice


def read_kaldi_table(path: Path) -> Table:
    """The lines of a Kaldi `KEY VALUE...` file. Blank lines are skipped; a line that is not
    UTF-8, or repeats an earlier key, is a problem; ImporterError when the file cannot be read."""
    table = Table({}, {}, [])
    # split at \n only: str.splitlines also splits at \x1c, \u2028 and other characters
    for number, raw in enumerate(read_table_text(path).split("\n"), start=1):
        if not raw.strip():
            continue
        key, *rest = raw.split(maxsplit=1)
        line = Line(f"{path}:{number}", key, rest[0].strip() if rest else "")
        bad_byte = not_utf8(raw)
        if bad_byte is not None:
            table.problems.append(f"{line.where}: not UTF-8 text ({bad_byte})")
            table.refused.setdefault(key, line)
        elif key in table.lines:
            first = table.lines[key].where
            table.problems.append(f"{line.where}: {key} again (first on {first})")
        else:
            table.lines[key] = line
    return table


def refusal(line: Line) -> str | None:
    """Why a wav.scp entry is not a file name we can read, with the fix; None when it is one."""
    rx = line.value
    if rx.endswith("|"):
        command = rx[:-1].strip()
        return (
            f"{line.where}: recording {line.key} is a command ({rx}), not a file: write its "
            f"output to one, e.g. `{command} > wav/{line.key}.wav` or `wav-copy '{rx}' "
            f"wav/{line.key}.wav`, and list that file in wav.scp"
        )
    if _ARCHIVE_OFFSET.search(rx):
        return (
            f"{line.where}: recording {line.key} is at a byte offset in an archive ({rx}), not "
            f"a file: write it out with Kaldi's `wav-copy {rx} wav/{line.key}.wav` and list "
            "that file in wav.scp"
        )
    if rx == "-" or rx.startswith("|"):
        return f"{line.where}: recording {line.key}: {rx!r} is not a file name"
    return None


@dataclass
class Recording:
    """A wav.scp entry resolved to a file, with its duration once read."""

    line: Line
    path: Path | None = None  # None: not usable, see `problem`
    duration: float = 0.0
    problem: str | None = None
    utterances: int = 0  # how many text lines use it


def resolve_recordings(wav_scp: dict[str, Line], roots: list[Path]) -> dict[str, Recording]:
    """Every wav.scp entry with its file (the first of `roots` a relative path exists under)
    and duration, or the problem that makes it unusable."""
    recordings = {}
    for key, line in wav_scp.items():
        rec = Recording(line)
        recordings[key] = rec
        rec.problem = refusal(line)
        if rec.problem is not None:
            continue
        if not line.value:
            rec.problem = f"{line.where}: recording {key} has no file name"
            continue
        given = Path(line.value)
        candidates = [given] if given.is_absolute() else [root / given for root in roots]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            tried = " or ".join(str(c.parent) for c in candidates)
            rec.problem = f"{line.where}: no audio file {line.value} (looked in {tried})"
            continue
        try:
            rec.duration = audio_duration(found)
            check_samples(found)
        except AudioError as err:
            rec.problem = f"{line.where}: {err}"
            continue
        rec.path = found.resolve()
    return recordings


def speakers_of(data: Path) -> tuple[dict[str, str] | None, set[str], list[str]]:
    """{utterance: speaker} from utt2spk (or spk2utt when only it is there), None when neither
    is there; the utterances of the lines refused (reported: their missing speaker is not
    reported again); and the problems (an utterance given two speakers, a malformed line)."""
    if (data / "utt2spk").is_file():
        table = read_kaldi_table(data / "utt2spk")
        speakers = {}
        for line in table.lines.values():
            if len(line.value.split()) == 1:
                speakers[line.key] = line.value
            else:
                table.problems.append(
                    f"{line.where}: expected UTTERANCE SPEAKER, got {line.value!r}"
                )
                table.refused[line.key] = line
        return speakers, set(table.refused), table.problems
    if not (data / "spk2utt").is_file():
        return None, set(), []
    table = read_kaldi_table(data / "spk2utt")
    speakers = {}
    for line in table.lines.values():
        for utt in line.value.split():
            if utt in speakers and speakers[utt] != line.key:
                table.problems.append(
                    f"{line.where}: utterance {utt} also said by speaker {speakers[utt]}"
                )
                continue
            speakers[utt] = line.key
    refused = {utt for line in table.refused.values() for utt in line.value.split()}
    return speakers, refused, table.problems


@dataclass(frozen=True)
class Segment:
    """Where an utterance lies in its recording."""

    recording: str
    start: float
    end: float  # -1: the end of the file


def read_segments(path: Path) -> tuple[dict[str, tuple[Line, Segment]], Table]:
    """{utterance: (its line, its segment)} of a segments file, and the file as read: its
    refused lines (not UTF-8, malformed, bad times) reported among its problems."""
    table = read_kaldi_table(path)
    segments = {}
    for key, line in table.lines.items():
        fields = line.value.split()
        try:
            if len(fields) != 3:
                raise ValueError
            recording, start, end = fields[0], float(fields[1]), float(fields[2])
        except ValueError:
            table.problems.append(
                f"{line.where}: expected UTTERANCE RECORDING START END, got {key} {line.value!r}"
            )
            table.refused[key] = line
            continue
        if start < 0 or (end != -1 and end <= start):
            table.problems.append(f"{line.where}: utterance {key}: bad times {start} to {end}")
            table.refused[key] = line
            continue
        segments[key] = (line, Segment(recording, start, end))
    return segments, table


def segment_within(line: Line, seg: Segment, duration: float) -> tuple[float, str | None]:
    """The segment's end (-1 and a small overshoot made the file's end), or the problem of a
    segment outside its file."""
    end = duration if seg.end == -1 else seg.end
    if seg.start >= duration or end > duration + SEGMENT_SLACK:
        return end, (
            f"{line.where}: utterance {line.key}: {seg.start}-{end} s lies outside recording "
            f"{seg.recording} ({duration:.3f} s)"
        )
    return min(end, duration), None


@dataclass
class KaldiDir:
    """The tables of a Kaldi data directory, read and cross-checked. Each fault is reported
    once: a line refused in one table (and already reported) makes no second report where
    another table looks its key up."""

    texts: dict[str, Line]
    recordings: dict[str, Recording]
    segments: dict[str, tuple[Line, Segment]] | None  # None: no segments file
    speakers: dict[str, str] | None  # None: neither utt2spk nor spk2utt
    problems: list[str]
    # the keys of refused lines, by table: "wav.scp" and "text" by their keys, "segments" and
    # "speakers" by utterance
    refused: dict[str, set[str]]
    named: set[str]  # the recordings some text (or segments) line names, refused ones too

    @classmethod
    def read(cls, data: Path, roots: list[Path]) -> KaldiDir:
        for name in ("wav.scp", "text"):
            if not (data / name).is_file():
                raise ImporterError(f"{data}: no {name}; expected a Kaldi data directory")
        wav_scp = read_kaldi_table(data / "wav.scp")
        texts = read_kaldi_table(data / "text")
        problems = wav_scp.problems + texts.problems
        speakers, silent, more = speakers_of(data)
        problems += more
        refused = {
            "wav.scp": set(wav_scp.refused),
            "text": set(texts.refused),
            "speakers": silent,
            "segments": set(),
        }
        segments = None
        named = set(texts.lines) | set(texts.refused)
        if (data / "segments").is_file():
            segments, table = read_segments(data / "segments")
            problems += table.problems
            refused["segments"] = set(table.refused)
            named = {seg.recording for _, seg in segments.values()}
            named |= {line.value.split()[0] for line in table.refused.values() if line.value}
        recordings = resolve_recordings(wav_scp.lines, roots)
        return cls(texts.lines, recordings, segments, speakers, problems, refused, named)

    def entry(self, utt: str, line: Line) -> Entry | str | None:
        """The utterance of a `text` line, or the problem with it; None when the problem is
        already reported (its recording is unusable, a line it needs was refused)."""
        text = " ".join(line.value.split())
        if not text:
            return f"{line.where}: utterance {utt} has an empty transcript"
        seg_line, seg = None, None
        if self.segments is not None:
            if utt not in self.segments:
                if utt in self.refused["segments"]:
                    return None
                return f"{line.where}: utterance {utt} has no line in segments"
            seg_line, seg = self.segments[utt]
        rec_key = utt if seg is None else seg.recording
        rec = self.recordings.get(rec_key)
        if rec is None:
            if rec_key in self.refused["wav.scp"]:
                return None
            where = (seg_line or line).where
            return f"{where}: utterance {utt}: recording {rec_key} is not in wav.scp"
        rec.utterances += 1
        if rec.path is None:
            return None
        speaker = None
        if self.speakers is not None:
            speaker = self.speakers.get(utt)
            if speaker is None:
                if utt in self.refused["speakers"]:
                    return None
                return f"{line.where}: utterance {utt} has no speaker in utt2spk/spk2utt"
        if seg is None:
            return Entry(Utterance(str(rec.path), rec.duration, text), speaker)
        end, problem = segment_within(seg_line, seg, rec.duration)
        if problem is not None:
            return problem
        return Entry(Utterance(str(rec.path), end - seg.start, text, offset=seg.start), speaker)

    def leftovers(self) -> list[str]:
        """Unusable recordings, recordings no line names, segments without text."""
        problems = []
        for key, rec in self.recordings.items():
            if rec.problem is not None:
                lost = f" [{count(rec.utterances, 'utterance')} lost]" if rec.utterances else ""
                problems.append(rec.problem + lost)
            elif key not in self.named:
                where = "text" if self.segments is None else "segments"
                problems.append(f"{rec.line.where}: recording {key} has no utterance in {where}")
        for utt, (line, _) in (self.segments or {}).items():
            if utt not in self.texts and utt not in self.refused["text"]:
                problems.append(f"{line.where}: utterance {utt} has no line in text")
        return problems


def prepare_kaldi(
    source: Path,
    out_dir: Path,
    audio_root: str | None = None,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, Path]:
    """Write train/dev/test.jsonl in `out_dir` from the Kaldi data dir `source`. Returns
    {set: path}. SkippedEntries after writing when some entries could not be used."""
    config = SplitConfig(dev_fraction, test_fraction, seed)
    data = Path(source).resolve()
    if not data.is_dir():
        raise ImporterError(f"{source}: not a folder; expected a Kaldi data directory")
    roots = [Path(audio_root).resolve()] if audio_root else [data.parent.parent, data, Path.cwd()]
    kaldi = KaldiDir.read(data, list(dict.fromkeys(roots)))
    entries, problems = [], kaldi.problems
    for utt, line in kaldi.texts.items():
        found = kaldi.entry(utt, line)
        if isinstance(found, Entry):
            entries.append(found)
        elif found is not None:
            problems.append(found)
    problems += kaldi.leftovers()
    refused = any(refusal(rec.line) for rec in kaldi.recordings.values())
    return write_split(
        entries, problems, Path(out_dir), config, data, [CONVERT_ALL] if refused else []
    )


DATASET = Dataset(
    name="kaldi",
    summary="your own recordings in a Kaldi data dir: wav.scp, text, [segments], [utt2spk]",
    prepare=prepare_kaldi,
    options=(
        Option(
            "audio_root",
            "the folder relative wav.scp paths start from (default: the recipe folder two "
            "levels above DATA_DIR, then DATA_DIR, then the current folder)",
            metavar="DIR",
        ),
        *SPLIT_OPTIONS,
    ),
    source_help="the Kaldi data directory (wav.scp, text, optional segments, utt2spk)",
)
