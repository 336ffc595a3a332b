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


def test_segments_of_one_file_match_the_same_audio_cut_into_files(tmp_path):
    """Manifest offsets: each segment gives the log-probs of its own audio cut out as a file,
    and evaluation scores every segment of a shared file under its own key."""
    import numpy as np
    import soundfile as sf

    from asr.data import Utterance
    from asr.evaluate import evaluate_utterances
    from asr.features import FeatureConfig
    from asr.model import ModelConfig, Recogniser

    rng = np.random.default_rng(0)
    long = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    sf.write(tmp_path / "long.wav", long, 16000, subtype="FLOAT")
    spans = [(0.0, 1.0), (1.25, 0.5), (2.0, 1.0)]
    for i, (start, length) in enumerate(spans):
        cut = long[round(start * 16000) : round((start + length) * 16000)]
        sf.write(tmp_path / f"cut{i}.wav", cut, 16000, subtype="FLOAT")
    segments = [
        Utterance(str(tmp_path / "long.wav"), length, "ab", offset=start) for start, length in spans
    ]
    tok = CharTokenizer([" ", "a", "b"])
    torch.manual_seed(0)
    model = Recogniser(FeatureConfig(n_mels=20), ModelConfig(n_mels=20, vocab_size=4))
    transcriber = Transcriber(model, tok, "cpu")

    def log_probs_by_name(sources):
        out = {}
        for names, log_probs, lengths in transcriber.log_probs_files(sources):
            for name, lp, n in zip(names, log_probs, lengths, strict=True):
                out[name] = lp[: int(n)]
        return out

    by_segment = log_probs_by_name(segments)
    by_file = log_probs_by_name([tmp_path / f"cut{i}.wav" for i in range(len(spans))])
    assert sorted(by_segment) == sorted(u.key for u in segments)
    for i, u in enumerate(segments):
        torch.testing.assert_close(by_segment[u.key], by_file[str(tmp_path / f"cut{i}.wav")])
    result = evaluate_utterances(transcriber, segments)
    assert [s.audio_filepath for s in result.utterances] == sorted(u.key for u in segments)
    assert result.score.words == 3 and not result.failures
    # A segment past the end of its file is reported by name, the others still scored.
    bad = Utterance(str(tmp_path / "long.wav"), 1.0, "ab", offset=2.5)
    result = evaluate_utterances(transcriber, [*segments, bad])
    assert len(result.utterances) == 3
    assert result.failures == [
        f"{tmp_path / 'long.wav'}: segment 2.5-3.5 s lies past the end of the audio (3.000 s)"
    ]
