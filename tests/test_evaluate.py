"""Greedy evaluation (training's validation): the scores and failures of a greedy Transcriber,
without importing the beam search or the LM code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asr.data import Utterance
from asr.evaluate import evaluate_greedy, evaluate_utterances
from asr.features import FeatureConfig
from asr.model import ModelConfig, Recogniser
from asr.tokenizers import CharTokenizer
from asr.transcribe import Transcriber

TOK = CharTokenizer(" ab")


def _utterances(folder: Path) -> list[Utterance]:
    """Five noise files of different lengths with references; a file whose header cannot be
    read, a segment past the end of its file, and a file of NaNs (its header reads, its audio
    is refused when loaded)."""
    rng = np.random.default_rng(0)
    utts = []
    for i, seconds in enumerate([0.4, 1.1, 0.7, 0.25, 0.9]):
        path = folder / f"u{i}.wav"
        sf.write(path, 0.1 * rng.standard_normal(int(seconds * 16000)), 16000)
        utts.append(Utterance(str(path), seconds, "ab ba" if i % 2 else "a b"))
    broken = folder / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt not really")
    utts.insert(2, Utterance(str(broken), 0.5, "a"))
    utts.insert(4, Utterance(utts[1].audio_filepath, 0.5, "b", offset=3.0))
    sf.write(folder / "nan.wav", np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT")
    utts.insert(1, Utterance(str(folder / "nan.wav"), 0.5, "a"))
    return utts


def test_greedy_evaluation_scores_as_a_greedy_transcriber_does(tmp_path):
    utts = _utterances(tmp_path)
    torch.manual_seed(0)
    model = Recogniser(FeatureConfig(n_mels=20), ModelConfig(n_mels=20, vocab_size=4))
    # small batches: several of them, the broken file in one of its own
    expected = evaluate_utterances(Transcriber(model, TOK, "cpu", batch_seconds=1.0), utts)
    model.train()
    got = evaluate_greedy(model, TOK, utts, "cpu", batch_seconds=1.0)
    assert not model.training  # evaluated in eval mode, left so
    assert got.utterances == expected.utterances and got.score == expected.score
    assert len(got.utterances) == 5
    # in the order of the utterances
    assert got.failures == expected.failures and len(got.failures) == 3
    assert got.failures[0].startswith(str(tmp_path / "nan.wav"))
    assert got.failures[1].startswith(str(tmp_path / "broken.wav"))
    assert got.failures[2].startswith(str(tmp_path / "u1.wav"))


def test_greedy_evaluation_imports_neither_beam_search_nor_lm():
    code = (
        "import sys, asr.evaluate; "
        "print(sorted(m for m in ('asr.lm', 'asr.decoding.beam', 'asr.decoding.choose', "
        "'asr.transcribe', 'torchaudio.models.decoder') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
