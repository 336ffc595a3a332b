"""LibriSpeech (OpenSLR 12), Mini LibriSpeech (OpenSLR 31) and LibriSpeech's LMs (OpenSLR 11).

LibriSpeech: about 1000 hours of read English audiobooks (LibriVox), 16 kHz FLAC, by Vassil
Panayotov, Guoguo Chen, Daniel Povey and Sanjeev Khudanpur (ICASSP 2015); licence CC BY 4.0.
https://www.openslr.org/12/ Seven parts, each its own archive that unpacks to
`LibriSpeech/<part>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac` with one
`<speaker>-<chapter>.trans.txt` per chapter (`<speaker>-<chapter>-<utt> TRANSCRIPT` a line,
upper-case letters, apostrophes and spaces): dev-clean, dev-other, test-clean, test-other
(about 5.4 h each), train-clean-100, train-clean-360, train-other-500 (960 h together).
Mini LibriSpeech (https://www.openslr.org/31/, same layout and licence): dev-clean-2 (subset
of dev-clean) and train-clean-5 (of train-clean-100), for quick experiments. It has no test
part: its recipe reports dev-clean-2, as Kaldi's egs/mini_librispeech does.

Preparation is lhotse's (`lhotse.recipes.prepare_librispeech`, an optional extra: `pip install
'rnn-asr[lhotse]'`), converted to our manifests by `data_prep/lhotse_manifests.py`. Before
lhotse runs, every transcript file of a part is read here: lhotse skips a line whose audio is
missing with only a log message, and stops on a line without text with an unpacking error that
names neither file nor line. So a malformed line, a line without audio, a FLAC without a line
and a count other than the release's are reported here, naming the file and line. A partial
copy (fewer utterances than the release) is refused unless `allow_partial` is given, then
prepared with a warning naming the part, found and expected.

Manifests (`--out-dir`): `<part>.jsonl` for every part used, `train.jsonl` (the training parts
together) and `dev.jsonl` (the dev parts together); the test parts are their `<part>.jsonl`.
Defaults: train = the 960 h, dev = dev-clean, test = test-clean and test-other (Mini: train =
train-clean-5, dev = dev-clean-2, no test part). Text is lower-cased (lhotse's
`normalize_text="lower"`): it is what training, scoring and the LM lexicons use
(`asr.text.normalize_text` lower-cases, and nothing else changes LibriSpeech's text).

Checksums. Every archive's md5 is OpenSLR's own (its `resources/12/md5sum.txt` and
`resources/31/md5sum.txt`, as reproduced in PaddlePaddle/PaddleSpeech's
`dataset/librispeech/librispeech.py` and `dataset/mini_librispeech/mini_librispeech.py`). The
seven LibriSpeech archives are also checked against the sha256 that torchaudio's LibriSpeech
dataset checks (`torchaudio/datasets/librispeech.py`, `_CHECKSUMS`). The OpenSLR 11 files are
checked by size (Kaldi's `egs/librispeech/s5/local/download_lm.sh`) and, where one was found, a
sha256: `4-gram.arpa.gz` and `librispeech-lexicon.txt` from rwth-i6/i6_experiments
(`common/datasets/librispeech/language_model.py` and `lexicon.py`). No published checksum of
`3-gram.pruned.1e-7.arpa.gz` was found: it is checked by its size alone.

    asr prepare librispeech --source DIR --out-dir exp/librispeech/data   # DIR holds LibriSpeech/
    asr prepare librispeech --download-dir data/librispeech --out-dir exp/librispeech/data
    asr prepare mini_librispeech --download-dir data/mini_librispeech --out-dir exp/mini/data
    asr prepare librispeech_lm --download-dir data/librispeech_lm --out-dir exp/librispeech/lms
"""

from __future__ import annotations

import gzip
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.data import Utterance, write_manifest
from asr.datasets import Dataset, DatasetError, Option
from asr.files import atomic_write_text, download_file, extract_archive, file_sha256
from asr.lm import LM_JSON, kenlm_tools, lexicon_line, load_lm_files
from asr.text import normalize_text
from data_prep.lhotse_manifests import require_lhotse, utterances_from_lhotse

OPENSLR = "https://www.openslr.org/resources"
FOLDER_NAME = "LibriSpeech"


