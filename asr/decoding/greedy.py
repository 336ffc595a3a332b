"""Greedy CTC decoding: the best path (each frame's most likely unit), repeats collapsed and
blanks dropped. Batched; imports neither the beam search nor the LM code, so training's
validation can use it alone."""

from __future__ import annotations

import torch

from asr.decoding import Hypothesis
from asr.tokenizers import Tokenizer


def ctc_greedy_decode(
    log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0
) -> list[list[int]]:
    """(B, T, V) log-probs and (B,) lengths -> B lists of token ids.

    >>> lp = torch.log(torch.tensor([[[.1, .9, 0], [.1, .9, 0], [.9, .1, 0], [.1, .9, 0]]]))
    >>> ctc_greedy_decode(lp, torch.tensor([4]))
    [[1, 1]]
    """
    return collapse_paths(log_probs.argmax(dim=-1), lengths, blank)


def collapse_paths(paths: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """(B, T) frame paths and (B,) lengths -> B lists of token ids: within each length, runs of
    one unit become one token and blanks are dropped.

    >>> collapse_paths(torch.tensor([[1, 1, 0, 1, 2, 2], [2, 0, 0, 2, 1, 1]]), torch.tensor([6, 4]))
    [[1, 1, 2], [2, 2]]
    """
    valid = _valid_frames(lengths, paths)
    changed = torch.ones_like(valid)
    changed[:, 1:] = paths[:, 1:] != paths[:, :-1]
    keep = (valid & changed & (paths != blank)).cpu()
    paths = paths.cpu()
    return [paths[b][keep[b]].tolist() for b in range(paths.shape[0])]


def _valid_frames(lengths: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
    """(B,) lengths, (B, T) paths -> (B, T) bool: the frames within each length."""
    frames = torch.arange(paths.shape[1], device=paths.device)
    return frames[None, :] < lengths.to(paths.device)[:, None]


class GreedyDecoder:
    """Greedy CTC decoding behind the `asr.decoding.Decoder` interface: one hypothesis per
    utterance, its text normalised to single spaces, its path each frame's best unit.

    >>> from asr.tokenizers import CharTokenizer
    >>> tok = CharTokenizer(" ab")  # ids: blank 0, space 1, a 2, b 3
    >>> lp = torch.full((1, 6, 4), -5.0)  # (B, T, V)
    >>> lp[0, torch.arange(6), torch.tensor([1, 2, 2, 0, 1, 3])] = 0.0
    >>> (hyp,) = GreedyDecoder(tok).decode(lp, torch.tensor([6]))[0]
    >>> hyp.text, hyp.token_ids, hyp.path
    ('a b', [2, 1, 3], [1, 2, 2, 0, 1, 3])
    """

    def __init__(self, tokenizer: Tokenizer, blank: int = 0):
        self.tokenizer = tokenizer
        self.blank = blank
        self._space = tokenizer.tokens.index(" ") if " " in tokenizer.tokens else None

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        """(B, T, V) log-probs and (B,) lengths -> per utterance, a list of one hypothesis."""
        paths = log_probs.argmax(dim=-1)  # (B, T): each frame's best unit
        best = log_probs.gather(-1, paths[..., None]).squeeze(-1)  # (B, T): its log-prob
        best = torch.where(_valid_frames(lengths, paths), best.float(), 0.0)
        scores = best.sum(dim=1).tolist()  # (B,) each path's log-prob
        ids = collapse_paths(paths, lengths, self.blank)
        paths = paths.cpu()
        out = []
        for b, units in enumerate(ids):
            # Spaces are units too: leading, trailing and doubled ones are dropped from the text.
            text = " ".join(self.tokenizer.decode(units).split())
            path = paths[b, : int(lengths[b])].tolist()
            out.append([Hypothesis(text, self._single_spaced(units), scores[b], path)])
        return out

    def _single_spaced(self, ids: list[int]) -> list[int]:
        """`ids` without leading, trailing or repeated space units: the ids of the text."""
        out: list[int] = []
        for i in ids:
            if i != self._space or (out and out[-1] != self._space):
                out.append(i)
        if out and out[-1] == self._space:
            out.pop()
        return out
