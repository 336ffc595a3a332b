"""Choosing a decoder, now `asr.decoding.choose`; this module keeps its names importable."""

from asr.decoding.choose import LMChoice, decoder_words, make_decoder, resolve_lm, tuned_settings

__all__ = ["LMChoice", "decoder_words", "make_decoder", "resolve_lm", "tuned_settings"]
