"""N-gram language models for beam-search decoding: built with KenLM, read back for checks.

`build_lm` turns a text file (one sentence per line) into `lm.arpa`, a KenLM binary `lm.bin`,
for word models a `lexicon.txt` (word -> spelling in characters), and `lm.json` (what was
built, from what, how). `kenlm_tools` finds KenLM's `lmplz` and `build_binary`, or builds
them from KenLM's source release into a cache, once. `ArpaModel` reads an ARPA file and gives
back-off probabilities, to test the model and to debug a decoder against it.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import math
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from asr.data import ManifestError, read_manifest
from asr.files import (
    DownloadError,
    atomic_write_text,
    download_file,
    extract_archive,
    file_sha256,
)
from asr.spelling import SpellingError, spellable_words, spelt, word_list_path
from asr.text import normalize_text

# KenLM's source release: the sdist of the PyPI package kenlm 0.3.0 (URL and sha256 from the
# PyPI JSON API, https://pypi.org/pypi/kenlm/0.3.0/json). It holds lm/builder (lmplz),
# lm/build_binary_main.cc and the CMake build.
KENLM_VERSION = "0.3.0"
KENLM_URL = (
    "https://files.pythonhosted.org/packages/02/6e/"
    "f4e159cef39ea4ef2244b4aa32857d447d60a5d0ee269e1b1f8d3723c03e/kenlm-0.3.0.tar.gz"
)
KENLM_SHA256 = "c4628bb9fb63c8a6f9240035b8b037385cfc404cb72e933cf48878291edac1e8"
MIN_ORDER, MAX_ORDER = 2, 6  # build_binary refuses unigram models; KenLM's KENLM_MAX_ORDER
# lmplz's sort buffers. Its default, 80% of the machine's memory, touches gigabytes even for a
# ten-line text; 1G holds corpora of millions of words, and larger ones are sorted on disk.
LMPLZ_MEMORY = "1G"
WORD_SEPARATOR = "|"  # between words in a character LM and at the end of every lexicon spelling
UNITS = ("word", "char")
LM_JSON = "lm.json"


@dataclass(frozen=True)
class BuildLibrary:
    """A library that building KenLM needs, checked with the compiler cmake will use."""

    name: str  # as a user knows it
    header: str  # a header it installs, found with the compiler's own include path
    library: str  # the linker's name: -l<library>
    debian: str  # the Debian/Ubuntu package that installs header and library


# KenLM's CMakeLists.txt REQUIRES these four Boost libraries; zlib lets build_binary read .arpa.gz.
KENLM_LIBRARIES = (
    BuildLibrary(
        "Boost program_options",
        "boost/program_options.hpp",
        "boost_program_options",
        "libboost-program-options-dev",
    ),
    BuildLibrary(
        "Boost system", "boost/system/error_code.hpp", "boost_system", "libboost-system-dev"
    ),
    BuildLibrary("Boost thread", "boost/thread.hpp", "boost_thread", "libboost-thread-dev"),
    BuildLibrary(
        "Boost unit_test_framework",
        "boost/test/unit_test.hpp",
        "boost_unit_test_framework",
        "libboost-test-dev",
    ),
    BuildLibrary("zlib", "zlib.h", "z", "zlib1g-dev"),
)
# The build's commands and their Debian/Ubuntu packages; "c++" stands for $CXX when set.
KENLM_BUILD_COMMANDS = {"cmake": "cmake", "make": "make", "c++": "g++"}
# Every Debian/Ubuntu package the KenLM build needs: `make install` installs them as root.
KENLM_DEBS = (*KENLM_BUILD_COMMANDS.values(), *(lib.debian for lib in KENLM_LIBRARIES))


class LMError(ValueError):
    """A language model that cannot be built or read; the message names the file and cause."""


@dataclass(frozen=True)
class KenLMTools:
    lmplz: Path  # estimates an ARPA model from text
    build_binary: Path  # ARPA -> KenLM's binary format (fast to load)


@dataclass(frozen=True)
class LMFiles:
    arpa: Path
    binary: Path  # KenLM binary: what a decoder should load
    lexicon: Path | None  # word -> "c h a r s |"; None for a character LM
    unit: str  # "word" or "char"
    order: int


# ---------------------------------------------------------------------------------------------
# KenLM tools: from PATH, from the cache, or built from source into the cache


def default_cache_dir() -> Path:
    return Path(os.environ.get("ASR_CACHE") or Path.home() / ".cache" / "rnn-asr")


def kenlm_tools(cache_dir: Path | None = None) -> KenLMTools:
    """`lmplz` and `build_binary` from PATH if both are there, else built once into the cache.

    The build (download, cmake, compile: a minute or more) runs under a file lock in a
    temporary folder that is renamed to `<cache>/kenlm-0.3.0` when complete, so concurrent
    callers wait for one build and an interrupted build leaves nothing that looks finished.
    """
    lmplz, build_binary = shutil.which("lmplz"), shutil.which("build_binary")
    if lmplz and build_binary:
        return KenLMTools(Path(lmplz), Path(build_binary))
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache / f"kenlm-{KENLM_VERSION}"
    tools = _cached_tools(final)
    if tools is not None:
        return tools
    cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache / f".kenlm-{KENLM_VERSION}.lock"):
        tools = _cached_tools(final)  # another process may have built it while we waited
        if tools is None:
            _build_kenlm(cache, final)
            tools = _cached_tools(final)
            assert tools is not None, f"{final}: build finished without the binaries"
    return tools


def _cached_tools(folder: Path) -> KenLMTools | None:
    tools = KenLMTools(folder / "bin" / "lmplz", folder / "bin" / "build_binary")
    if all(os.access(p, os.X_OK) for p in (tools.lmplz, tools.build_binary)):
        return tools
    return None


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def kenlm_build_problems() -> list[str]:
    """What building KenLM from source lacks: one line per kind (commands, libraries), each
    naming what is missing and how to get it; [] when the build can start.

    The libraries are looked for with the compiler cmake will use ($CXX, else c++): each
    header through its preprocessor, each library through its linker.
    """
    compiler = shlex.split(os.environ.get("CXX") or "c++")
    commands = {"cmake": ["cmake"], "make": ["make"], "c++": compiler}
    missing = [name for name, cmd in commands.items() if not cmd or not shutil.which(cmd[0])]
    problems = []
    if missing:
        shown = [" ".join(compiler) if name == "c++" else name for name in missing]
        debs = " ".join(KENLM_BUILD_COMMANDS[name] for name in missing)
        problems.append(
            f"{', '.join(shown)} not found; install them (Debian: apt-get install {debs})"
        )
    if "c++" not in missing:
        libraries = _missing_libraries(compiler)
        if libraries:
            names = ", ".join(lib.name for lib in libraries)
            debs = " ".join(lib.debian for lib in libraries)
            problems.append(
                f"{names} not found (headers or libraries); install them "
                f"(Debian: apt-get install {debs})"
            )
    return problems


def _missing_libraries(compiler: list[str]) -> list[BuildLibrary]:
    """The KENLM_LIBRARIES whose header the compiler cannot include or whose library it
    cannot link; all of them are tried at once first, as they usually are all there."""
    if _compiles(compiler, [lib.header for lib in KENLM_LIBRARIES]) and _links(
        compiler, [lib.library for lib in KENLM_LIBRARIES]
    ):
        return []
    return [
        lib
        for lib in KENLM_LIBRARIES
        if not (_compiles(compiler, [lib.header]) and _links(compiler, [lib.library]))
    ]


def _compiles(compiler: list[str], headers: list[str]) -> bool:
    """Whether the preprocessor finds every header."""
    source = "".join(f"#include <{h}>\n" for h in headers)
    return _run_compiler([*compiler, "-E", "-x", "c++", "-", "-o", os.devnull], source)


def _links(compiler: list[str], libraries: list[str]) -> bool:
    """Whether an empty program links against every library."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*compiler, "-x", "c++", "-", "-o", str(Path(tmp, "a.out"))]
        return _run_compiler([*cmd, *(f"-l{name}" for name in libraries)], "int main() {}\n")


