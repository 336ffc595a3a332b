"""make_decoder: beam search options that would not act (no LM or lexicon; an LM weight with a
lexicon alone) are refused, not dropped."""

from __future__ import annotations

import pytest
import torch

from asr.decoding.choose import LMChoice, make_decoder
from asr.features import FeatureConfig
from asr.model import ModelConfig, Recogniser
from asr.tokenizers import CharTokenizer
from asr.transcribe import Transcriber

TOK = CharTokenizer(" ab")
NO_LM = LMChoice(None, None, None)
BEAM_SIZE_ALONE = "--beam-size needs --lm or --lexicon (without them, decoding is greedy)"
LM_WEIGHT_WITHOUT_LM = (
    "--lm-weight needs --lm (a lexicon alone has no LM scores to weight; "
    "--word-score applies to it)"
)


def test_beam_size_without_lm_or_lexicon_is_refused(tmp_path):
    with pytest.raises(ValueError) as err:
        make_decoder(TOK, NO_LM, tuned=[], beam_size=8)
    assert str(err.value) == BEAM_SIZE_ALONE
    # with a lexicon it is the beam search's
    words = tmp_path / "words.txt"
    words.write_text("ab\nba\n")
    decoder, _ = make_decoder(TOK, LMChoice(None, words, None), tuned=[], beam_size=8)
    assert decoder is not None and decoder.cfg.beam_size == 8


def test_transcriber_options_refuse_beam_size_alone():
    """The decoder options the CLI passes (`asr transcribe --beam-size 8` without --lm)."""
    torch.manual_seed(0)
    model = Recogniser(FeatureConfig(n_mels=20), ModelConfig(n_mels=20, vocab_size=TOK.vocab_size))
    transcriber = Transcriber(model, TOK, "cpu")
    options = {"beam_size": 8, "lm_weight": None, "word_score": None, "nbest": 1}
    with pytest.raises(ValueError) as err:
        transcriber._with_decoder(None, None, [], options)
    assert str(err.value) == BEAM_SIZE_ALONE
    assert transcriber._with_decoder(None, None, [], {**options, "beam_size": None}).decoder is None


def test_lm_weight_with_a_lexicon_but_no_lm_is_refused(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("ab\nba\n")
    lexicon_only = LMChoice(None, words, None)
    with pytest.raises(ValueError) as err:
        make_decoder(TOK, lexicon_only, tuned=[], lm_weight=1.0)
    assert str(err.value) == LM_WEIGHT_WITHOUT_LM
    with pytest.raises(ValueError) as err:
        make_decoder(TOK, lexicon_only, tuned=[], lm_weight=1.0, word_score=-1.0)
    assert str(err.value) == LM_WEIGHT_WITHOUT_LM
    # the word score is the lexicon search's own
    decoder, _ = make_decoder(TOK, lexicon_only, tuned=[], word_score=-1.0)
    assert decoder is not None and decoder.cfg.word_score == -1.0