@dataclass(frozen=True)
class Part:
    """One archive of the release."""

    name: str  # e.g. "test-clean"
    resource: int  # OpenSLR resource number: 12 (LibriSpeech) or 31 (Mini LibriSpeech)
    utterances: int  # lines of its transcripts = FLAC files in the release
    md5: str  # OpenSLR's md5sum.txt
    sha256: str | None = None  # torchaudio's _CHECKSUMS (LibriSpeech only)

    @property
    def url(self) -> str:
        return f"{OPENSLR}/{self.resource}/{self.name}.tar.gz"


PARTS = {
    p.name: p
    for p in (
        Part(
            "dev-clean",
            12,
            2703,
            "42e2234ba48799c1f50f24a7926300a1",
            "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
        ),
        Part(
            "dev-other",
            12,
            2864,
            "c8d0bcc9cca99d4f8b62fcc847357931",
            "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
        ),
        Part(
            "test-clean",
            12,
            2620,
            "32fa31d27d2e1cad72775fee3f4849a9",
            "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
        ),
        Part(
            "test-other",
            12,
            2939,
            "fb5a50374b501bb3bac4815ee91d3135",
            "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
        ),
        Part(
            "train-clean-100",
            12,
            28539,
            "2a93770f6d5c6c964bc36631d331a522",
            "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
        ),
        Part(
            "train-clean-360",
            12,
            104014,
            "c0e676e450a7ff2f54aeade5171606fa",
            "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
        ),
        Part(
            "train-other-500",
            12,
            148688,
            "d1a0fd59409feb2c614ce4d30c387708",
            "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
        ),
        Part("dev-clean-2", 31, 1089, "6d7ab67ac6a1d2c993d050e16d61080d"),
        Part("train-clean-5", 31, 1519, "5df7d4e78065366204ca6845bb08f490"),
    )
}
LIBRISPEECH_PARTS = tuple(name for name, p in PARTS.items() if p.resource == 12)
MINI_PARTS = tuple(name for name, p in PARTS.items() if p.resource == 31)

# "1089-134686-0000 HE HOPED THERE WOULD BE STEW FOR DINNER"
_LINE = re.compile(r"(?P<id>(?P<chapter>\d+-\d+)-\d+) (?P<text>[A-Z' ]+)")


class LibriSpeechError(DatasetError):
    """A LibriSpeech copy that is incomplete or malformed; the message names file and line."""


# ---------------------------------------------------------------------------------------------
# Download


def download_librispeech(
    root: Path, parts: Sequence[str] = LIBRISPEECH_PARTS, base_url: str = OPENSLR
) -> Path:
    """Download (resuming, checksummed) and unpack `parts` into `root`; returns `root`, which
    then holds `LibriSpeech/<part>/` for each part. A finished part is only checked again.

    Every archive has the top folder `LibriSpeech/`: `extract_archive` merges each into the one
    tree. (A part unpacked by older versions, to `root/unpacked/<part>/` behind a symlink, is
    unpacked once more in its place; `root/unpacked/` can then be deleted.)
    """
    root = Path(root)
    for name in parts:
        part = _part(name)
        url = f"{base_url}/{part.resource}/{part.name}.tar.gz"
        archive = download_file(url, root / f"{part.name}.tar.gz", sha256=part.sha256, md5=part.md5)
        extract_archive(archive, root)
        if not (root / FOLDER_NAME / part.name).is_dir():
            raise LibriSpeechError(
                f"{archive}: has no {FOLDER_NAME}/{part.name}/ folder; not a LibriSpeech archive"
            )
    return root


def download_mini_librispeech(root: Path) -> Path:
    """`download_librispeech` of Mini LibriSpeech's two parts."""
    return download_librispeech(root, MINI_PARTS)


def download_parts_used(
    root: Path,
    train_parts: str | Sequence[str] = (),
    dev_parts: str | Sequence[str] = (),
    test_parts: str | Sequence[str] = (),
) -> Path:
    """`download_librispeech` of only the parts `asr prepare` was asked to use."""
    chosen = [p for group in (train_parts, dev_parts, test_parts) for p in split_parts(group)]
    return download_librispeech(root, tuple(dict.fromkeys(chosen)))


def _part(name: str) -> Part:
    if name not in PARTS:
        raise LibriSpeechError(f"unknown LibriSpeech part {name!r}; known: {', '.join(PARTS)}")
    return PARTS[name]


