"""TIMIT (LDC93S1): read American English, 630 speakers of 8 dialect regions, 16 kHz, for
phone recognition.

Each speaker read 10 sentences: 2 dialect sentences (SA1, SA2, the same for everyone), 5
phonetically compact ones (SX) and 3 phonetically diverse ones (SI), each with time-aligned
phone (.PHN), word (.WRD) and sentence (.TXT) transcriptions made by hand. Licensed by the
Linguistic Data Consortium (https://catalog.ldc.upenn.edu/LDC93S1): it cannot be downloaded
here, so `asr prepare timit` takes only `--source`, a copy the user holds:

    asr prepare timit --source /data/TIMIT --out-dir exp/timit/data [--phones 39|48|61]

`--source` is the folder that holds TRAIN/ and TEST/ (or a folder up to two levels above it,
such as the LDC disc's `timit/TIMIT/` or the `data/` folder of some repackaged copies). Inside,
`TRAIN/DR1/FCJF0/SI1027.WAV` with `.PHN`, `.TXT` and `.WRD` beside it. Names are matched
without regard to letter case (some copies are all lower-case: `train/dr1/fcjf0/si1027.wav`).
The `.WAV` files are NIST SPHERE, read by libsndfile; copies that also carry converted RIFF
files named `SI1027.WAV.wav` are accepted, and the original `.WAV` is used when both exist
(the `.WAV.wav` alone when the original is absent).

The standard split (Lee & Hon 1989; Halberstadt 1998; Kaldi's egs/timit), SA sentences dropped
because every speaker reads them and they would favour those two sentences:
  train  the 462 speakers of TRAIN/, 8 SI/SX sentences each: 3696 utterances
  dev    the 50 TEST/ speakers of DEV_SPEAKERS: 400 utterances
  test   the core test set, the 24 TEST/ speakers of CORE_TEST_SPEAKERS (2 men and 1 woman of
         each dialect region): 192 utterances
The other 94 TEST/ speakers are not used. Counts are checked: a partial copy stops with a
message naming what is missing, unless `--allow-partial` is given (a sample of the corpus).

Manifest text is the utterance's phones from its `.PHN` file, space-separated, in the phone set
`--phones` chooses; train it with `data.units: phone` and the toolkit's WER is the phone error
rate (PER). Sets (Kaldi's conf/phones.60-48-39.map, the folding of Lee & Hon 1989):
  61  TIMIT's own symbols, q included (as Graves et al. 2013 trained); two are respelled so
      that the toolkit's text normaliser, which turns punctuation into spaces, keeps them
      whole: h# -> sil, ax-h -> axh
  48  the 48 training phones of Lee & Hon (closures bcl dcl gcl -> vcl, kcl pcl tcl -> cl;
      h# pau -> sil; ix, ax, el, en, epi, zh, ao kept), q removed
  39  the 39 scoring classes (vcl cl epi sil -> sil, ix -> ih, ax -> ah, el -> l, en -> n,
      zh -> sh, ao -> aa, ...), q removed
The default is 39: the model is then trained and scored on the classes PER is reported in, so
`asr evaluate` gives the standard PER with nothing else to do. With 61 or 48 the dev and test
manifests keep the training set (dev selects the best checkpoint in the model's own units) and
PER must be scored after folding both hypothesis and reference to 39 with `fold_phones`
(recipes/timit/score_folded.py does). Folding maps phone by phone and merges nothing
(`dcl d` becomes `sil d`), as Kaldi's local/timit_norm_trans.pl does.

Why not lhotse's `lhotse.recipes.timit.prepare_timit` (lhotse 1.x; its speaker lists and phone
maps agree with the ones here, tests/test_timit.py compares them): it keeps the SA sentences
(the lines that would drop them are commented out), so its split is 4620 / 500 / 240
utterances, not the standard 3696 / 400 / 192; it reads only `<dir>/data/TRAIN/*/*/*.WAV`
(one repackaged layout, upper-case names); in its 48 and 39 sets q becomes an empty phone
label instead of being removed; its supervision text is the sentence's words (the phones sit in
an alignment); and it checks no counts.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from asr.audio import AudioError, audio_duration
from asr.data import Utterance, write_manifest
from asr.datasets import Dataset, Option
from asr.files import atomic_write_text

# Kaldi egs/timit/s5/conf/phones.60-48-39.map: TIMIT symbol -> (48-set phone, 39-set class);
# q (the glottal stop) maps to nothing in both.
PHONE_MAP: dict[str, tuple[str, str] | None] = {
    "aa": ("aa", "aa"), "ae": ("ae", "ae"), "ah": ("ah", "ah"), "ao": ("ao", "aa"),
    "aw": ("aw", "aw"), "ax": ("ax", "ah"), "ax-h": ("ax", "ah"), "axr": ("er", "er"),
    "ay": ("ay", "ay"), "b": ("b", "b"), "bcl": ("vcl", "sil"), "ch": ("ch", "ch"),
    "d": ("d", "d"), "dcl": ("vcl", "sil"), "dh": ("dh", "dh"), "dx": ("dx", "dx"),
    "eh": ("eh", "eh"), "el": ("el", "l"), "em": ("m", "m"), "en": ("en", "n"),
    "eng": ("ng", "ng"), "epi": ("epi", "sil"), "er": ("er", "er"), "ey": ("ey", "ey"),
    "f": ("f", "f"), "g": ("g", "g"), "gcl": ("vcl", "sil"), "h#": ("sil", "sil"),
    "hh": ("hh", "hh"), "hv": ("hh", "hh"), "ih": ("ih", "ih"), "ix": ("ix", "ih"),
    "iy": ("iy", "iy"), "jh": ("jh", "jh"), "k": ("k", "k"), "kcl": ("cl", "sil"),
    "l": ("l", "l"), "m": ("m", "m"), "n": ("n", "n"), "ng": ("ng", "ng"), "nx": ("n", "n"),
    "ow": ("ow", "ow"), "oy": ("oy", "oy"), "p": ("p", "p"), "pau": ("sil", "sil"),
    "pcl": ("cl", "sil"), "q": None, "r": ("r", "r"), "s": ("s", "s"), "sh": ("sh", "sh"),
    "t": ("t", "t"), "tcl": ("cl", "sil"), "th": ("th", "th"), "uh": ("uh", "uh"),
    "uw": ("uw", "uw"), "ux": ("uw", "uw"), "v": ("v", "v"), "w": ("w", "w"), "y": ("y", "y"),
    "z": ("z", "z"), "zh": ("zh", "sh"),
}  # fmt: skip
# The two TIMIT symbols the text normaliser would split or cut, as the 61-phone set spells them.
RESPELLED = {"h#": "sil", "ax-h": "axh"}
PHONE_SETS = (61, 48, 39)
DEFAULT_PHONES = 39

# The core test set as the TIMIT documentation defines it: 2 men and 1 woman of each dialect
# region of TEST/. These 24 names are the ones of lhotse's recipes/timit.py (get_speakers; the
# tests compare them) and of other public TIMIT recipes, grouped by region as they list them.
CORE_TEST_SPEAKERS: dict[str, tuple[str, ...]] = {
    "dr1": ("mdab0", "mwbt0", "felc0"), "dr2": ("mtas1", "mwew0", "fpas0"),
    "dr3": ("mjmp0", "mlnt0", "fpkt0"), "dr4": ("mlll0", "mtls0", "fjlm0"),
    "dr5": ("mbpm0", "mklt0", "fnlp0"), "dr6": ("mcmj0", "mjdh0", "fmgd0"),
    "dr7": ("mgrt0", "mnjm0", "fdhc0"), "dr8": ("mjln0", "mpam0", "fmld0"),
}  # fmt: skip
# The 50-speaker development set, in the order of Kaldi's egs/timit/s5/conf/dev_spk.list.
_DEV_SPEAKER_TEXT = """
faks0 fdac1 fjem0 mgwt0 mjar0 mmdb1 mmdm2 mpdf0 fcmh0 fkms0 mbdg0 mbwm0 mcsh0 fadg0 fdms0
fedw0 mgjf0 mglb0 mrtk0 mtaa0 mtdt0 mthc0 mwjg0 fnmr0 frew0 fsem0 mbns0 mmjr0 mdls0 mdlf0
mdvc0 mers0 fmah0 fdrw0 mrcs0 mrjm4 fcal1 mmwh0 fjsj0 majc0 mjsw0 mreb0 fgjd0 fjmg0 mroa0
mteb0 mjfc0 mrjr0 fmml0 mrws1
"""
DEV_SPEAKERS = tuple(_DEV_SPEAKER_TEXT.split())
SENTENCES_PER_SPEAKER = 8  # 5 SX + 3 SI; the 2 SA sentences are dropped
EXPECTED_SPEAKERS = {"train": 462, "dev": len(DEV_SPEAKERS), "test": 24}
EXPECTED = {split: n * SENTENCES_PER_SPEAKER for split, n in EXPECTED_SPEAKERS.items()}
SAMPLE_RATE = 16000
_SENTENCE = re.compile(r"^(sa|si|sx)\d+$")  # sentence ids, lower-cased: sa1, si1027, sx37


class TimitError(ValueError):
    """A TIMIT copy that is incomplete or inconsistent; the message names files and lines."""


@dataclass(frozen=True)
class TimitUtterance:
    part: str  # train or test: the folder it was found in
    dialect: str  # dr1 ... dr8
    speaker: str  # fcjf0 (lower-case)
    sentence: str  # si1027 (lower-case)
    audio: Path
    phn: Path | None  # None when the copy lacks it (a problem unless the sentence is dropped)


def _phone_table(phones: int) -> dict[str, str]:
    """Every spelling the manifests of any set use -> its phone in the `phones` set.

    Sets nest (61 -> 48 -> 39), so a phone of a larger set folds the same way whichever set it
    came from; q has no entry (it is removed)."""
    table: dict[str, str] = {}
    for timit, mapped in PHONE_MAP.items():
        if mapped is None:
            continue
        target = {61: RESPELLED.get(timit, timit), 48: mapped[0], 39: mapped[1]}[phones]
        for spelling in (timit, RESPELLED.get(timit, timit), *mapped[: PHONE_SETS.index(phones)]):
            table[spelling] = target
    if phones == 61:
        table["q"] = "q"
    return table


def phone_inventory(phones: int) -> list[str]:
    """The phones of a set in the spelling the manifests use, sorted.

    >>> len(phone_inventory(61)), len(phone_inventory(48)), len(phone_inventory(39))
    (61, 48, 39)
    """
    _check_set(phones)
    return sorted(set(_phone_table(phones).values()))


def _check_set(phones: int) -> None:
    if phones not in PHONE_SETS:
        raise TimitError(f"unknown phone set {phones} (expected one of 61, 48, 39)")


def fold_phones(text: str, phones: int = 39) -> str:
    """Space-separated phones of any set (61 as TIMIT or as respelled here, 48, 39) folded to
    the `phones` set; q is removed. For scoring a 61- or 48-phone model on the 39 classes:
    fold the hypothesis and the reference alike.

    >>> fold_phones("h# dh ix kcl k ae tcl t q ax-h zh")
    'sil dh ih sil k ae sil t ah sh'
    >>> fold_phones("sil dh ix cl k ae vcl", 48)
    'sil dh ix cl k ae vcl'
    """
    _check_set(phones)
    table = _phone_table(phones)
    out = []
    for phone in text.split():
        if phone == "q" and phones != 61:
            continue
        if phone not in table:
            raise TimitError(f"{phone!r} is not a TIMIT phone or cannot fold to {phones} phones")
        out.append(table[phone])
    return " ".join(out)


def read_phn(path: Path) -> list[str]:
    """The TIMIT symbols of a `.PHN` file (lines `START END PHONE`, sample offsets).

    TimitError naming the file and line of a malformed line or an unknown phone."""
    try:
        lines = Path(path).read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TimitError(f"{path}: cannot read phone transcription ({err})") from None
    phones = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit():
            raise TimitError(
                f"{path}:{number}: malformed line {line.strip()!r} (expected 'START END PHONE')"
            )
        if int(fields[0]) > int(fields[1]):
            raise TimitError(f"{path}:{number}: phone ends before it starts ({line.strip()!r})")
        if fields[2] not in PHONE_MAP:
            raise TimitError(f"{path}:{number}: unknown TIMIT phone {fields[2]!r}")
        phones.append(fields[2])
    if not phones:
        raise TimitError(f"{path}: no phones")
    return phones


def corpus_root(source: Path) -> Path:
    """The folder holding TRAIN/ and TEST/ (any letter case): `source` or a folder at most two
    levels below it."""
    source = Path(source)
    candidates = [source]
    for _ in range(3):
        for folder in candidates:
            if {"train", "test"} <= {d.name.lower() for d in _subfolders(folder)}:
                return folder
        candidates = [sub for folder in candidates for sub in _subfolders(folder)]
    raise TimitError(
        f"{source}: no TRAIN/ and TEST/ folders in it or the two levels below; expected a "
        "licensed TIMIT copy (LDC93S1), the folder holding TRAIN/ and TEST/"
    )


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


def _child(folder: Path, name: str) -> Path:
    """The subfolder of `folder` called `name` in any letter case."""
    return next(d for d in _subfolders(folder) if d.name.lower() == name)


def find_utterances(root: Path, problems: list[str]) -> list[TimitUtterance]:
    """Every sentence of TRAIN/ and TEST/ with its audio and `.PHN` file; what is wrong (a
    `.PHN` without audio, a misnamed file) is appended to `problems`."""
    found = []
    for part in ("train", "test"):
        for dialect in _subfolders(_child(root, part)):
            if not re.fullmatch(r"dr[1-8]", dialect.name.lower()):
                problems.append(f"{dialect}: not a dialect-region folder (DR1 ... DR8)")
                continue
            for speaker in _subfolders(dialect):
                found.extend(_speaker_utterances(part, dialect, speaker, problems))
    return found


def _speaker_utterances(
    part: str, dialect: Path, speaker: Path, problems: list[str]
) -> list[TimitUtterance]:
    files: dict[str, dict[str, Path]] = defaultdict(dict)  # sentence -> kind -> path
    for path in sorted(speaker.iterdir()):
        name = path.name.lower()
        for kind in (".wav.wav", ".wav", ".phn"):  # .wav.wav first: it also ends in .wav
            if name.endswith(kind):
                files[name[: -len(kind)]][kind] = path
                break
    utts = []
    for sentence, kinds in sorted(files.items()):
        audio = kinds.get(".wav", kinds.get(".wav.wav"))
        if not _SENTENCE.match(sentence):
            problems.append(f"{next(iter(kinds.values()))}: not a TIMIT sentence name")
        elif audio is None:
            problems.append(f"{kinds['.phn']}: no audio file beside it ({sentence}.WAV)")
        else:
            utts.append(
                TimitUtterance(
                    part, dialect.name.lower(), speaker.name.lower(), sentence, audio,
                    kinds.get(".phn"),
                )
            )  # fmt: skip
    return utts


def split_of(utt: TimitUtterance) -> str | None:
    """train, dev or test (the core test set); None for SA sentences and unused speakers."""
    if utt.sentence.startswith("sa"):
        return None
    if utt.part == "train":
        return "train"
    if utt.speaker in DEV_SPEAKERS:
        return "dev"
    if utt.speaker in CORE_TEST_SPEAKERS.get(utt.dialect, ()):
        return "test"
    return None


def _listed_speakers(split: str) -> dict[str, str]:
    """The speakers a split must have -> where they are: dev and test only (TRAIN/ is all)."""
    if split == "dev":
        return {s: "TEST" for s in DEV_SPEAKERS}
    if split == "test":
        return {s: f"TEST/{dr.upper()}" for dr, group in CORE_TEST_SPEAKERS.items() for s in group}
    return {}


def _shortfall(split: str, utts: list[TimitUtterance], root: Path) -> str | None:
    """One line saying what `split` lacks against the full corpus; None when it is whole."""
    per_speaker = Counter(u.speaker for u in utts)
    odd = [f"{s} ({n})" for s, n in sorted(per_speaker.items()) if n != SENTENCES_PER_SPEAKER]
    if len(utts) == EXPECTED[split] and not odd:
        return None
    folder = _child(root, "train" if split == "train" else "test")
    line = (
        f"{folder}: {len(utts)} {split} utterances of {len(per_speaker)} speakers, the full "
        f"corpus has {EXPECTED[split]} of {EXPECTED_SPEAKERS[split]}"
    )
    listed = _listed_speakers(split)
    missing = [f"{s} ({where})" for s, where in sorted(listed.items()) if s not in per_speaker]
    if missing:
        line += "; speakers missing: " + ", ".join(missing)
    elif split == "train" and len(per_speaker) < EXPECTED_SPEAKERS["train"]:
        line += f"; {EXPECTED_SPEAKERS['train'] - len(per_speaker)} speakers missing"
    if odd:
        line += f"; speakers without {SENTENCES_PER_SPEAKER} SI/SX sentences: " + ", ".join(odd)
    return line


def prepare_timit(
    source: Path, out_dir: Path, phones: int = DEFAULT_PHONES, allow_partial: bool = False
) -> dict[str, Path]:
    """Check the copy in `source`; write train/dev/test.jsonl (phones of the `phones` set) and
    phones.txt (the set, one phone a line) in `out_dir`. Audio paths are absolute.

    Every problem of the copy is reported at once, one line each; nothing is written then.
    `allow_partial` accepts fewer utterances than the full corpus (each split must still have
    some). Returns {name: path}."""
    _check_set(phones)
    root = corpus_root(Path(source)).resolve()
    problems: list[str] = []
    table = _phone_table(phones)
    splits: dict[str, list[tuple[TimitUtterance, Utterance]]] = {"train": [], "dev": [], "test": []}
    for utt in find_utterances(root, problems):
        split = split_of(utt)
        if split is None:
            continue
        if utt.phn is None:
            problems.append(f"{utt.audio}: no .PHN transcription beside it")
            continue
        try:
            folded = [table[p] for p in read_phn(utt.phn) if p in table]
            duration = audio_duration(utt.audio)
        except (TimitError, AudioError) as err:
            problems.append(str(err))
            continue
        splits[split].append((utt, Utterance(str(utt.audio), duration, " ".join(folded))))
    if problems:
        raise TimitError(f"{len(problems)} problem(s) in {root}:\n" + "\n".join(problems))
    shortfall = [
        line
        for split, entries in splits.items()
        if (line := _shortfall(split, [u for u, _ in entries], root)) is not None
    ]
    empty = [split for split, entries in splits.items() if not entries]
    if empty or (shortfall and not allow_partial):
        hint = "" if empty else " (--allow-partial prepares what there is)"
        raise TimitError(f"incomplete TIMIT copy{hint}:\n" + "\n".join(shortfall))
    outputs = {}
    for split, entries in splits.items():
        outputs[split] = Path(out_dir) / f"{split}.jsonl"
        write_manifest(outputs[split], [u for _, u in sorted(entries, key=_order)])
    outputs["phones"] = Path(out_dir) / "phones.txt"
    atomic_write_text(outputs["phones"], "".join(p + "\n" for p in phone_inventory(phones)))
    return outputs


def _order(entry: tuple[TimitUtterance, Utterance]) -> tuple[str, str, str]:
    utt = entry[0]
    return utt.dialect, utt.speaker, utt.sentence


DATASET = Dataset(
    name="timit",
    summary="TIMIT (LDC93S1, licensed): phone recognition, 3696 train / 400 dev / 192 core test",
    prepare=prepare_timit,
    download=None,
    options=(
        Option(
            "phones",
            "phone set of the manifests: 39 (scoring classes, default), 48 or 61 (TIMIT's)",
            default=DEFAULT_PHONES,
            type=int,
            choices=PHONE_SETS,
        ),
        Option(
            "allow_partial",
            "prepare a copy with fewer utterances than the full corpus (a sample)",
            type=bool,
        ),
    ),
    source_help=(
        "a licensed TIMIT copy (LDC93S1; it cannot be downloaded): the folder holding "
        "TRAIN/ and TEST/, any letter case"
    ),
)
