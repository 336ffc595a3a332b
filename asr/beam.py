"""CTC beam search, now `asr.decoding.beam`; this module keeps its names importable."""

from asr.decoding import Hypothesis
from asr.decoding.beam import (
    BLANK_NAME,
    SEPARATOR,
    BeamConfig,
    BeamSearchDecoder,
    DecoderError,
    read_word_list,
    write_lexicon,
)

__all__ = [
    "BLANK_NAME",
    "SEPARATOR",
    "BeamConfig",
    "BeamSearchDecoder",
    "DecoderError",
    "Hypothesis",
    "read_word_list",
    "write_lexicon",
]
