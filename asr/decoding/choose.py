"""Choosing a decoder: greedy, or beam search with an LM folder/file and/or a lexicon.

`resolve_lm` turns what the user named (an `asr lm build` folder, an ARPA / KenLM binary file,
a lexicon) into an `LMChoice`; `make_decoder` builds the `BeamSearchDecoder` for it with the
values `asr tune-decoder` stored in the checkpoint for that LM (`tuned_settings`), or the
defaults with a note saying so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.decoding.beam import BeamConfig, BeamSearchDecoder, DecoderError, read_word_list
from asr.files import file_sha256
from asr.lm import LM_JSON, LMFiles, load_lm_files
from asr.tokenizers import PhoneTokenizer, Tokenizer


@dataclass
class LMChoice:
    """What the decoder reads: an n-gram file and/or a lexicon (word list)."""

    lm: Path | None  # ARPA or KenLM binary; word-level with a lexicon, character-level without
    lexicon: Path | None
    lm_sha256: str | None  # identifies the LM whose tuned values apply


def resolve_lm(lm: str | Path | None, lexicon: str | Path | None) -> LMChoice:
    """An LM folder from `asr lm build` (its binary and lexicon), or an LM file and/or lexicon.

    >>> resolve_lm(None, "words.txt")
    LMChoice(lm=None, lexicon=PosixPath('words.txt'), lm_sha256=None)
    """
    lexicon_path = Path(lexicon) if lexicon is not None else None
    if lm is None:
        return LMChoice(None, lexicon_path, None)
    path = Path(lm)
    if path.is_dir():
        # `asr lm build` recorded the binary's sha256: no need to hash a large file again.
        files = load_lm_files(path)
        info = json.loads((path / LM_JSON).read_text(encoding="utf-8"))
        return LMChoice(files.binary, lexicon_path or files.lexicon, _checked_sha256(files, info))
    if not path.is_file():
        raise DecoderError(f"{path}: no such language model file or folder")
    return LMChoice(path, lexicon_path, file_sha256(path))


def _checked_sha256(files: LMFiles, info: dict) -> str:
    """The sha256 lm.json records for lm.bin, once lm.bin is checked against it: by size where
    lm.json records one (cheap, every load), by hashing it otherwise (folders built before)."""
    recorded, size = info.get("lm_bin_sha256"), info.get("lm_bin_bytes")
    if recorded is None:
        return file_sha256(files.binary)
    actual = files.binary.stat().st_size
    if size is not None and actual != size:
        mismatch = f"{actual} bytes, {LM_JSON} records {size}"
    elif size is None and file_sha256(files.binary) != recorded:
        mismatch = f"its sha256 differs from the one {LM_JSON} records"
    else:
        return recorded
    raise DecoderError(
        f"{files.binary}: not the model this LM folder was built with ({mismatch}); "
        "rebuild the folder with `asr lm build`"
    )


def tuned_settings(checkpoint_state: dict) -> list[dict]:
    """The decoder values `asr tune-decoder` stored in a checkpoint: one dict per LM tuned
    (under "decoders"; checkpoints of earlier versions hold one under "decoder").

    >>> tuned_settings({"decoders": [{"lm_sha256": "a"}], "decoder": {"lm_sha256": "b"}})
    [{'lm_sha256': 'a'}, {'lm_sha256': 'b'}]
    """
    tuned = checkpoint_state.get("decoders")
    found = [t for t in tuned if isinstance(t, dict)] if isinstance(tuned, list) else []
    legacy = checkpoint_state.get("decoder")
    if isinstance(legacy, dict):
        found.append(legacy)
    return found


def decoder_words(tokenizer: Tokenizer, choice: LMChoice) -> list[str] | None:
    """The lexicon's words the decoder is given, or None for lexicon-free decoding.

    A phone model's units are its words: with an LM (of phone transcripts) it decodes
    lexicon-free, whatever lexicon an LM folder holds.
    """
    if choice.lexicon is None or (isinstance(tokenizer, PhoneTokenizer) and choice.lm is not None):
        return None
    return read_word_list(choice.lexicon)


def make_decoder(
    tokenizer: Tokenizer,
    choice: LMChoice,
    tuned: Sequence[dict],
    beam_size: int | None = None,
    lm_weight: float | None = None,
    word_score: float | None = None,
    nbest: int = 1,
) -> tuple[BeamSearchDecoder | None, list[str]]:
    """The decoder for `choice` (None = greedy) and notes for the user.

    Values: given here > tuned for this LM (same sha256) > BeamConfig's defaults (with a note).
    ValueError for beam search values given without an LM or lexicon (greedy has none), and
    for an LM weight without an LM (a lexicon alone has no LM scores; its search does use the
    word score).

    >>> from asr.tokenizers import CharTokenizer
    >>> make_decoder(CharTokenizer("ab"), LMChoice(None, None, None), tuned=[])
    (None, [])
    """
    if choice.lm is None and choice.lexicon is None:
        # Options of a beam search that will not run are refused, not dropped.
        if beam_size is not None:
            raise ValueError(
                "--beam-size needs --lm or --lexicon (without them, decoding is greedy)"
            )
        if any(v is not None for v in (lm_weight, word_score)):
            raise ValueError("--lm-weight and --word-score need --lm")
        return None, []
    if choice.lm is None and lm_weight is not None:
        raise ValueError(
            "--lm-weight needs --lm (a lexicon alone has no LM scores to weight; "
            "--word-score applies to it)"
        )
    notes = []
    cfg = BeamConfig(nbest=nbest)
    match = next((t for t in tuned if t.get("lm_sha256") == choice.lm_sha256), None)
    if match is not None:
        cfg.lm_weight, cfg.word_score = match["lm_weight"], match["word_score"]
        cfg.beam_size = match["beam_size"]
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
    words = decoder_words(tokenizer, choice)
    if words and not any(tokenizer.spell(w) for w in words):
        missing = "".join(sorted({c for w in words[:1000] for c in tokenizer.unknown(w)}))
        raise DecoderError(
            f"{choice.lexicon}: none of its {len(words)} words can be spelt in the model's units "
            f"(characters the model lacks: {missing!r}); is it the lexicon of another language "
            "or model?"
        )
    decoder = BeamSearchDecoder(tokenizer, cfg, words=words, lm=choice.lm)
    if decoder.dropped_words:
        notes.append(
            f"{choice.lexicon}: {len(decoder.dropped_words)} word(s) the model cannot spell left "
            f"out, e.g. {decoder.dropped_words[0]!r}"
        )
    return decoder, notes
