"""Transcriber output text: the decoder's spaces are tidied, the ids are decoded exactly."""

from __future__ import annotations

import torch
from torch import nn

from asr.text import CharTokenizer
from asr.transcribe import Transcriber


class FixedOutput(nn.Module):
    """Stands in for a recogniser: emits one-hot log-probs for a fixed id sequence per frame."""

    def __init__(self, ids: list[int], vocab: int):
        super().__init__()
        self.ids = ids
        self.vocab = vocab

    def forward(self, wavs, wav_lens):
        log_probs = torch.full((wavs.shape[0], len(self.ids), self.vocab), -30.0)
        for t, i in enumerate(self.ids):
            log_probs[:, t, i] = 0.0
        return log_probs, torch.full((wavs.shape[0],), len(self.ids))


def test_leading_trailing_and_doubled_spaces_are_dropped():
    tok = CharTokenizer([" ", "a", "b"])  # ids: blank 0, space 1, a 2, b 3
    # Frames: " a", blank, " ", blank, " b ", i.e. decoded " a  b " before tidying.
    ids = [1, 2, 0, 1, 0, 1, 3, 1]
    transcriber = Transcriber(FixedOutput(ids, tok.vocab_size), tok, "cpu")
    wavs = torch.zeros(2, 100)
    assert transcriber.decode_batch(wavs, torch.tensor([100, 80])) == ["a b", "a b"]


def test_beam_search_decoder_replaces_greedy_and_gives_nbest():
    from asr.beam import BeamConfig, BeamSearchDecoder

    tok = CharTokenizer([" ", "a", "b"])  # ids: blank 0, space 1, a 2, b 3
    ids = [2, 3, 0, 3, 1, 2]  # frames "ab", blank, "b a": greedy "abb a"
    transcriber = Transcriber(FixedOutput(ids, tok.vocab_size), tok, "cpu")
    wavs = torch.zeros(1, 100)
    assert transcriber.decode_batch(wavs, torch.tensor([100])) == ["abb a"]
    # With "abb" the only word, the last frame can only be a blank: "abb".
    transcriber.decoder = BeamSearchDecoder(tok, BeamConfig(beam_size=8, nbest=3), words=["abb"])
    (rec,) = transcriber.recognise_batch(wavs, torch.tensor([100]))
    assert rec.text == "abb" and rec.nbest[0][0] == "abb"
    transcriber.decoder = BeamSearchDecoder(tok, BeamConfig(beam_size=8), words=["abb", "a"])
    assert transcriber.decode_batch(wavs, torch.tensor([100])) == ["abb a"]
