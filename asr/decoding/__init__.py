"""CTC decoding of the model's log-probs into text.

- `asr.decoding.greedy`: best path (each frame's most likely unit, repeats collapsed, blanks
  dropped); batched, no dependencies beyond torch. Training's validation uses it.
- `asr.decoding.beam`: beam search through flashlight-text with a lexicon and/or an n-gram LM.
- `asr.decoding.choose`: the decoder for what the user named (LM folder or file, lexicon) with
  the values `asr tune-decoder` stored in the checkpoint.

Both decoders are a `Decoder`: (B, T, V) log-probs and (B,) lengths in, per utterance a list of
`Hypothesis` out, best first. This module imports neither the beam search nor the LM code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Hypothesis:
    text: str  # normalised words separated by single spaces
    token_ids: list[int]  # the tokenizer's ids for `text` (spaces included)
    score: float  # the decoder's total score (greedy: the path's summed log-probs)
    # (T,) the unit each frame of the utterance is read as on the decoder's path (model ids,
    # blank 0): where the words of `text` were emitted (asr.align.path_word_timings)
    path: list[int]


class Decoder(Protocol):
    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        """(B, T, V) log-probs and (B,) lengths -> per utterance, its hypotheses, best first."""
        ...
