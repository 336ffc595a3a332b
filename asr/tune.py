"""Decoder tuning: the LM weight and word bonus that give the lowest WER on a dev set.

`tune_decoder` grid-searches the LM weight and word-insertion bonus on a dev set (the model runs
once; only the search is repeated) and `store_settings` keeps the best values in the checkpoint,
keyed by the LM's sha256, so `asr transcribe --lm LM` uses them without further flags
(`asr.decoding.choose.make_decoder` reads them back).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from asr.checkpoint import load_checkpoint, save_checkpoint
from asr.data import Utterance
from asr.decoding import Decoder
from asr.decoding.beam import BeamConfig, BeamSearchDecoder
from asr.decoding.choose import LMChoice, decoder_words, tuned_settings
from asr.decoding.greedy import GreedyDecoder
from asr.metrics import score_corpus, score_utterance
from asr.progress import progress_bar
from asr.text import normalize_text
from asr.transcribe import Transcriber

DEFAULT_LM_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
DEFAULT_WORD_SCORES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0)


@dataclass
class DecoderSettings:
    """Beam-search values stored in a checkpoint under "decoder" by `asr tune-decoder`."""

    lm_sha256: str | None
    lexicon_words: int | None  # size of the lexicon tuned with (None: lexicon-free)
    lm_weight: float
    word_score: float
    beam_size: int
    dev_wer: float  # with these values
    greedy_dev_wer: float  # the same dev set, greedy decoding
    dev_manifest: str
    grid: list[dict] = field(default_factory=list)  # every (lm_weight, word_score, wer) tried


@dataclass
class TuneResult:
    settings: DecoderSettings
    failures: list[str]  # one line per dev file that could not be read


def tune_decoder(
    transcriber: Transcriber,
    utts: Sequence[Utterance],
    choice: LMChoice,
    lm_weights: Sequence[float] = DEFAULT_LM_WEIGHTS,
    word_scores: Sequence[float] = DEFAULT_WORD_SCORES,
    beam_size: int = BeamConfig.beam_size,
    progress: bool = False,
) -> TuneResult:
    """Grid search of (lm_weight, word_score) by dev WER; ties go to the smaller values."""
    refs = {u.key: normalize_text(u.text) for u in utts}
    batches, failures = [], []
    for batch in transcriber.log_prob_batches(utts):  # the model runs once
        failures += [err.message for err in batch.errors]
        if batch.names:
            batches.append(batch)
    if not batches:
        raise ValueError("no dev utterance could be read: nothing to tune on")
    if choice.lm is None:
        lm_weights = (0.0,)  # a lexicon alone: only the word bonus matters

    def wer_of(decoder: Decoder) -> float:
        scores = []
        for batch in batches:
            hyps = decoder.decode(batch.log_probs, batch.lengths)
            for name, found in zip(batch.names, hyps, strict=True):
                scores.append(score_utterance(name, refs[name], found[0].text if found else ""))
        return score_corpus(scores).wer

    greedy = wer_of(GreedyDecoder(transcriber.tokenizer))
    words = decoder_words(transcriber.tokenizer, choice)
    grid = []
    pairs = [(w, s) for w in lm_weights for s in word_scores]
    for w, s in progress_bar(pairs, desc="tune", disable=not progress, leave=False):
        cfg = BeamConfig(beam_size=beam_size, lm_weight=w, word_score=s)
        wer = wer_of(BeamSearchDecoder(transcriber.tokenizer, cfg, words=words, lm=choice.lm))
        grid.append({"lm_weight": w, "word_score": s, "wer": wer})
    best = min(grid, key=lambda g: (round(g["wer"], 9), abs(g["lm_weight"]), abs(g["word_score"])))
    settings = DecoderSettings(
        lm_sha256=choice.lm_sha256,
        lexicon_words=len(words) if words is not None else None,
        lm_weight=best["lm_weight"],
        word_score=best["word_score"],
        beam_size=beam_size,
        dev_wer=best["wer"],
        greedy_dev_wer=greedy,
        dev_manifest="",
        grid=grid,
    )
    return TuneResult(settings, failures)


def store_settings(checkpoint: str | Path, settings: DecoderSettings) -> None:
    """Add `settings` to the checkpoint's tuned values (atomically), replacing those of the
    same LM; the values of other LMs stay, so that each LM decodes with its own."""
    state = load_checkpoint(checkpoint)
    kept = [t for t in tuned_settings(state) if t.get("lm_sha256") != settings.lm_sha256]
    state["decoders"] = [*kept, asdict(settings)]
    state.pop("decoder", None)
    state.pop("version", None)
    save_checkpoint(checkpoint, state)