def _run_compiler(cmd: list[str], source: str) -> bool:
    try:
        done = subprocess.run(cmd, input=source, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _build_kenlm(cache: Path, final: Path) -> None:
    """Download, unpack and compile lmplz and build_binary; only called under the lock."""
    problems = kenlm_build_problems()
    if problems:
        raise LMError(
            f"cannot build KenLM (lmplz, build_binary not on PATH): {'; '.join(problems)}"
        )
    for stale in cache.glob(f".kenlm-{KENLM_VERSION}.build-*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    try:
        archive = download_file(KENLM_URL, cache / Path(KENLM_URL).name, sha256=KENLM_SHA256)
    except DownloadError as err:
        raise LMError(f"cannot build KenLM: {err}") from None
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".kenlm-{KENLM_VERSION}.build-"))
    log = cache / f"kenlm-{KENLM_VERSION}.build.log"
    try:
        extract_archive(archive, tmp / "src")
        source, build = tmp / "src" / f"kenlm-{KENLM_VERSION}", tmp / "build"
        with open(log, "w") as log_file:
            configure = ["cmake", "-S", str(source), "-B", str(build)]
            _run_build_step([*configure, "-DCMAKE_BUILD_TYPE=Release"], log_file, log)
            compile_ = ["cmake", "--build", str(build), "--target", "lmplz", "build_binary"]
            _run_build_step([*compile_, "-j2"], log_file, log)
        out = tmp / "out" / "bin"
        out.mkdir(parents=True)
        for name in ("lmplz", "build_binary"):
            shutil.copy2(build / "bin" / name, out / name)
        if final.exists():  # incomplete (we checked under the lock): replace it
            shutil.rmtree(final)
        os.replace(tmp / "out", final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_build_step(cmd: list[str], log_file: IO[str], log: Path) -> None:
    """Run one cmake step, stdout to the log; a failure becomes one LMError line."""
    log_file.write(f"$ {shlex.join(cmd)}\n")
    log_file.flush()
    done = subprocess.run(cmd, stdout=log_file, stderr=subprocess.PIPE, text=True)
    log_file.write(done.stderr)
    if done.returncode == 0:
        return
    configuring = cmd[1] == "-S"
    if configuring and "boost" in done.stderr.lower():
        debs = " ".join(lib.debian for lib in KENLM_LIBRARIES)
        raise LMError(
            f"cannot build KenLM: Boost not found (see {log}); "
            f"install it (Debian: apt-get install {debs})"
        )
    errors = [line.strip() for line in done.stderr.splitlines() if "error" in line.lower()]
    last = errors[0] if errors else _last_line(done.stderr)
    raise LMError(f"cannot build KenLM: {cmd[0]} {cmd[1]} failed: {last} (full log: {log})")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


# ---------------------------------------------------------------------------------------------
# Building a model


def to_lm_units(sentence: str, unit: str) -> str:
    """A normalised sentence as lmplz sees it: words, or characters with "|" between words.

    >>> to_lm_units("one two", "char")
    'o n e | t w o'
    """
    if unit == "word":
        return sentence
    if unit == "char":
        return f" {WORD_SEPARATOR} ".join(" ".join(word) for word in sentence.split())
    raise LMError(f"unknown LM unit {unit!r} (expected one of {', '.join(UNITS)})")


def lexicon_line(word: str) -> str:
    """`one` -> "one<TAB>o n e |": the word and its spelling, as a lexicon decoder reads it."""
    return f"{word}\t{' '.join(word)} {WORD_SEPARATOR}"


def read_sentences(text: Path) -> list[str]:
    """The file's lines (a .jsonl manifest: its "text" fields), normalised, empty ones dropped;
    LMError names the file and line."""
    text = Path(text)
    if not text.is_file():
        raise LMError(f"{text}: no such file")
    if text.suffix == ".jsonl":
        try:
            lines = [u.text for u in read_manifest(text)]
        except ManifestError as err:
            raise LMError(str(err)) from None
    else:
        lines = []
        for number, raw in enumerate(text.read_bytes().splitlines(), start=1):
            try:
                lines.append(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise LMError(f"{text}:{number}: not UTF-8 text ({err.reason})") from None
    sentences = []
    for line in lines:
        sentence = normalize_text(line)
        if sentence:
            sentences.append(sentence)
    if not sentences:
        raise LMError(f"{text}: no text (every line is empty once normalised)")
    return sentences


def build_lm(
    text: Path | Sequence[Path],
    out_dir: Path,
    order: int = 3,
    unit: str = "word",
    tools: KenLMTools | None = None,
    spell: str | Path | None = None,
    text_copies: int = 1,
) -> LMFiles:
    """Estimate an `order`-gram model of `text` (one file, or several read one after the
    other) with lmplz and write it to `out_dir`.

    `spell`: a word-list file or `cmudict` (`asr.spelling`), whose words are added spelt
    letter by letter, one sentence each; `text_copies` counts the sentences of `text` that
    many times, so that a long list does not outweigh them. Writes lm.arpa, lm.bin,
    lexicon.txt (word models only) and, last, lm.json; a folder without lm.json is not a
    finished model.
    """
    texts = [Path(text)] if isinstance(text, str | Path) else [Path(t) for t in text]
    out_dir = Path(out_dir)
    text = " + ".join(str(t) for t in texts)  # for messages
    if unit not in UNITS:
        raise LMError(f"unknown LM unit {unit!r} (expected one of {', '.join(UNITS)})")
    if not MIN_ORDER <= order <= MAX_ORDER:
        raise LMError(f"LM order must be between {MIN_ORDER} and {MAX_ORDER}, got {order}")
    if text_copies < 1:
        raise LMError(f"--text-copies must be 1 or more, got {text_copies}")
    sentences = [s for t in texts for s in read_sentences(t)]
    word_list: Path | None = None
    spellings: list[str] = []
    if spell is not None:
        try:
            word_list = word_list_path(spell)
            spellings = [spelt(w) for w in spellable_words(word_list)]
        except SpellingError as err:
            raise LMError(str(err)) from None
    tools = tools or kenlm_tools()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / LM_JSON).unlink(missing_ok=True)  # the folder is unfinished until it is back

    lmplz_options = ["-o", str(order), "--discount_fallback", "-S", LMPLZ_MEMORY]
    work = Path(tempfile.mkdtemp(dir=out_dir, prefix=".lm-build-"))
    try:
        corpus = work / "corpus.txt"
        lines = [to_lm_units(s, unit) + "\n" for s in sentences] * text_copies
        lines += [to_lm_units(s, unit) + "\n" for s in spellings]
        corpus.write_text("".join(lines), "utf-8")
        files = ["-T", str(work), "--text", str(corpus), "--arpa", str(work / "lm.arpa")]
        _run_kenlm([str(tools.lmplz), *lmplz_options, *files], what=f"lmplz on {text}")
        _run_kenlm(
            [str(tools.build_binary), str(work / "lm.arpa"), str(work / "lm.bin")],
            what=f"build_binary on the ARPA model of {text}",
        )
        os.replace(work / "lm.arpa", out_dir / "lm.arpa")
        os.replace(work / "lm.bin", out_dir / "lm.bin")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    words = sorted({w for s in [*sentences, *spellings] for w in s.split()})
    lexicon = out_dir / "lexicon.txt"
    if unit == "word":
        atomic_write_text(lexicon, "".join(lexicon_line(w) + "\n" for w in words))
    else:
        lexicon.unlink(missing_ok=True)  # a word model's lexicon left from before
    command = ["asr", "lm", "build", "--text", *map(str, texts), "--order", str(order)]
    command += ["--out", str(out_dir), "--unit", unit]
    if spell is not None:
        command += ["--spell", str(spell)]  # as given: `cmudict` stays a name, not a path
    if text_copies != 1:
        command += ["--text-copies", str(text_copies)]
    units = sorted({u for s in [*sentences, *spellings] for u in to_lm_units(s, unit).split()})
    info = {
        "unit": unit,
        "order": order,
        "text": [str(t.resolve()) for t in texts],
        "sentences": len(sentences),  # of the text; the LM's corpus holds each text_copies times
        "words": sum(len(s.split()) for s in sentences),
        "text_copies": text_copies,
        "spell": None
        if word_list is None
        else {
            "word_list": str(word_list.resolve()),
            "sha256": file_sha256(word_list),
            "words": len(spellings),
        },
        "vocab_size": len(units),  # words, or characters and "|"; without <s>, </s>, <unk>
        "lm_bin_sha256": file_sha256(out_dir / "lm.bin"),
        "lm_bin_bytes": (out_dir / "lm.bin").stat().st_size,  # checked cheaply on every load
        "command": shlex.join(command),
        "lmplz_options": lmplz_options,
        "kenlm": {"lmplz": str(tools.lmplz), "build_binary": str(tools.build_binary)},
    }
    atomic_write_text(out_dir / LM_JSON, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return load_lm_files(out_dir)


def _run_kenlm(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise LMError(f"{what} failed (exit {done.returncode}): {_last_line(done.stderr)}")


def load_lm_files(path: Path) -> LMFiles:
    """The files of an LM folder written by `build_lm`."""
    folder = Path(path)
    try:
        info = json.loads((folder / LM_JSON).read_text(encoding="utf-8"))
        unit, order = info["unit"], int(info["order"])
    except FileNotFoundError:
        raise LMError(
            f"{folder}: not an LM folder (no {LM_JSON}; make one with asr lm build)"
        ) from None
    except (ValueError, KeyError, TypeError) as err:
        raise LMError(f"{folder / LM_JSON}: unreadable ({err})") from None
    files = LMFiles(
        arpa=folder / "lm.arpa",
        binary=folder / "lm.bin",
        lexicon=folder / "lexicon.txt" if unit == "word" else None,
        unit=unit,
        order=order,
    )
    for p in (files.arpa, files.binary, files.lexicon):
        if p is not None and not p.is_file():
            raise LMError(f"{folder}: incomplete LM folder, {p.name} is missing")
    return files


# ---------------------------------------------------------------------------------------------
# Reading ARPA files


class ArpaModel:
    """An ARPA back-off model in memory: log10 probabilities as KenLM computes them.

    Words outside the vocabulary are scored as <unk>, as KenLM does.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        # (w1, ..., wn) -> (log10 p(wn | w1..wn-1), log10 back-off weight of w1..wn)
        self.ngrams: dict[tuple[str, ...], tuple[float, float]] = {}
        self.order = 0
        opener = gzip.open if self.path.suffix == ".gz" else open
        try:
            with opener(self.path, "rt", encoding="utf-8") as f:
                self._read(f)
        except (OSError, UnicodeDecodeError, EOFError) as err:
            raise LMError(f"{self.path}: cannot read ARPA file ({err})") from None
        self.vocab: set[str] = {ngram[0] for ngram in self.ngrams if len(ngram) == 1}

    def _read(self, lines) -> None:
        section = 0  # 0: before \data\ or in it; n: in the \n-grams: section
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("ngram ") or line == "\\data\\":
                continue
            if line == "\\end\\":
                return
            if line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:].split("-")[0])
                self.order = max(self.order, section)
                continue
            fields = line.split()
            if section == 0 or len(fields) not in (section + 1, section + 2):
                raise LMError(f"{self.path}:{number}: not an ARPA line: {line[:80]!r}")
            backoff = float(fields[section + 1]) if len(fields) == section + 2 else 0.0
            self.ngrams[tuple(fields[1 : section + 1])] = (float(fields[0]), backoff)
        raise LMError(f"{self.path}: no \\end\\ line (truncated?)")

    def log10_prob(self, word: str, history: tuple[str, ...] = ()) -> float:
        """log10 p(word | history), backing off to shorter histories as the ARPA format says."""
        word = word if word in self.vocab else "<unk>"
        history = tuple(w if w in self.vocab else "<unk>" for w in history)
        history = history[len(history) - (self.order - 1) :] if self.order > 1 else ()
        backoff = 0.0
        for start in range(len(history) + 1):
            context = history[start:]
            found = self.ngrams.get((*context, word))
            if found is not None:
                return backoff + found[0]
            backoff += self.ngrams.get(context, (0.0, 0.0))[1]
        return -math.inf  # only when <unk> is missing from the model

    def sentence_log10_prob(self, words: Sequence[str], eos: bool = True) -> float:
        """log10 p(words [</s>] | <s>), the score KenLM gives a whole sentence."""
        history: tuple[str, ...] = ("<s>",)
        total = 0.0
        for word in [*words, "</s>"] if eos else words:
            total += self.log10_prob(word, history)
            history = (*history, word)
        return total
