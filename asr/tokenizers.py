"""Output units: characters, phones or SentencePiece BPE, chosen by `data.units`.

Every tokenizer maps normalised text to ids and back with id 0 the CTC blank, lists its units in
`tokens` (id order), names what a text holds outside its vocabulary (`unknown`), spells a word
in its units for lexicon decoding (`spell`), and saves itself into the checkpoint
(`state_dict`; `tokenizer_from_state` rebuilds any of them).

- `char` (`CharTokenizer`): every character of the training text; the space is a unit.
- `phone` (`PhoneTokenizer`): space-separated tokens of the text, one unit each (phone
  recognition, e.g. TIMIT); a "word" is then a phone, so WER is the phone error rate. It and
  `char` are one shape (`SymbolTokenizer`) that differs only in how a text splits into units.
- `bpe` (`BpeTokenizer`): SentencePiece byte-pair encoding trained on the training text (or a
  given model file); words begin with the piece marker "▁", so spaces need no unit of their own.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, TypeVar

UNITS = ("char", "phone", "bpe")
BLANK = "<blank>"


class Tokenizer(Protocol):
    tokens: list[str]  # unit names in id order; tokens[0] is the blank

    @property
    def vocab_size(self) -> int: ...
    def unknown(self, text: str) -> set[str]: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def spell(self, word: str) -> list[str] | None: ...
    def state_dict(self) -> dict: ...


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
        """What of `text` the vocabulary lacks (every tokenizer of this module answers it)."""
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
    asr.tokenizers.TokenizerError: characters outside the vocabulary: 'abm'
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
        """The characters of `text` outside the vocabulary (the same as `unknown`)."""
        return self.unknown(text)


class PhoneTokenizer(SymbolTokenizer):
    """Space-separated tokens <-> ids; id 0 is the blank, there is no space unit.

    >>> tok = PhoneTokenizer.from_texts(["sil k ae t sil", "d ao g"])
    >>> tok.tokens
    ['<blank>', 'ae', 'ao', 'd', 'g', 'k', 'sil', 't']
    >>> tok.encode("k ae t")
    [5, 1, 7]
    >>> tok.decode([5, 0, 1, 7])
    'k ae t'
    >>> tok.encode("k ah t")
    Traceback (most recent call last):
    ...
    asr.tokenizers.TokenizerError: units outside the vocabulary: 'ah'
    """

    kind = "phone"
    state_key = "units"
    unit_name = "units"
    separator = " "
    invalid_units = "phone units must be unique, non-empty and without spaces"

    @staticmethod
    def split(text: str) -> list[str]:
        return text.split()

    @staticmethod
    def allowed(symbol: str) -> bool:
        return bool(symbol) and not any(c.isspace() for c in symbol)

    def spell(self, word: str) -> list[str] | None:
        """A "word" is one phone: spelt as itself, or None when it is not a unit."""
        return [word] if word in self._ids and word != BLANK else None


class BpeTokenizer:
    """SentencePiece pieces <-> ids; id 0 is the blank, piece i of the model is id i + 1.

    Texts with characters the model does not hold are refused (TokenizerError), never mapped to
    its unknown piece silently.
    """

    def __init__(self, model_proto: bytes):
        import sentencepiece

        self.model_proto = bytes(model_proto)
        self._sp = sentencepiece.SentencePieceProcessor(model_proto=self.model_proto)
        self._unk = self._sp.unk_id()
        pieces = [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]
        self.tokens: list[str] = [BLANK, *pieces]

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BpeTokenizer:
        """A BPE model of at most `vocab_size` pieces over the (normalised) texts."""
        try:
            import sentencepiece
        except ImportError:
            raise TokenizerError(
                "data.units=bpe needs sentencepiece: pip install 'rnn-asr[bpe]'"
            ) from None
        model = io.BytesIO()
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(list(texts)),
            model_writer=model,
            model_type="bpe",
            vocab_size=vocab_size,
            hard_vocab_limit=False,  # a small text may not have that many pieces to give
            character_coverage=1.0,  # every character of the training text stays a unit
            normalization_rule_name="identity",  # the text is normalised already
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            num_threads=1,  # the same pieces on every machine
            minloglevel=2,
        )
        return cls(model.getvalue())

    @classmethod
    def from_file(cls, path: str | Path) -> BpeTokenizer:
        try:
            proto = Path(path).read_bytes()
            return cls(proto)
        except OSError as err:
            raise TokenizerError(f"{path}: cannot read the SentencePiece model ({err})") from None
        except RuntimeError as err:
            raise TokenizerError(f"{path}: not a SentencePiece model ({err})") from None

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def unknown(self, text: str) -> set[str]:
        if self._unk not in self._sp.encode(text):
            return set()
        return {c for c in set(text) - {" "} if self._unk in self._sp.encode(c)}

    def encode(self, text: str) -> list[int]:
        ids = self._sp.encode(text)
        if self._unk in ids:
            chars = "".join(sorted(self.unknown(text)))
            raise TokenizerError(f"characters outside the vocabulary: {chars!r}")
        return [i + 1 for i in ids]

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([i - 1 for i in ids if i != 0 and i - 1 != self._unk])

    def spell(self, word: str) -> list[str] | None:
        ids = self._sp.encode(word)
        return None if self._unk in ids else [self._sp.id_to_piece(i) for i in ids]

    def state_dict(self) -> dict:
        return {"type": "bpe", "model": self.model_proto}


def build_tokenizer(
    units: str, texts: Iterable[str], bpe_vocab_size: int = 500, bpe_model: str = ""
) -> Tokenizer:
    """The tokenizer of `units` (char, phone, bpe), its vocabulary from the (normalised)
    training texts; for bpe, a model trained on them or read from `bpe_model`."""
    if units == "char":
        return CharTokenizer.from_texts(texts)
    if units == "phone":
        return PhoneTokenizer.from_texts(texts)
    if units == "bpe":
        if bpe_model:
            return BpeTokenizer.from_file(bpe_model)
        return BpeTokenizer.train(texts, bpe_vocab_size)
    raise ValueError(f"units must be one of {', '.join(UNITS)}, not {units!r}")


def tokenizer_from_state(state: dict) -> Tokenizer:
    """Rebuild the tokenizer a checkpoint saved (`state_dict()` of any of the three)."""
    kind = state.get("type")
    if kind == "char":
        return CharTokenizer.from_state_dict(state)
    if kind == "phone":
        return PhoneTokenizer.from_state_dict(state)
    if kind == "bpe":
        return BpeTokenizer(state["model"])
    raise ValueError(f"unknown tokenizer type {kind!r} in the checkpoint")
