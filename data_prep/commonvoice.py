"""Mozilla Common Voice: crowd-sourced read speech in over 100 languages, any one of them.

Volunteers read short sentences (public-domain text) into their browsers; other volunteers
vote on the clips. Licence CC0 1.0. A release (`cv-corpus-<version>-<date>`) has one archive
per language, downloaded by hand after accepting the terms (with an e-mail address) at
https://commonvoice.mozilla.org/datasets (since 2025 also at
https://datacollective.mozillafoundation.org): nothing here downloads it. It unpacks to

    cv-corpus-<version>-<date>/<lang>/{train,dev,test,validated,...}.tsv
    cv-corpus-<version>-<date>/<lang>/clips/common_voice_<lang>_<number>.mp3

(mp3, 48 kHz mono at recent releases, read through libsndfile and resampled to the model's
feature rate at training time). `--source` takes the `<lang>` folder, whose name is the
language (a Common Voice locale such as de, tr, zh-CN, sv-SE), or the `cv-corpus-*` folder
with `--language xx`.

The TSVs have a header row naming their columns, which changed between releases: `client_id
path sentence up_votes down_votes age gender accent(s) locale segment`; a `variant` column
after `accents` since about release 13; `sentence_id` and `sentence_domain` around `sentence`
since about release 17. They are read by name: `client_id` (the speaker), `path` (the clip's
file in clips/, `.mp3` added when absent as in early releases) and `sentence`. Fields are split
at tabs without quoting (a `"` in a sentence is an ordinary character, as lhotse also reads
them).

Splits: the release's own train.tsv, dev.tsv and test.tsv (Mozilla's CorporaCreator puts each
speaker in one of them only, and each sentence is read once in them). With `--train-set
validated` the training set is validated.tsv less every clip of dev.tsv and test.tsv and every
clip of their speakers, so dev and test stay unheard: several times more data for most
languages (train.tsv keeps only a few clips per sentence), at the price of a different
training set from published results, which use train.tsv.

Text: each sentence is lower-cased with its language's rules, then `normalize_text` (asr/text.py:
NFKC, punctuation and symbols to spaces; letters, digits and combining marks of every script
kept), so training and scoring, which call `normalize_text` without a language, leave it as it
is. The tokenizer's characters then come from the training text (`asr train`), accents and
non-Latin scripts included. Per language:
  tr, az, crh, gag  Turkish, Azerbaijani, Crimean Tatar, Gagauz (Latin alphabets with a dotted
                    and a dotless i): "I" -> "ı" and "İ" -> "i" before lower-casing; Python's
                    default gives "i" and "i" + combining dot above (ISTANBUL -> istanbul
                    instead of ıstanbul, İzmir -> i̇zmir).
  de                the default is right: "ß" is kept and capital "ẞ" becomes "ß" (str.lower,
                    not str.casefold, which would write "ss").
  el                the default is right: a final capital sigma becomes "ς", others "σ".
  others            Python's str.lower (Unicode's default case mapping); scripts without case
                    (Devanagari, Arabic, Chinese, ...) are unchanged. Lithuanian's special rule
                    (a dot kept above an accented i) concerns only accented capitals, which
                    ordinary text does not have.
Languages written without spaces between words (zh, ja, th, ...) make each sentence one "word",
so their WER says little: read the CER.

Checks: every row of the TSVs read must have as many fields as the header, a clip path and a
sentence, and no clip may be listed twice in a file; each problem is one line naming the TSV
and line. Every listed clip must exist and have a readable header (a copy with clips missing is
reported as incomplete, with the first few missing); nothing is written unless all pass. A row
whose sentence has no letter or digit left after normalisation is skipped, and named on stderr.

Durations come from each clip's header (`asr.audio.audio_duration`, through libsndfile),
without decoding the audio: exact for an mp3 with a Xing/Info/VBRI frame. Without that frame
libsndfile guesses a variable-bit-rate file's length from its first frame's bit rate, and
reads no further than the guess. So the first 8 KB of every mp3 are read: a variable-bit-rate
file without such a frame (frame bit rates that differ) is refused by name, with how to
re-encode it; a constant-bit-rate file without one is taken (its length follows from the file
size).

lhotse's `prepare_commonvoice` is not used: it needs the `variant` column (absent from earlier
releases), leaves out clips missing from clips/ and rows with a field too few without an error,
and names no file or line for a row it cannot read; the TSV reading it would save is the few
lines of `read_tsv`.

    asr prepare commonvoice --source cv-corpus-21.0-2025-03-14/tr --out-dir exp/commonvoice-tr/data
"""

