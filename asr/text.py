"""Text normalisation: the one normaliser of training, LM text and scoring.

The tokenizers live in `asr.tokenizers`; their names stay importable from here."""

from __future__ import annotations

import re
import unicodedata

from asr.tokenizers import BLANK, CharTokenizer, SymbolTokenizer, TokenizerError

__all__ = ["BLANK", "CharTokenizer", "SymbolTokenizer", "TokenizerError", "normalize_text"]

_SPACES = re.compile(r"\s+")
_NOT_KEPT_ASCII = re.compile(r"[^a-z0-9' ]+")  # what normalize_text drops of lower-cased ASCII
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})  # curly apostrophes -> '
# Zero-width non-joiner / joiner: part of the spelling in Persian, Hindi, Malayalam, ...
_JOINERS = frozenset("\u200c\u200d")


def normalize_text(text: str) -> str:
    """NFKC, lower-case, punctuation and symbols (all but apostrophes) to spaces, single
    spaces, stripped: the one normaliser of training, LM text and scoring.

    Letters and numbers of every script are kept, and so are combining marks (Unicode
    categories Mn, Mc, Me: Devanagari vowel signs and virama, Arabic harakat, Hebrew points)
    and the zero-width (non-)joiners when they follow a kept character; a mark left with no
    letter before it (after punctuation that became a space) is dropped. Lower-casing is
    Python's, the same for every language: right for German ("ß" stays, "ẞ" -> "ß"), Greek
    (final sigma) and most others, wrong for Turkish and Azerbaijani dotted and dotless i,
    whose text must be lower-cased with the language's rules before it gets here
    (data_prep/commonvoice.py). Normalised text passes through unchanged:
    normalize_text(normalize_text(t)) == normalize_text(t).

    >>> normalize_text("  Hello, World!  It's  4PM. ")
    "hello world it's 4pm"
    >>> normalize_text("Die STRAẞE, bitte!")
    'die straße bitte'
    >>> normalize_text("हिन्दी, भाषा।") == "हिन्दी भाषा"  # vowel signs and virama kept
    True
    >>> normalize_text("ısı ılık")  # Turkish, lower-cased at prepare time: unchanged
    'ısı ılık'
    """
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES)
    if text.isascii():  # the common case, 3x faster: no marks, nothing to compose
        return _SPACES.sub(" ", _NOT_KEPT_ASCII.sub(" ", text)).strip()
    kept: list[str] = []
    for char in text:
        group = unicodedata.category(char)[0]
        if group in "LN" or char == "'":
            kept.append(char)
        elif (group == "M" or char in _JOINERS) and kept and kept[-1] != " ":
            kept.append(char)  # attached to the letter before it
        else:
            kept.append(" ")  # punctuation, symbols, separators, "_", stray marks
    # Lower-casing can leave a sequence NFKC composes ("T\u0308" -> "t\u0308", which is "ẗ"):
    # compose once more, so that a second pass changes nothing.
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", "".join(kept))).strip()
