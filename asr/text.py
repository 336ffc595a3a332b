"""Text: the one normaliser used by training and scoring, and the character tokenizer (on the
symbol-list shape it shares with the phone tokenizer, asr.tokenizers)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import TypeVar

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


_Tokenizer = TypeVar("_Tokenizer", bound="SymbolTokenizer")


class SymbolTokenizer:
    """The shape shared by tokenizers whose vocabulary is a list of symbols, one id each.

    Id 0 is the CTC blank. A subclass states only what differs: how a text splits into symbols
    (`split`) and joins back (`separator`), which symbols it allows, what its units are called
    in messages, and the keys of its checkpoint state (`kind`, `state_key`).
    """

    kind = ""  # the checkpoint state's "type"
    state_key = ""  # the checkpoint state's key for the symbol list
    unit_name = ""  # how the error of `encode` names the symbols
    separator = ""  # between symbols in `decode`, and in the error listing unknown ones
    invalid_units = ""  # the ValueError message for a symbol list `allowed` refuses

    def __init__(self, units: Iterable[str]):
        self.tokens: list[str] = [BLANK, *units]
        if len(set(self.tokens)) != len(self.tokens) or not all(map(self.allowed, self.tokens)):
            raise ValueError(self.invalid_units)
        self._ids = {s: i for i, s in enumerate(self.tokens)}

    @staticmethod
    def split(text: str) -> list[str]:
        """The symbols of `text`, in order."""
        raise NotImplementedError

    @staticmethod
    def allowed(symbol: str) -> bool:
        """Whether `symbol` may be a unit (duplicates are refused whatever this says)."""
        return True

    @classmethod
    def from_texts(cls: type[_Tokenizer], texts: Iterable[str]) -> _Tokenizer:
        """Vocabulary = every symbol of the (already normalised) texts, sorted."""
        symbols: set[str] = set()
        for text in texts:
            symbols.update(cls.split(text))
        return cls(sorted(symbols))

    @classmethod
    def from_state_dict(cls: type[_Tokenizer], state: dict) -> _Tokenizer:
        return cls(state[cls.state_key])

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def unknown(self, text: str) -> set[str]:
        """What of `text` the vocabulary lacks (the same for every tokenizer; asr.tokenizers)."""
        # the blank is never a target, even where a text spells its name
        return {s for s in self.split(text) if s not in self._ids or s == BLANK}

    def spell(self, word: str) -> list[str] | None:
        """The word's symbols, or None when one is not in the vocabulary."""
        return None if self.unknown(word) else self.split(word)

    def encode(self, text: str) -> list[int]:
        """Text -> ids; TokenizerError lists the symbols outside the vocabulary."""
        unknown = self.unknown(text)
        if unknown:
            listed = self.separator.join(sorted(unknown))
            raise TokenizerError(f"{self.unit_name} outside the vocabulary: {listed!r}")
        return [self._ids[s] for s in self.split(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids (already collapsed, blanks removed) -> text."""
        return self.separator.join(self.tokens[i] for i in ids if i != 0)

    def state_dict(self) -> dict:
        return {"type": self.kind, self.state_key: self.tokens[1:]}


class CharTokenizer(SymbolTokenizer):
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

    kind = "char"
    state_key = "chars"
    unit_name = "characters"
    separator = ""
    invalid_units = "tokenizer characters must be unique"

    @staticmethod
    def split(text: str) -> list[str]:
        return list(text)

    def unknown_chars(self, text: str) -> set[str]:
        """`unknown`, by the name it had before the phone tokenizer shared this shape."""
        return self.unknown(text)