from __future__ import annotations

import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from asr.audio import AudioError, audio_duration
from asr.data import Utterance, write_manifest
from asr.datasets import Dataset, DatasetError, Option
from asr.text import normalize_text

SPLITS = ("train", "dev", "test")
REQUIRED_COLUMNS = ("client_id", "path", "sentence")
# Latin alphabets with a dotted (İ i) and a dotless (I ı) letter i.
DOTLESS_I_LANGUAGES = frozenset({"tr", "az", "crh", "gag"})
_DOTLESS_I = str.maketrans({"I": "ı", "İ": "i"})
MAX_LISTED = 20  # problems listed one by one in an error message; the rest are counted


class CommonVoiceError(DatasetError):
    """A Common Voice copy that cannot be prepared; the message names files and lines."""


@dataclass(frozen=True)
class Clip:
    """One row of a Common Voice TSV."""

    path: str  # file name in clips/, as in the TSV (".mp3" added when it has no suffix)
    sentence: str  # as read, before any normalisation
    speaker: str  # client_id
    where: str  # "tsv:line", for messages


def base_language(locale: str) -> str:
    """The language subtag of a Common Voice locale: "zh-CN" -> "zh", "tr" -> "tr"."""
    return locale.split("-")[0].lower()


def lower_for_language(text: str, language: str) -> str:
    """Lower-case `text` (NFKC first) with the rules of `language` (a locale such as "tr").

    >>> lower_for_language("IŞIK İzmir'de", "tr")
    "ışık izmir'de"
    >>> lower_for_language("IŞIK İzmir'de", "de") == "işik i\\u0307zmir'de"  # Python's rule
    True
    >>> lower_for_language("GROẞE Straße", "de")
    'große straße'
    """
    text = unicodedata.normalize("NFKC", text)
    if base_language(language) in DOTLESS_I_LANGUAGES:
        text = text.translate(_DOTLESS_I)
    return text.lower()


def prepare_text(sentence: str, language: str) -> str:
    """A sentence as the manifests hold it: lowered for `language`, then `normalize_text`.

    >>> prepare_text("„Wie heißt DIE STRAẞE?“", "de")
    'wie heißt die straße'
    >>> prepare_text("Işıklı İstanbul’a gidiyoruz.", "tr")
    "ışıklı istanbul'a gidiyoruz"
    """
    return normalize_text(lower_for_language(sentence, language))


