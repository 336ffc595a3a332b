"""Evaluation: transcribe a manifest and score it against its references.

`evaluate_utterances` scores what a `Transcriber` (any decoder) makes of the utterances;
`evaluate_greedy` scores a model with greedy decoding, as training's validation does, and
imports neither the beam search nor the LM code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from asr.data import Utterance
from asr.decoding.greedy import GreedyDecoder
from asr.inference import TorchRunner, log_prob_batches
from asr.metrics import Score, UtteranceScore, score_corpus, score_utterance
from asr.model import Recogniser
from asr.progress import progress_bar
from asr.text import normalize_text
from asr.tokenizers import Tokenizer

if TYPE_CHECKING:  # the transcriber brings the beam search; greedy evaluation does not need it
    from asr.transcribe import Transcriber


@dataclass
class Evaluation:
    score: Score
    utterances: list[UtteranceScore]
    failures: list[str]  # one line per file that could not be transcribed
    seconds: float  # wall time of the whole evaluation


def evaluate_utterances(
    transcriber: Transcriber, utts: Sequence[Utterance], progress: bool = False
) -> Evaluation:
    """WER/CER over `utts`; unreadable files are listed in `failures`, not scored."""
    start = time.perf_counter()
    results = progress_bar(
        transcriber.transcribe_files(utts),
        total=len(utts),
        desc="evaluate",
        disable=not progress,
        leave=False,
    )
    texts, failures = [], []
    for r in results:
        if r.error is not None:
            failures.append(r.error)
        else:
            texts.append((r.path, r.text))
    return _scored(utts, texts, failures, start)


def evaluate_greedy(
    model: Recogniser,
    tokenizer: Tokenizer,
    utts: Sequence[Utterance],
    device: torch.device | str = "cpu",
    precision: str = "auto",
    batch_seconds: float = 200.0,
) -> Evaluation:
    """WER/CER over `utts` with greedy decoding: the transcripts of a `Transcriber` without a
    decoder, from length-sorted batches of at most `batch_seconds` of audio. The model is left
    in eval mode on `device`. Unreadable files are listed in `failures` (in the order of
    `utts`), not scored."""
    start = time.perf_counter()
    runner, decoder = TorchRunner(model, device, precision), GreedyDecoder(tokenizer)
    texts, failures = [], []
    for batch in log_prob_batches(runner, utts, batch_seconds):
        failures += [(err.index, err.message) for err in batch.errors]
        if batch.names:
            hyps = decoder.decode(batch.log_probs, batch.lengths)
            texts += [(name, best.text) for name, (best,) in zip(batch.names, hyps, strict=True)]
    return _scored(utts, texts, [message for _, message in sorted(failures)], start)


def _scored(
    utts: Sequence[Utterance], texts: list[tuple[str, str]], failures: list[str], start: float
) -> Evaluation:
    """Score (name, text) pairs against the references of `utts`."""
    refs = {u.key: normalize_text(u.text) for u in utts}
    scores = [score_utterance(name, refs[name], normalize_text(text)) for name, text in texts]
    scores.sort(key=lambda s: s.audio_filepath)
    return Evaluation(score_corpus(scores), scores, failures, time.perf_counter() - start)
