"""Scoring: WER and CER with jiwer, and the per-utterance error report."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
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


def frequent_errors(scores: Sequence[UtteranceScore], n: int = 10) -> list[tuple[str, int]]:
    """The n commonest word errors, as ("ref -> hyp", count); deletions and insertions show
    `*` for the missing side.

    >>> s = [score_utterance("a.wav", "one two three", "one too three four")]
    >>> frequent_errors(s)
    [('two -> too', 1), ('* -> four', 1)]
    """
    counts: Counter[str] = Counter()
    for s in scores:
        if not s.reference.split():
            counts.update(f"* -> {w}" for w in s.hypothesis.split())
            continue
        out = jiwer.process_words(s.reference, s.hypothesis or "")
        ref, hyp = out.references[0], out.hypotheses[0]
        for chunk in out.alignments[0]:
            refs = ref[chunk.ref_start_idx : chunk.ref_end_idx]
            hyps = hyp[chunk.hyp_start_idx : chunk.hyp_end_idx]
            if chunk.type == "substitute":
                counts.update(f"{r} -> {h}" for r, h in zip(refs, hyps, strict=True))
            elif chunk.type == "delete":
                counts.update(f"{r} -> *" for r in refs)
            elif chunk.type == "insert":
                counts.update(f"* -> {h}" for h in hyps)
    return counts.most_common(n)


def scores_by_folder(scores: Sequence[UtteranceScore]) -> dict[str, Score]:
    """Corpus scores per parent folder of the audio files: the speaker, in corpora laid out
    as <speaker>/<utterance> (AN4, LibriSpeech, TIMIT)."""
    groups: dict[str, list[UtteranceScore]] = defaultdict(list)
    for s in scores:
        groups[Path(s.audio_filepath).parent.name].append(s)
    return {name: score_corpus(group) for name, group in sorted(groups.items())}


def write_report(
    out_dir: str | Path,
    name: str,
    scores: Sequence[UtteranceScore],
    score: Score,
    extra: dict | None = None,
) -> tuple[Path, Path]:
    """Write errs-<name>.txt and summary-<name>.json; returns both paths.

    Both give the commonest word errors and, when the audio lies in more than one folder,
    the WER per folder (per speaker in most corpora); the report then lists every utterance,
    worst first."""
    out_dir = Path(out_dir)
    lines = [
        f"%WER {100 * score.wer:.2f} [ {score.word_errors} / {score.words} ]  "
        f"%CER {100 * score.cer:.2f}  utterances {score.utterances}",
        "",
    ]
    common = frequent_errors(scores)
    if common:
        lines += ["Most frequent word errors (reference -> hypothesis, * = none):"]
        lines += [f"  {count:4d}  {error}" for error, count in common] + [""]
    folders = scores_by_folder(scores)
    if len(folders) > 1:
        lines += ["WER per folder (speaker):"]
        lines += [
            f"  {name:<16} {100 * f.wer:6.2f}%  [ {f.word_errors} / {f.words} ]"
            for name, f in folders.items()
        ] + [""]
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
    details = {"frequent_errors": [[error, count] for error, count in common]}
    if len(folders) > 1:
        details["per_folder"] = {name: asdict(f) for name, f in folders.items()}
    atomic_write_text(
        summary, json.dumps({**asdict(score), **details, **(extra or {})}, indent=2) + "\n"
    )
    return report, summary
