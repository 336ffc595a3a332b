"""Greedy CTC decoding, now `asr.decoding.greedy`; this module keeps its names importable."""

from asr.decoding.greedy import ctc_greedy_decode

__all__ = ["ctc_greedy_decode"]