# ---------------------------------------------------------------------------------------------
# Checking a copy


def corpus_folder(source: Path) -> Path:
    """The `LibriSpeech/` folder: `source` itself or its child; LibriSpeechError otherwise."""
    source = Path(source)
    for folder in (source / FOLDER_NAME, source):
        if folder.is_dir() and any((folder / name).is_dir() for name in PARTS):
            return folder
    raise LibriSpeechError(
        f"{source}: no LibriSpeech parts (expected {FOLDER_NAME}/<part>/ with a part among "
        f"{', '.join(PARTS)})"
    )


def read_transcripts(path: Path) -> dict[str, tuple[str, str]]:
    """Utterance id -> (text, "path:line") of one `<speaker>-<chapter>.trans.txt`.

    LibriSpeechError at the first malformed line, a line of another chapter or a repeated id.
    The last line may lack its newline."""
    chapter = path.name.removesuffix(".trans.txt")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise LibriSpeechError(f"{path}: cannot read transcripts ({err})") from None
    entries: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(lines, start=1):
        where = f"{path}:{number}"
        if not line.strip():
            continue
        match = _LINE.fullmatch(line.rstrip())
        if match is None or not match["text"].strip():
            raise LibriSpeechError(
                f"{where}: malformed line {line[:60]!r} (expected '<speaker>-<chapter>-<utt> "
                "TEXT', TEXT in capitals, apostrophes and spaces)"
            )
        if match["chapter"] != chapter:
            raise LibriSpeechError(f"{where}: utterance {match['id']} is not of chapter {chapter}")
        if match["id"] in entries:
            raise LibriSpeechError(f"{where}: utterance {match['id']} listed twice")
        entries[match["id"]] = (" ".join(match["text"].split()), where)
    return entries


def check_part(folder: Path, part: str, allow_partial: bool = False) -> int:
    """Check `folder` (a `LibriSpeech/<part>/`): every line has its FLAC, every FLAC its line,
    and the count is the release's. Returns the count.

    LibriSpeechError naming the file (and line) of the first problem, or the part and counts
    when it is incomplete (with `allow_partial`: a warning on stderr instead) or too large.
    """
    expected = _part(part).utterances
    if not folder.is_dir():
        raise LibriSpeechError(f"{folder}: no such folder; part {part} is not in this copy")
    lines: dict[str, tuple[str, str]] = {}
    for trans in sorted(folder.glob("*/*/*.trans.txt")):
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        if trans.name != f"{speaker}-{chapter}.trans.txt":
            raise LibriSpeechError(f"{trans}: expected {speaker}-{chapter}.trans.txt here")
        for utt, (text, where) in read_transcripts(trans).items():
            if not (trans.parent / f"{utt}.flac").is_file():
                raise LibriSpeechError(f"{where}: no audio file {utt}.flac beside it")
            lines[utt] = (text, where)
    for flac in sorted(folder.glob("*/*/*.flac")):
        if flac.stem not in lines:
            trans = f"{flac.parent.parent.name}-{flac.parent.name}.trans.txt"
            raise LibriSpeechError(f"{flac}: no line for it in {flac.parent / trans}")
    found = len(lines)
    if found == 0:
        raise LibriSpeechError(f"{folder}: no utterances (no <speaker>/<chapter>/*.trans.txt)")
    if found > expected:
        raise LibriSpeechError(
            f"{folder}: {found} utterances in {part}, the release has {expected}: "
            "not the official release"
        )
    if found < expected:
        message = f"{folder}: partial {part}: {found} of the release's {expected} utterances"
        if not allow_partial:
            raise LibriSpeechError(f"{message} (--allow-partial prepares it anyway)")
        print(f"warning: {message}; preparing it anyway (--allow-partial)", file=sys.stderr)
    return found


# ---------------------------------------------------------------------------------------------
# Manifests