def read_tsv(path: Path) -> list[Clip]:
    """The rows of one Common Voice TSV; CommonVoiceError listing every malformed row."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").split("\n")
    except (OSError, UnicodeDecodeError) as err:
        raise CommonVoiceError(f"{path}: cannot read ({err})") from None
    header = lines[0].rstrip("\r").split("\t")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise CommonVoiceError(
            f"{path}:1: header has no column {', '.join(missing)} (found: "
            f"{' '.join(header)[:120]}); expected a Common Voice TSV"
        )
    index = {name: header.index(name) for name in REQUIRED_COLUMNS}
    clips, problems, seen = [], [], {}
    for number, line in enumerate(lines[1:], start=2):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        where = f"{path}:{number}"
        fields = line.split("\t")
        if len(fields) != len(header):
            problems.append(
                f"{where}: {len(fields)} tab-separated fields, the header has {len(header)}"
            )
            continue
        name, sentence = fields[index["path"]].strip(), fields[index["sentence"]].strip()
        if not name or not sentence:
            problems.append(f"{where}: empty {'path' if not name else 'sentence'}")
            continue
        if not Path(name).suffix:
            name += ".mp3"  # early releases list clips without the suffix
        if name in seen:
            problems.append(f"{where}: clip {name} listed twice (first at line {seen[name]})")
            continue
        seen[name] = number
        clips.append(Clip(name, sentence, fields[index["client_id"]].strip(), where))
    if problems:
        raise CommonVoiceError(_listing(f"{len(problems)} malformed row(s) in {path}", problems))
    return clips


def _listing(title: str, problems: list[str]) -> str:
    shown = problems[:MAX_LISTED]
    more = [f"... and {len(problems) - MAX_LISTED} more"] if len(problems) > MAX_LISTED else []
    return "\n".join([f"{title}:", *shown, *more])


def language_folder(source: Path, language: str | None) -> tuple[Path, str]:
    """(the `<lang>` folder holding the TSVs, its locale) from `--source` and `--language`."""
    source = Path(source)
    if (source / "train.tsv").is_file() or (source / "clips").is_dir():
        return source, language or source.name
    if language and (source / language).is_dir():
        return source / language, language
    found = sorted(p.name for p in source.iterdir() if (p / "train.tsv").is_file())
    if language:
        raise CommonVoiceError(
            f"{source}: no {language}/ folder with train.tsv in it "
            f"(languages found: {', '.join(found) or 'none'})"
        )
    hint = f"; add --language with one of: {', '.join(found)}" if found else ""
    raise CommonVoiceError(
        f"{source}: no train.tsv or clips/ here; expected a Common Voice language folder "
        f"(cv-corpus-*/<lang>/){hint}"
    )


# MPEG audio Layer III frame headers: bit rates (kbit/s) by index, for MPEG-1 and MPEG-2/2.5,
# and sample rates by version bits (3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5) and index.
_MP3_KBPS = {
    1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MP3_HEAD_BYTES = 8192  # read this much of each mp3: its first frames
_MP3_TAGS = (b"Xing", b"Info", b"VBRI")  # a first frame that counts the file's frames


def mp3_without_length(head: bytes) -> bool:
    """True for the start of a variable-bit-rate mp3 whose first frame is no Xing/Info/VBRI
    header: libsndfile then guesses its length from the first frame's bit rate, and reads no
    further than the guess. A constant bit rate (the first frames' rates all equal) is fine.

    >>> frame = bytes([0xFF, 0xFB, 0x94, 0xC4]) + bytes(380)  # MPEG-1 Layer III, 128 kbit/s
    >>> mp3_without_length(frame * 3), mp3_without_length(frame[:20] + b"Xing" + frame[24:])
    (False, False)
    >>> mp3_without_length(frame + bytes([0xFF, 0xFB, 0x44, 0xC4]) + bytes(188))  # 64 kbit/s
    True
    """
    start = 0
    if head[:3] == b"ID3" and len(head) >= 10:  # ID3v2 tag: 10 bytes + a syncsafe size
        start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
    rates = set()
    while start + 4 <= len(head) and head[start] == 0xFF and head[start + 1] & 0xE0 == 0xE0:
        version, layer = (head[start + 1] >> 3) & 3, (head[start + 1] >> 1) & 3
        kbps_index, rate_index = head[start + 2] >> 4, (head[start + 2] >> 2) & 3
        if layer != 1 or version == 1 or kbps_index in (0, 15) or rate_index == 3:
            return False  # not Layer III, or free format: leave it to libsndfile
        if not rates and any(tag in head[start : start + 200] for tag in _MP3_TAGS):
            return False
        kbps = _MP3_KBPS[1 if version == 3 else 2][kbps_index]
        rates.add(kbps)
        per_kbps = 144_000 if version == 3 else 72_000
        start += per_kbps * kbps // _MP3_RATES[version][rate_index] + (head[start + 2] >> 1 & 1)
    return len(rates) > 1


def clip_durations(clips_dir: Path, clips: list[Clip]) -> list[float]:
    """Header durations of `clips` (in order); CommonVoiceError naming every missing or
    unreadable clip, and every variable-bit-rate mp3 without a length header, with its TSV
    row."""

    def duration(clip: Clip) -> float | str:
        path = clips_dir / clip.path
        if not path.is_file():
            return f"{clip.where}: no clip {path}"
        try:
            seconds = audio_duration(path)
            if path.suffix.lower() == ".mp3":
                with open(path, "rb") as f:
                    head = f.read(_MP3_HEAD_BYTES)
                if mp3_without_length(head):
                    return (
                        f"{clip.where}: {path}: variable-bit-rate mp3 without a Xing/Info "
                        f"header: libsndfile would read only the {seconds:.2f} s it guesses; "
                        "re-encode it (ffmpeg -i IN.mp3 OUT.mp3 writes the header)"
                    )
            return seconds
        except (AudioError, OSError) as err:
            return f"{clip.where}: {err}"

    results = [duration(clip) for clip in clips]
    problems = [r for r in results if isinstance(r, str)]
    if problems:
        missing = sum(": no clip " in p for p in problems)
        title = f"{len(problems)} of {len(clips)} clip(s) missing or unreadable in {clips_dir}"
        if missing:
            title += f" ({missing} missing: an incomplete copy?)"
        raise CommonVoiceError(_listing(title, problems))
    return results  # type: ignore[return-value]  # no str left


def validated_training_clips(folder: Path, held_out: list[Clip]) -> list[Clip]:
    """validated.tsv less the held-out clips and every clip of their speakers."""
    speakers = {c.speaker for c in held_out}
    names = {c.path for c in held_out}
    clips = read_tsv(folder / "validated.tsv")
    return [c for c in clips if c.path not in names and c.speaker not in speakers]


def prepare_commonvoice(
    source: Path,
    out_dir: Path,
    language: str | None = None,
    train_set: str = "train",
) -> dict[str, Path]:
    """Check the copy in `source`; write train/dev/test.jsonl in `out_dir`. Returns {split:
    path}. Audio paths are absolute; see the module's docstring for the text and checks."""
    folder, locale = language_folder(Path(source).resolve(), language)
    parts = {split: read_tsv(_tsv(folder, split)) for split in SPLITS}
    if train_set == "validated":
        parts["train"] = validated_training_clips(folder, parts["dev"] + parts["test"])
    elif train_set != "train":
        raise CommonVoiceError(f"--train-set {train_set!r}: expected train or validated")
    texts, skipped = {}, []
    for clips in parts.values():
        for clip in clips:
            texts[clip.where] = prepare_text(clip.sentence, locale)
            if not texts[clip.where]:
                skipped.append(f"{clip.where}: no letter or digit in {clip.sentence!r}")
    every_clip = [c for clips in parts.values() for c in clips]
    durations = dict(zip(every_clip, clip_durations(folder / "clips", every_clip), strict=True))
    outputs = {}
    for split, clips in parts.items():
        utts = [
            Utterance(str(folder / "clips" / c.path), durations[c], texts[c.where])
            for c in clips
            if texts[c.where]
        ]
        if not utts:
            raise CommonVoiceError(f"{_tsv(folder, split)}: no usable rows")
        outputs[split] = Path(out_dir) / f"{split}.jsonl"
        write_manifest(outputs[split], utts)
    if skipped:
        print(
            _listing(f"skipped {len(skipped)} row(s) with no text left", skipped), file=sys.stderr
        )
    return outputs


def _tsv(folder: Path, split: str) -> Path:
    path = folder / f"{split}.tsv"
    if not path.is_file():
        raise CommonVoiceError(f"{folder}: no {split}.tsv; expected a Common Voice language folder")
    return path


DATASET = Dataset(
    name="commonvoice",
    summary="Mozilla Common Voice, any language: read sentences, many speakers (download by hand)",
    prepare=prepare_commonvoice,
    download=None,
    options=(
        Option(
            "language",
            "the locale (de, tr, zh-CN, ...) when --source is the cv-corpus-* folder; by "
            "default the name of the language folder. Sets the lower-casing rules",
            metavar="LOCALE",
        ),
        Option(
            "train_set",
            "train: the release's train.tsv; validated: validated.tsv less the dev and test "
            "clips and speakers (more data)",
            default="train",
            choices=("train", "validated"),
        ),
    ),
    source_help=(
        "a Common Voice language folder, cv-corpus-*/<lang>/ with the TSVs and clips/ (or "
        "cv-corpus-*/ with --language); download it by hand from "
        "https://commonvoice.mozilla.org/datasets"
    ),
)
