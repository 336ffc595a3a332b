"""Text: the one normaliser used by training and scoring, and the character tokenizer."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

BLANK = "<blank>"
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


class TokenizerError(ValueError):
    """Text with characters the tokenizer does not know."""


class CharTokenizer:
    """Characters <-> ids; id 0 is the CTC blank, the space is an ordinary token.

    >>> tok = CharTokenizer.from_texts(["no", "yes no"])
    >>> tok.tokens
    ['<blank>', ' ', 'e', 'n', 'o', 's', 'y']
    >>> tok.encode("yes no")
    [6, 2, 5, 1, 3, 4]
    >>> tok.decode([0, 3, 4])  # blanks are dropped
    'no'
    >>> tok.encode("maybe")
    Traceback (most recent call last):
    ...
    asr.text.TokenizerError: characters outside the vocabulary: 'abm'
    """

    def __init__(self, chars: Iterable[str]):
        self.tokens: list[str] = [BLANK, *chars]
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("tokenizer characters must be unique")
        self._ids = {c: i for i, c in enumerate(self.tokens)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """Vocabulary = every character of the (already normalised) texts, sorted."""
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        return cls(sorted(chars))

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def unknown_chars(self, text: str) -> set[str]:
        return {c for c in text if c not in self._ids}

    def unknown(self, text: str) -> set[str]:
        """What of `text` the vocabulary lacks (the same for every tokenizer; asr.tokenizers)."""
        return self.unknown_chars(text)

    def spell(self, word: str) -> list[str] | None:
        """The word's characters, or None when one is not in the vocabulary."""
        return None if self.unknown_chars(word) else list(word)

    def encode(self, text: str) -> list[int]:
        """Text -> ids; TokenizerError lists the characters outside the vocabulary."""
        unknown = self.unknown_chars(text)
        if unknown:
            raise TokenizerError(f"characters outside the vocabulary: {''.join(sorted(unknown))!r}")
        return [self._ids[c] for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids (already collapsed, blanks removed) -> text."""
        return "".join(self.tokens[i] for i in ids if i != 0)

    def state_dict(self) -> dict:
        return {"type": "char", "chars": self.tokens[1:]}

    @classmethod
    def from_state_dict(cls, state: dict) -> CharTokenizer:
        return cls(state["chars"])
