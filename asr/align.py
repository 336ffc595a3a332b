"""Word timings from a CTC frame path: the decoder's own path (greedy or beam search), or the
forced alignment of a given hypothesis to its log-probs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torchaudio.functional import forced_align


@dataclass
class WordTiming:
    word: str  # the word's characters
    start: float  # seconds, first frame of its first character
    end: float  # seconds, end of the last frame of its last character
    confidence: float  # in [0, 1], see path_word_timings


def path_word_timings(
    log_probs: torch.Tensor,
    path: Sequence[int] | torch.Tensor,
    space_id: int,
    frame_seconds: float,
    blank: int = 0,
    tokens: Sequence[str] | None = None,
) -> list[WordTiming]:
    """The words a CTC frame path emits, timed where the path emits them.

    `log_probs` (T, V) of one utterance; `path` (T,): the unit each frame is read as (the
    greedy argmax, or a beam search's best path). Consecutive frames of one unit are one
    emission; a blank frame separates two emissions of the same unit. Words are the runs of
    emissions between emissions of `space_id`, so leading, trailing and repeated spaces make no
    empty words. A word spans from the first frame of its first unit to the end of the last
    frame of its last unit. Its confidence is the geometric mean, over its units, of each
    unit's best posterior among the frames that emitted it: exp(mean of those log-probs).
    The word text is "".join(tokens[i] ...) when `tokens` (id -> string) is given, else the
    ids as "<3><9><9>".

    >>> lp = torch.tensor([[.1, .9, 0], [.1, .8, 0], [.2, 0, .8], [.1, .9, 0]]).log()
    >>> words = path_word_timings(lp, [1, 1, 2, 1], 2, frame_seconds=0.5, tokens=["", "a", " "])
    >>> [(w.word, w.start, w.end, round(w.confidence, 3)) for w in words]
    [('a', 0.0, 1.0, 0.9), ('a', 1.5, 2.0, 0.9)]
    """
    if log_probs.dim() != 2:
        raise ValueError(
            f"log_probs must be (T, V) for one utterance, got {tuple(log_probs.shape)}"
        )
    path = [int(i) for i in path]
    if len(path) != log_probs.shape[0]:
        raise ValueError(f"path has {len(path)} frames, log_probs {log_probs.shape[0]}")
    # float32: a bfloat16 posterior is too coarse for a confidence
    lp = log_probs.detach().to("cpu", torch.float32)
    timings = []
    for word in _words(_emissions(path, blank), space_id):
        # Best frame, not mean over the emission: CTC posteriors are peaky, so a unit held for
        # several frames is not penalised for its length; the geometric mean keeps long words
        # comparable to short ones while one doubtful unit still pulls the word down.
        best = [lp[start:end, unit].max().item() for unit, start, end in word]
        units = [unit for unit, _, _ in word]
        text = (
            "".join(tokens[i] for i in units)
            if tokens is not None
            else "".join(f"<{i}>" for i in units)
        )
        timings.append(
            WordTiming(
                word=text,
                start=word[0][1] * frame_seconds,
                end=word[-1][2] * frame_seconds,
                confidence=min(1.0, math.exp(sum(best) / len(best))),
            )
        )
    return timings


def word_timings(
    log_probs: torch.Tensor,
    token_ids: Sequence[int],
    space_id: int,
    frame_seconds: float,
    blank: int = 0,
    tokens: Sequence[str] | None = None,
) -> list[WordTiming]:
    """Force-align the hypothesis `token_ids` to `log_probs` (T, V) of one utterance; one entry
    per word, timed on the aligned path as in `path_word_timings`.

    For a transcript the decoder did not produce (a reference, say): the words of a decoder's
    output are timed on the decoder's own path. Leading, trailing and repeated spaces in
    `token_ids` are ignored; the single spaces between words are aligned too, as the model
    emits them. Raises ValueError when the hypothesis cannot be aligned (fewer frames than it
    needs).

    >>> lp = torch.tensor([[.1, .9, 0], [.9, .1, 0], [.1, 0, .9], [.1, .9, 0]]).log()
    >>> words = word_timings(lp, [1, 2, 1], space_id=2, frame_seconds=0.5, tokens=["", "a", " "])
    >>> [(w.word, w.start, w.end, round(w.confidence, 3)) for w in words]
    [('a', 0.0, 0.5, 0.9), ('a', 1.5, 2.0, 0.9)]
    """
    if log_probs.dim() != 2:
        raise ValueError(
            f"log_probs must be (T, V) for one utterance, got {tuple(log_probs.shape)}"
        )
    words = _split_words([int(i) for i in token_ids], space_id)
    if not words:
        return []
    targets = [*words[0]]
    for word in words[1:]:
        targets += [space_id, *word]
    num_frames, vocab = log_probs.shape
    bad = {i for i in targets if not 0 <= i < vocab or i == blank}
    if bad:
        raise ValueError(
            f"token ids {sorted(bad)} are the blank or outside the vocabulary ({vocab})"
        )
    repeats = sum(a == b for a, b in pairwise(targets))
    if num_frames < len(targets) + repeats:
        raise ValueError(
            f"cannot align {len(targets)} tokens ({repeats} repeats) to {num_frames} frames: "
            "CTC needs at least one frame per token plus one blank between repeats"
        )
    # CPU float32: forced_align has no bfloat16 kernel and half would blur close path scores;
    # one utterance is cheap on CPU.
    lp = log_probs.detach().to("cpu", torch.float32)
    path, _ = forced_align(lp[None], torch.tensor([targets], dtype=torch.int32), blank=blank)
    return path_word_timings(lp, path[0], space_id, frame_seconds, blank, tokens)


def _emissions(path: list[int], blank: int) -> list[tuple[int, int, int]]:
    """Frame path -> (unit, first frame, end frame (exclusive)) per emission, blanks dropped."""
    out: list[tuple[int, int, int]] = []
    for t, unit in enumerate(path):
        if unit == blank:
            continue
        if out and out[-1][0] == unit and out[-1][2] == t:  # the same emission goes on
            out[-1] = (unit, out[-1][1], t + 1)
        else:
            out.append((unit, t, t + 1))
    return out


def _words(
    emissions: list[tuple[int, int, int]], space_id: int
) -> list[list[tuple[int, int, int]]]:
    """Emissions -> words (lists of emissions) at emissions of `space_id`, no empty words."""
    words: list[list[tuple[int, int, int]]] = [[]]
    for emission in emissions:
        if emission[0] == space_id:
            words.append([])
        else:
            words[-1].append(emission)
    return [w for w in words if w]


def _split_words(ids: list[int], space_id: int) -> list[list[int]]:
    """Ids -> words (lists of ids) at space ids, dropping empty words."""
    words: list[list[int]] = [[]]
    for i in ids:
        if i == space_id:
            words.append([])
        else:
            words[-1].append(i)
    return [w for w in words if w]
