"""Words spelt letter by letter, as language-model text for corpora whose speakers spell.

AN4's speakers spell their names, streets and towns ("m e l v i n"); a word LM of 67 other
speakers' transcripts knows nothing of which letter follows which in a name, so an acoustic
m/n or b/v confusion stands. The spellings of a large word list, one sentence of letters per
word, teach the n-gram English spelling: `asr lm build --spell cmudict` adds them to the
transcripts.

A word list is a UTF-8 file with a word at the start of each line; the CMU Pronouncing
Dictionary's own format reads as one (`word PHONES`, `word(2)` for a second pronunciation,
`;;;` comment lines). `cmudict` names the copy that the pocketsphinx wheel ships
(`pip install pocketsphinx`; PyPI checks the wheel's hash), so no download is needed.
"""

from __future__ import annotations

import re
from importlib.util import find_spec
from pathlib import Path

from asr.text import normalize_text

CMUDICT = "cmudict"  # --spell's name for pocketsphinx's copy of the CMU Pronouncing Dictionary
# Where the pocketsphinx wheel (5.x) keeps it, under the package's folder.
POCKETSPHINX_CMUDICT = Path("model", "en-us", "cmudict-en-us.dict")
_VARIANT = re.compile(r"\(\d+\)$")  # CMUdict's second and later pronunciations: "word(2)"
_SPELLABLE = re.compile(r"[a-z]+")  # what a speaker of AN4's English can spell out


class SpellingError(ValueError):
    """A word list that cannot be read or has no spellable word; names the file and cause."""


def cmudict_path() -> Path:
    """The CMU Pronouncing Dictionary inside the installed pocketsphinx package."""
    spec = find_spec("pocketsphinx")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise SpellingError(
            "cmudict: the pocketsphinx package is not installed (pip install pocketsphinx, "
            "or pip install -e '.[spell]'); or give a word-list file instead"
        )
    path = Path(folders[0]) / POCKETSPHINX_CMUDICT
    if not path.is_file():
        raise SpellingError(f"cmudict: {path} is missing from the pocketsphinx package")
    return path


def word_list_path(source: str | Path) -> Path:
    """`cmudict` -> pocketsphinx's copy; anything else is a word-list file."""
    if str(source) == CMUDICT:
        return cmudict_path()
    path = Path(source)
    if not path.exists():
        raise SpellingError(f"{path}: no such word list")
    if not path.is_file():
        raise SpellingError(f"{path}: a word list must be a file, not a folder")
    return path


def spellable_words(path: Path) -> list[str]:
    """The distinct spellable words of a word list, in file order.

    The first field of each line, normalised (`asr.text.normalize_text`), without CMUdict's
    "(2)" suffix; kept when it is two or more of the letters a-z (single letters are already
    words of any spelt transcript, and "o'brien" or "3d" cannot be spelt with them alone).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".dict", delete=False) as f:
    ...     _ = f.write(";;; comment\\nMelvin M EH1 L V IH0 N\\nmelvin(2) M EH1 L V AH0 N\\n"
    ...                 "o'brien OW0 B R AY1 AH0 N\\nx EH1 K S\\n\\ncindy S IH1 N D IY0\\n")
    >>> spellable_words(Path(f.name))
    ['melvin', 'cindy']
    """
    words: dict[str, None] = {}  # insertion-ordered set
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise SpellingError(f"{path}:{number}: not UTF-8 text ({err.reason})") from None
        fields = line.split()
        if not fields or fields[0].startswith(";;;"):
            continue
        word = normalize_text(_VARIANT.sub("", fields[0]))
        if len(word) >= 2 and _SPELLABLE.fullmatch(word):
            words[word] = None
    if not words:
        raise SpellingError(f"{path}: no word of two or more letters a-z")
    return list(words)


def spelt(word: str) -> str:
    """`melvin` -> "m e l v i n": the word as a sentence of letter words.

    >>> spelt("melvin")
    'm e l v i n'
    """
    return " ".join(word)
