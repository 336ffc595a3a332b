"""Decoder settings: choose a beam-search decoder from options and the values tuned on dev.

`tune_decoder` grid-searches the LM weight and word-insertion bonus on a dev set (the model runs
once; only the search is repeated) and `store_settings` keeps the best values in the checkpoint,
keyed by the LM's sha256, so `asr transcribe --lm LM` uses them without further flags.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from asr.beam import BeamConfig, BeamSearchDecoder, DecoderError, read_word_list
from asr.checkpoint import load_checkpoint, save_checkpoint
from asr.data import Utterance
from asr.metrics import score_corpus, score_utterance
from asr.text import CharTokenizer, normalize_text
from asr.transcribe import FileResult, Transcriber

DEFAULT_LM_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
DEFAULT_WORD_SCORES = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0)


@dataclass
class LMChoice:
    """What the decoder reads: an n-gram file and/or a lexicon (word list)."""

    lm: Path | None  # ARPA or KenLM binary; word-level with a lexicon, character-level without
    lexicon: Path | None
    lm_sha256: str | None  # identifies the LM whose tuned values apply


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


def resolve_lm(lm: str | Path | None, lexicon: str | Path | None) -> LMChoice:
    """An LM folder from `asr lm build` (its binary and lexicon), or an LM file and/or lexicon."""
    from asr.lm import load_lm_files
    from asr.files import file_sha256

    lexicon_path = Path(lexicon) if lexicon is not None else None
    if lm is None:
        return LMChoice(None, lexicon_path, None)
    path = Path(lm)
    if path.is_dir():
        # `asr lm build` recorded the binary's sha256: no need to hash a large file again.
        files = load_lm_files(path)
        recorded = json.loads((path / "lm.json").read_text(encoding="utf-8")).get("lm_bin_sha256")
        return LMChoice(
            files.binary, lexicon_path or files.lexicon, recorded or file_sha256(files.binary)
        )
    if not path.is_file():
        raise DecoderError(f"{path}: no such language model file or folder")
    return LMChoice(path, lexicon_path, file_sha256(path))


def make_decoder(
    tokenizer: CharTokenizer,
    choice: LMChoice,
    tuned: dict | None,
    beam_size: int | None = None,
    lm_weight: float | None = None,
    word_score: float | None = None,
    nbest: int = 1,
) -> tuple[BeamSearchDecoder | None, list[str]]:
    """The decoder for `choice` (None = greedy) and notes for the user.

    Values: given here > tuned for this LM (same sha256) > BeamConfig's defaults (with a note).
    """
    if choice.lm is None and choice.lexicon is None:
        if any(v is not None for v in (lm_weight, word_score)):
            raise ValueError("--lm-weight and --word-score need --lm")
        return None, []
    notes = []
    cfg = BeamConfig(nbest=nbest)
    if tuned is not None and tuned.get("lm_sha256") == choice.lm_sha256:
        cfg.lm_weight, cfg.word_score = tuned["lm_weight"], tuned["word_score"]
        cfg.beam_size = tuned["beam_size"]
    elif choice.lm is not None and (lm_weight is None or word_score is None):
        notes.append(
            f"decoder not tuned for {choice.lm} (run `asr tune-decoder`): using "
            f"lm_weight={cfg.lm_weight if lm_weight is None else lm_weight}, "
            f"word_score={cfg.word_score if word_score is None else word_score}"
        )
    if beam_size is not None:
        cfg.beam_size = beam_size
    if lm_weight is not None:
        cfg.lm_weight = lm_weight
    if word_score is not None:
        cfg.word_score = word_score
    words = read_word_list(choice.lexicon) if choice.lexicon is not None else None
    decoder = BeamSearchDecoder(tokenizer, cfg, words=words, lm=choice.lm)
    if decoder.dropped_words:
        notes.append(
            f"{choice.lexicon}: {len(decoder.dropped_words)} word(s) the model cannot spell left "
            f"out, e.g. {decoder.dropped_words[0]!r}"
        )
    return decoder, notes


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
    refs = {u.audio_filepath: normalize_text(u.text) for u in utts}
    batches, failures = [], []
    for item in transcriber.log_probs_files(list(refs)):
        if isinstance(item, FileResult):
            failures.append(item.error)
        else:
            batches.append(item)
    if not batches:
        raise ValueError("no dev utterance could be read: nothing to tune on")
    if choice.lm is None:
        lm_weights = (0.0,)  # a lexicon alone: only the word bonus matters

    def wer_of(decoder: BeamSearchDecoder | None) -> float:
        transcriber.decoder = decoder
        scores = []
        for paths, log_probs, lengths in batches:
            recs = transcriber.decode_log_probs(log_probs, lengths)
            scores += [
                score_utterance(p, refs[p], r.text) for p, r in zip(paths, recs, strict=True)
            ]
        return score_corpus(scores).wer

    greedy = wer_of(None)
    words = read_word_list(choice.lexicon) if choice.lexicon is not None else None
    grid = []
    pairs = [(w, s) for w in lm_weights for s in word_scores]
    for w, s in tqdm(pairs, desc="tune", disable=not progress, leave=False):
        cfg = BeamConfig(beam_size=beam_size, lm_weight=w, word_score=s)
        wer = wer_of(BeamSearchDecoder(transcriber.tokenizer, cfg, words=words, lm=choice.lm))
        grid.append({"lm_weight": w, "word_score": s, "wer": wer})
    transcriber.decoder = None
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
    """Write `settings` into the checkpoint (atomically) under "decoder"."""
    state = load_checkpoint(checkpoint)
    state["decoder"] = asdict(settings)
    state.pop("version", None)
    save_checkpoint(checkpoint, state)


def tuned_settings(checkpoint_state: dict) -> dict | None:
    """The checkpoint's stored decoder values, if any."""
    tuned = checkpoint_state.get("decoder")
    return tuned if isinstance(tuned, dict) else None
