"""Evaluation: transcribe a manifest and score it against its references."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from asr.data import Utterance
from asr.metrics import Score, UtteranceScore, score_corpus, score_utterance
from asr.progress import progress_bar
from asr.text import normalize_text
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
    refs = {u.key: normalize_text(u.text) for u in utts}
    scores, failures = [], []
    results = transcriber.transcribe_files(utts)
    for r in progress_bar(
        results, total=len(utts), desc="evaluate", disable=not progress, leave=False
    ):
        if r.error is not None:
            failures.append(r.error)
        else:
            scores.append(score_utterance(r.path, refs[r.path], normalize_text(r.text)))
    scores.sort(key=lambda s: s.audio_filepath)
    return Evaluation(score_corpus(scores), scores, failures, time.perf_counter() - start)
