"""CTC beam search through torchaudio's flashlight-text decoder, with an optional n-gram LM.

Two modes:
- lexicon-constrained: only words of a lexicon (word list) are output; a word n-gram LM
  (ARPA or KenLM binary) scores them. Works without an LM too (the lexicon alone constrains).
- lexicon-free: any character string; needs a character n-gram LM (`asr lm build --unit char`).
  Without an LM, flashlight's lexicon-free search merges prefixes and returns the greedy answer,
  so that combination is refused rather than presented as beam search.

Scores: the acoustic model gives natural-log probabilities, while flashlight adds the KenLM
scores in log10: `lm_weight` multiplies those log10 scores (pyctcdecode's alpha = lm_weight /
ln 10). `word_score` is added once per word (the word insertion bonus).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import torch

from asr.decoding import Hypothesis
from asr.text import normalize_text
from asr.tokenizers import CharTokenizer, PhoneTokenizer, Tokenizer

SEPARATOR = "|"  # flashlight's name for our space token (the word separator)
BLANK_NAME = "<blank>"


class DecoderError(ValueError):
    """A lexicon or LM that cannot be used; the message names the file and the cause."""


@dataclass
class BeamConfig:
    beam_size: int = 32  # hypotheses kept per frame
    beam_size_token: int | None = None  # tokens considered per frame (None = all)
    beam_threshold: float = 10.0  # prune hypotheses this far below the best (pyctcdecode: 10)
    lm_weight: float = 0.5  # weight of the LM's log10 scores
    word_score: float = 0.0  # added per word: > 0 favours more words, < 0 fewer
    unk_score: float = -math.inf  # score of a word outside the lexicon (-inf: never)
    nbest: int = 1  # hypotheses returned per utterance


def read_word_list(path: str | Path) -> list[str]:
    """Words of a lexicon or word-list file: the first column of each line, normalised."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DecoderError(f"{path}: no such lexicon file") from None
    except (UnicodeDecodeError, IsADirectoryError) as err:
        raise DecoderError(f"{path}: not a UTF-8 text lexicon ({err})") from None
    words = {normalize_text(line.split()[0]) for line in lines if line.strip()}
    words.discard("")
    if not words:
        raise DecoderError(f"{path}: lexicon has no words")
    return sorted(words)


def write_lexicon(words: Sequence[str], tokenizer: Tokenizer, path: Path) -> list[str]:
    """Write flashlight's lexicon (word, its spelling in the model's units); returns the words
    left out: those the units cannot spell, or with a space.

    With character units a spelling ends with the separator (the space unit): flashlight
    completes a word when it reads one (without it, words run together: "seven" + "one" from
    the frames of "seven"). BPE pieces mark a word's start themselves, so a word is spelt both
    without and with a final separator, which the decoder reads at blank frames: flashlight's
    CTC search cannot repeat a word's last unit over frames once the word is complete, and the
    second spelling lets those repeats come before the separator completes it.
    """
    chars = isinstance(tokenizer, CharTokenizer)
    kept, dropped = [], []
    for word in words:
        spelling = None if " " in word else tokenizer.spell(word)
        if spelling is None:
            dropped.append(word)
        elif chars:
            kept.append(f"{word}\t{' '.join(spelling)} {SEPARATOR}")
        else:
            kept.append(f"{word}\t{' '.join(spelling)}")
            kept.append(f"{word}\t{' '.join(spelling)} {SEPARATOR}")
    if not kept:
        raise DecoderError(f"{path}: none of the lexicon's words can be spelt by the model")
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return dropped