def split_parts(text: str | Sequence[str]) -> tuple[str, ...]:
    """A --*-parts value as part names: "a,b" -> ("a", "b"), each a known part; "" -> ().

    >>> split_parts("test-clean, test-other")
    ('test-clean', 'test-other')
    """
    names = text.split(",") if isinstance(text, str) else list(text)
    parts = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    unknown = [n for n in parts if n not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    return parts


def part_utterances(
    corpus: Path, parts: Sequence[str], num_jobs: int = 2
) -> dict[str, list[Utterance]]:
    """{part: its Utterances, sorted by utterance id} through lhotse's `prepare_librispeech`."""
    require_lhotse("librispeech")
    from lhotse.recipes.librispeech import prepare_librispeech as lhotse_prepare

    prepared = lhotse_prepare(
        corpus, dataset_parts=list(parts), normalize_text="lower", num_jobs=num_jobs
    )
    out = {}
    for part in parts:
        recordings = prepared[part]["recordings"]
        supervisions = sorted(prepared[part]["supervisions"], key=lambda s: s.id)
        out[part] = utterances_from_lhotse(recordings, supervisions)
    return out


def prepare_librispeech(
    source: Path,
    out_dir: Path,
    train_parts: str | Sequence[str] = ("train-clean-100", "train-clean-360", "train-other-500"),
    dev_parts: str | Sequence[str] = ("dev-clean",),
    test_parts: str | Sequence[str] = ("test-clean", "test-other"),
    allow_partial: bool = False,
    jobs: int = 2,
) -> dict[str, Path]:
    """Check the parts in `source` (the folder holding `LibriSpeech/`, or that folder), prepare
    them with lhotse and write `<part>.jsonl`, `train.jsonl` and `dev.jsonl` to `out_dir`.

    Returns {"train": ..., "dev": ..., <part>: ...}; audio paths are absolute."""
    require_lhotse("librispeech")  # before the checks, so a missing extra is said at once
    train, dev, test = (split_parts(p) for p in (train_parts, dev_parts, test_parts))
    if not train or not dev:
        raise LibriSpeechError("librispeech: at least one training part and one dev part needed")
    parts = tuple(dict.fromkeys((*train, *dev, *test)))
    corpus = corpus_folder(Path(source)).resolve()
    counts = {part: check_part(corpus / part, part, allow_partial) for part in parts}
    utterances = part_utterances(corpus, parts, jobs)
    out_dir = Path(out_dir)
    manifests: dict[str, Path] = {}
    for part in parts:
        if len(utterances[part]) != counts[part]:  # lhotse dropped or added something
            raise LibriSpeechError(
                f"{corpus / part}: lhotse prepared {len(utterances[part])} utterances, the "
                f"transcripts list {counts[part]}"
            )
        manifests[part] = out_dir / f"{part}.jsonl"
        write_manifest(manifests[part], utterances[part])
    for name, chosen in (("train", train), ("dev", dev)):
        manifests[name] = out_dir / f"{name}.jsonl"
        write_manifest(manifests[name], [u for part in chosen for u in utterances[part]])
    return {name: manifests[name] for name in ("train", "dev", *parts)}


def prepare_mini_librispeech(
    source: Path,
    out_dir: Path,
    train_parts: str | Sequence[str] = ("train-clean-5",),
    dev_parts: str | Sequence[str] = ("dev-clean-2",),
    test_parts: str | Sequence[str] = (),
    allow_partial: bool = False,
    jobs: int = 2,
) -> dict[str, Path]:
    """`prepare_librispeech` with Mini LibriSpeech's defaults (train-clean-5, dev-clean-2)."""
    return prepare_librispeech(
        source, out_dir, train_parts, dev_parts, test_parts, allow_partial, jobs
    )


def _options(train: str, dev: str, test: str) -> tuple[Option, ...]:
    listed = "comma-separated parts"
    return (
        Option("train_parts", f"{listed} for train.jsonl (default {train})", train, split_parts),
        Option("dev_parts", f"{listed} for dev.jsonl (default {dev})", dev, split_parts),
        Option(
            "test_parts",
            f"{listed} also written as <part>.jsonl (default {test or 'none'})",
            test,
            split_parts,
        ),
        Option(
            "allow_partial",
            "prepare an incomplete part (fewer utterances) with a warning",
            type=bool,
        ),
        Option("jobs", "threads lhotse reads audio headers with (default 2)", 2, int),
    )


# ---------------------------------------------------------------------------------------------
# The official LMs (OpenSLR 11) as LM folders for beam search


@dataclass(frozen=True)
class LMResource:
    name: str  # file name under https://www.openslr.org/resources/11/
    size: int  # bytes (Kaldi's egs/librispeech/s5/local/download_lm.sh)
    sha256: str | None  # rwth-i6/i6_experiments; None: no published checksum found


LM_RESOURCES = {
    r.name: r
    for r in (
        LMResource("3-gram.pruned.1e-7.arpa.gz", 34094057, None),
        LMResource(
            "4-gram.arpa.gz",
            1355172078,
            "f2b2d1507637ddf459d3579159f7e8099ed7d77452ff1059aeeeaea33d274613",
        ),
        LMResource(
            "librispeech-lexicon.txt",
            5627646,
            "d722bc29908cd338ae738edd70f61826a6fca29aaa704a9493f0006773f79d71",
        ),
    )
}
LEXICON_NAME = "librispeech-lexicon.txt"
ARPA_NAMES = ("3-gram.pruned.1e-7.arpa.gz", "4-gram.arpa.gz")
TEXT_CHUNK = 1 << 24  # characters lower-cased at a time


def download_models_used(root: Path, models: str | Sequence[str] = ARPA_NAMES) -> Path:
    """`download_librispeech_lm` of the lexicon and only the models asked for."""
    names = models.split(",") if isinstance(models, str) else list(models)
    unknown = sorted({n.strip() for n in names} - set(ARPA_NAMES))
    if unknown:
        raise LibriSpeechError(
            f"librispeech_lm: unknown model(s) {', '.join(unknown)}; known: {', '.join(ARPA_NAMES)}"
        )
    return download_librispeech_lm(root, [LEXICON_NAME, *(n.strip() for n in names)])


def download_librispeech_lm(
    root: Path, names: Sequence[str] = tuple(LM_RESOURCES), base_url: str = OPENSLR
) -> Path:
    """Download (resuming; size and, where known, sha256 checked) the OpenSLR 11 files into
    `root`; returns `root`."""
    root = Path(root)
    for name in names:
        resource = LM_RESOURCES[name]
        download_file(
            f"{base_url}/11/{name}",
            root / name,
            sha256=resource.sha256,
            expected_size=resource.size,
        )
    return root


def read_lexicon_words(path: Path) -> list[str]:
    """The words of `librispeech-lexicon.txt` (`WORD<TAB>PHONES` a line), normalised as
    training text is, sorted; LibriSpeechError naming the first malformed line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise LibriSpeechError(f"{path}: cannot read the lexicon ({err})") from None
    words = set()
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        word = normalize_text(fields[0])
        if len(fields) < 2 or not word or " " in word:
            raise LibriSpeechError(
                f"{path}:{number}: malformed lexicon line {line[:60]!r} (expected WORD PHONES)"
            )
        words.add(word)
    if not words:
        raise LibriSpeechError(f"{path}: lexicon has no words")
    return sorted(words)


def lowercase_arpa(arpa_gz: Path, out: Path) -> int:
    """Write the gzipped ARPA `arpa_gz` lower-cased to `out` (our text is lower case; so are
    KenLM's <s>, </s> and <unk>); returns its order. LibriSpeechError for a non-ARPA file."""
    try:
        with gzip.open(arpa_gz, "rt", encoding="utf-8") as src, open(out, "w") as dst:
            head = src.read(TEXT_CHUNK)
            orders = re.findall(r"^ngram (\d+)=", head[:10000], flags=re.MULTILINE)
            if "\\data\\" not in head[:1000] or not orders:
                raise LibriSpeechError(f"{arpa_gz}: not an ARPA model (no \\data\\ header)")
            chunk = head
            while chunk:
                dst.write(chunk.lower())
                chunk = src.read(TEXT_CHUNK)
    except (OSError, EOFError, UnicodeDecodeError) as err:
        out.unlink(missing_ok=True)
        raise LibriSpeechError(f"{arpa_gz}: cannot read ({err})") from None
    except LibriSpeechError:
        out.unlink(missing_ok=True)
        raise
    return max(int(n) for n in orders)


def official_lm_folder(arpa_gz: Path, lexicon: Path, out_dir: Path) -> Path:
    """An LM folder (as `asr lm build` writes) of an official ARPA model: lm.arpa lower-cased,
    lm.bin (KenLM's build_binary), lexicon.txt (the lexicon's words spelt in characters) and
    lm.json, written last."""
    words = read_lexicon_words(lexicon)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / LM_JSON).unlink(missing_ok=True)  # unfinished until it is back
    order = lowercase_arpa(Path(arpa_gz), out_dir / "lm.arpa")
    tools = kenlm_tools()
    command = [str(tools.build_binary), str(out_dir / "lm.arpa"), str(out_dir / "lm.bin")]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        # KenLM ends with a bare "ERROR" after the line that says what is wrong
        said = [line.strip() for line in done.stderr.splitlines() if line.strip() != "ERROR"]
        last = ([line for line in said if line] or ["(no output)"])[-1]
        raise LibriSpeechError(f"build_binary on {out_dir / 'lm.arpa'} failed: {last}")
    atomic_write_text(out_dir / "lexicon.txt", "".join(lexicon_line(w) + "\n" for w in words))
    info = {
        "unit": "word",
        "order": order,
        "source": [str(Path(arpa_gz).resolve()), str(Path(lexicon).resolve())],
        "words": len(words),
        "lm_bin_sha256": file_sha256(out_dir / "lm.bin"),
        "command": f"lower-cased {Path(arpa_gz).name}; {shlex.join(command)}",
    }
    atomic_write_text(out_dir / LM_JSON, json.dumps(info, indent=2) + "\n")
    load_lm_files(out_dir)  # the folder is complete
    return out_dir


def prepare_librispeech_lm(
    source: Path, out_dir: Path, models: str | Sequence[str] = ARPA_NAMES
) -> dict[str, Path]:
    """LM folders `out_dir/<model without .arpa.gz>/` of the chosen official models in `source`
    (a folder holding them and `librispeech-lexicon.txt`). Returns {model: folder}."""
    names = [m.strip() for m in models.split(",")] if isinstance(models, str) else list(models)
    unknown = [m for m in names if m not in ARPA_NAMES]
    if unknown or not names:
        raise LibriSpeechError(
            f"librispeech_lm: unknown model(s) {', '.join(unknown)}; known: {', '.join(ARPA_NAMES)}"
        )
    source = Path(source)
    for name in [LEXICON_NAME, *names]:
        if not (source / name).is_file():
            raise LibriSpeechError(f"{source}: no {name} (download it with --download-dir)")
    folders = {}
    for name in names:
        short = name.removesuffix(".arpa.gz")
        folders[short] = official_lm_folder(source / name, source / LEXICON_NAME, out_dir / short)
    return folders


# ---------------------------------------------------------------------------------------------
# Registry records


DATASET = Dataset(
    name="librispeech",
    summary="LibriSpeech (OpenSLR 12): 960 h of read English audiobooks + dev/test, 16 kHz, "
    "via lhotse",
    prepare=prepare_librispeech,
    download=download_parts_used,
    download_options=("train_parts", "dev_parts", "test_parts"),
    options=_options(
        "train-clean-100,train-clean-360,train-other-500", "dev-clean", "test-clean,test-other"
    ),
    source_help="the folder holding LibriSpeech/<part>/ (or LibriSpeech/ itself); "
    "--download-dir fetches the parts the --*-parts options name (all seven by default, "
    "about 60 GB)",
)

MINI_DATASET = Dataset(
    name="mini_librispeech",
    summary="Mini LibriSpeech (OpenSLR 31): train-clean-5 (5 h) and dev-clean-2, 16 kHz, "
    "via lhotse",
    prepare=prepare_mini_librispeech,
    download=download_mini_librispeech,
    options=_options("train-clean-5", "dev-clean-2", ""),
    source_help="the folder holding LibriSpeech/train-clean-5/ and dev-clean-2/",
)

LM_DATASET = Dataset(
    name="librispeech_lm",
    summary="LibriSpeech's official word 3-gram (pruned 1e-7) and 4-gram LMs (OpenSLR 11) as "
    "LM folders",
    prepare=prepare_librispeech_lm,
    download=download_models_used,
    download_options=("models",),
    options=(
        Option(
            "models",
            f"comma-separated models to convert (default {','.join(ARPA_NAMES)})",
            ",".join(ARPA_NAMES),
        ),
    ),
    source_help=f"a folder holding {', '.join(LM_RESOURCES)}",
    out_dir_help="where the LM folders go (one per model)",
)
