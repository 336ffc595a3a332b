"""Scoring: WER and CER with jiwer, and the per-utterance error report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import jiwer

from asr.files import atomic_write_text


@dataclass
class UtteranceScore:
    audio_filepath: str
    reference: str
    hypothesis: str
    word_errors: int
    words: int
    char_errors: int
    chars: int


@dataclass
class Score:
    wer: float  # word error rate, 0..1 (can exceed 1 with many insertions)
    cer: float  # character error rate
    utterances: int
    word_errors: int
    words: int


def _errors(out) -> int:
    return out.substitutions + out.deletions + out.insertions


def score_utterance(path: str, reference: str, hypothesis: str) -> UtteranceScore:
    """Counts for one pair of normalised strings; an empty reference counts every inserted word."""
    ref_words, hyp_words = reference.split(), hypothesis.split()
    if ref_words:
        w_err = _errors(jiwer.process_words(reference, hypothesis or ""))
    else:
        w_err = len(hyp_words)
    if reference:
        c_err = _errors(jiwer.process_characters(reference, hypothesis or ""))
    else:
        c_err = len(hypothesis)
    return UtteranceScore(path, reference, hypothesis, w_err, len(ref_words), c_err, len(reference))


def score_corpus(scores: Sequence[UtteranceScore]) -> Score:
    words = sum(s.words for s in scores)
    chars = sum(s.chars for s in scores)
    w_err = sum(s.word_errors for s in scores)
    c_err = sum(s.char_errors for s in scores)
    return Score(
        wer=w_err / max(words, 1),
        cer=c_err / max(chars, 1),
        utterances=len(scores),
        word_errors=w_err,
        words=words,
    )


def write_report(
    out_dir: str | Path,
    name: str,
    scores: Sequence[UtteranceScore],
    score: Score,
    extra: dict | None = None,
) -> tuple[Path, Path]:
    """Write errs-<name>.txt (worst first) and summary-<name>.json; returns both paths."""
    out_dir = Path(out_dir)
    lines = [
        f"%WER {100 * score.wer:.2f} [ {score.word_errors} / {score.words} ]  "
        f"%CER {100 * score.cer:.2f}  utterances {score.utterances}",
        "",
    ]
    for s in sorted(scores, key=lambda s: (-s.word_errors, s.audio_filepath)):
        lines += [
            f"{s.audio_filepath}  word errors {s.word_errors}/{s.words}  "
            f"char errors {s.char_errors}/{s.chars}",
            f"  REF: {s.reference}",
            f"  HYP: {s.hypothesis}",
        ]
    report = out_dir / f"errs-{name}.txt"
    atomic_write_text(report, "\n".join(lines) + "\n")
    summary = out_dir / f"summary-{name}.json"
    atomic_write_text(summary, json.dumps({**asdict(score), **(extra or {})}, indent=2) + "\n")
    return report, summary