class BeamSearchDecoder:
    """Batched CTC beam search (an `asr.decoding.Decoder`); `decode` takes the model's log-probs.

    One frame per character, acoustically "onw two" (greedy's answer), but "e" was a close
    second to "w": a lexicon of "one" and "two" turns it into the word.

    >>> tok = CharTokenizer(" enotw")  # ids: blank 0, space 1, e 2, n 3, o 4, t 5, w 6
    >>> ids = tok.encode("onw two")
    >>> log_probs = torch.full((1, len(ids), tok.vocab_size), -10.0)  # (B, T, V)
    >>> log_probs[0, torch.arange(len(ids)), ids] = 0.0
    >>> log_probs[0, 2, tok.encode("e")[0]] = -1.0
    >>> dec = BeamSearchDecoder(tok, BeamConfig(beam_size=8), words=["one", "two"])
    >>> dec.decode(log_probs, torch.tensor([len(ids)]))[0][0].text
    'one two'
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        cfg: BeamConfig,
        words: Sequence[str] | None = None,
        lm: str | Path | None = None,
    ):
        from torchaudio.models.decoder import ctc_decoder

        if words is None and lm is None:
            raise DecoderError(
                "beam search needs a lexicon or a language model: without either, the "
                "lexicon-free search returns the greedy answer (use greedy decoding)"
            )
        if words is not None and isinstance(tokenizer, PhoneTokenizer):
            # Every phone is a "word" spelt by one unit, and flashlight's lexicon search cannot
            # repeat a one-unit word's unit over frames: decode lexicon-free over the units.
            raise DecoderError(
                "a phone model's units are its words: decode with a phone n-gram LM alone "
                "(an LM built on the phone transcripts), without a lexicon"
            )
        if lm is not None and not Path(lm).is_file():
            raise DecoderError(f"{lm}: no such language model file")
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.lexicon_free = words is None
        # Lexicon spellings end with the separator (BPE: one of a word's two spellings), which
        # our models emit only between words: decode() then appends a separator frame to
        # complete the last word. BPE models have no separator unit: it takes the blank's score.
        self._ends_with_separator = not self.lexicon_free
        self._separator_from_blank = not self.lexicon_free and not isinstance(
            tokenizer, CharTokenizer
        )
        self.dropped_words: list[str] = []
        names = [BLANK_NAME, *(SEPARATOR if t == " " else t for t in tokenizer.tokens[1:])]
        # A model trained on single words, and BPE and phone models, have no space unit;
        # flashlight still needs a separator: an extra token the model never emits (only in the
        # frame `_append_separator` adds, for characters).
        self._extra_separator = " " not in tokenizer.tokens
        if self._extra_separator:
            names.append(SEPARATOR)
        self._separator = names.index(SEPARATOR)
        with tempfile.TemporaryDirectory() as tmp:
            lexicon = lm_dict = None
            if words is not None:
                lexicon = Path(tmp) / "lexicon.txt"
                self.dropped_words = write_lexicon(words, tokenizer, lexicon)
            elif lm is not None:
                # The LM's words are our tokens, listed in id order: torchaudio's own mapping
                # for lexicon-free decoding reorders them, so the LM would score wrong tokens.
                lm_dict = Path(tmp) / "lm_tokens.txt"
                lm_dict.write_text("\n".join([*names, "<unk>"]) + "\n", encoding="utf-8")
            try:
                self._decoder = ctc_decoder(
                    lexicon=str(lexicon) if lexicon else None,
                    tokens=names,
                    lm=str(lm) if lm is not None else None,
                    lm_dict=str(lm_dict) if lm_dict else None,
                    nbest=cfg.nbest,
                    beam_size=cfg.beam_size,
                    beam_size_token=cfg.beam_size_token,
                    beam_threshold=cfg.beam_threshold,
                    lm_weight=cfg.lm_weight if lm is not None else 0.0,
                    word_score=cfg.word_score,
                    unk_score=cfg.unk_score,
                    sil_score=0.0,
                    blank_token=BLANK_NAME,
                    sil_token=SEPARATOR,
                )
            except RuntimeError as err:  # KenLM's own message for a bad file
                # KenLM puts its source location first and the reason on the last line.
                cause = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
                raise DecoderError(f"{lm}: not a usable KenLM/ARPA model ({cause})") from None

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        """(B, T, V) log-probs and (B,) lengths -> per utterance, the n best hypotheses."""
        emissions = log_probs.detach().float().cpu()
        lengths = lengths.cpu().to(torch.int32)
        if self._extra_separator:  # (B, T, V) -> (B, T, V + 1)
            if self._separator_from_blank:  # read at blank frames
                separator = emissions[:, :, :1]
            else:  # never emitted
                separator = emissions.new_full((*emissions.shape[:2], 1), -1e4)
            emissions = torch.cat([emissions, separator], -1)
        if self._ends_with_separator:
            emissions, lengths = self._append_separator(emissions, lengths)
        emissions = emissions.contiguous()
        hyps = []
        for b in range(emissions.shape[0]):
            # flashlight's own results carry the frame path, which torchaudio's hypotheses
            # reduce to token start frames: (B, T, V) row b by address, as torchaudio does.
            address = emissions.data_ptr() + emissions.element_size() * b * emissions.stride(0)
            results = self._decoder.decoder.decode(address, int(lengths[b]), emissions.shape[2])
            n = int(lengths[b]) - int(self._ends_with_separator)  # the model's own frames
            found = [self._hypothesis(r, n) for r in results[: self.cfg.nbest]]
            hyps.append(self._distinct(found))
        return hyps

    def _append_separator(
        self, emissions: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, V) -> (B, T + 1, V) with a certain separator frame after each utterance.

        Lexicon spellings end with the separator (flashlight completes a word there), but our
        models emit spaces only between words: this frame completes the last word at no cost.
        """
        b, _, v = emissions.shape
        out = torch.cat([emissions, emissions.new_full((b, 1, v), -1e4)], dim=1)
        out[torch.arange(b), lengths.long()] = -1e4
        out[torch.arange(b), lengths.long(), self._separator] = 0.0
        return out, lengths + 1

    @staticmethod
    def _distinct(hyps: list[Hypothesis]) -> list[Hypothesis]:
        """Keep the best-scoring hypothesis of each text (n-best lists repeat texts that differ
        only in alignment)."""
        seen: set[str] = set()
        out = []
        for h in hyps:
            if h.text not in seen:
                seen.add(h.text)
                out.append(h)
        return out

    def _hypothesis(self, result, num_frames: int) -> Hypothesis:
        """flashlight's result -> Hypothesis. Its `tokens` hold one unit per frame between a
        start and an end entry (both the separator): (T + 2,)."""
        frames = list(result.tokens)
        # Our ids for our units (same order); the extra separator, read at blank frames or
        # never emitted by the model, is a blank to the model.
        vocab = self.tokenizer.vocab_size
        path = [i if i < vocab else 0 for i in frames[1 : 1 + num_frames]]
        if self.lexicon_free:
            ids = [i for i, _ in groupby(frames) if 0 < i < vocab]
            text = self.tokenizer.decode(ids)
        else:
            text = " ".join(self._decoder.word_dict.get_entry(w) for w in result.words if w >= 0)
        text = " ".join(text.split())
        return Hypothesis(text, self.tokenizer.encode(text), float(result.score), path)
