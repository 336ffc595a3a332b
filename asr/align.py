"""Word timings: CTC forced alignment of a hypothesis to its log-probs, grouped into words."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torchaudio.functional import forced_align, merge_tokens


@dataclass
class WordTiming:
    word: str  # the word's characters
    start: float  # seconds, first frame of its first character
    end: float  # seconds, end of the last frame of its last character
    confidence: float  # in [0, 1], see word_timings


def word_timings(
    log_probs: torch.Tensor,
    token_ids: Sequence[int],
    space_id: int,
    frame_seconds: float,
    blank: int = 0,
    tokens: Sequence[str] | None = None,
) -> list[WordTiming]:
    """Align the hypothesis `token_ids` to `log_probs` (T, V) of one utterance; one entry per word.

    Words are split at `space_id`; leading, trailing and repeated spaces are ignored. The
    single spaces between words are aligned too, as the model emits them.
    A word's confidence is the geometric mean, over its characters, of each character's
    posterior at its best frame within its aligned span: exp(mean of those log-probs).
    The word text is "".join(tokens[i] ...) when `tokens` (id -> string) is given, else the
    ids as "<3><9><9>".
    Raises ValueError when the hypothesis cannot be aligned (fewer frames than it needs).

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
    # One span per target token, in order (repeats are split by the blank between them).
    spans = merge_tokens(path[0], torch.zeros(num_frames), blank=blank)

    timings, k = [], 0
    for word in words:
        word_spans = spans[k : k + len(word)]
        k += len(word) + 1  # and the space after it
        # Best frame, not mean over the span: CTC posteriors are peaky, so a character held
        # for several frames should not be penalised for its length; the geometric mean keeps
        # long words comparable to short ones while one doubtful character still pulls it down.
        best = [lp[s.start : s.end, s.token].max().item() for s in word_spans]
        text = (
            "".join(tokens[i] for i in word)
            if tokens is not None
            else "".join(f"<{i}>" for i in word)
        )
        timings.append(
            WordTiming(
                word=text,
                start=word_spans[0].start * frame_seconds,
                end=word_spans[-1].end * frame_seconds,  # TokenSpan.end is exclusive
                confidence=min(1.0, math.exp(sum(best) / len(best))),
            )
        )
    return timings


def _split_words(ids: list[int], space_id: int) -> list[list[int]]:
    """Ids -> words (lists of ids) at space ids, dropping empty words."""
    words: list[list[int]] = [[]]
    for i in ids:
        if i == space_id:
            words.append([])
        else:
            words[-1].append(i)
    return [w for w in words if w]
