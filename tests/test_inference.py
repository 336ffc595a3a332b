"""log_prob_batches: every source comes back once, as a row of a batch or as an error of one,
with its position and name; rows hold the runner's output for that source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from asr.data import Utterance
from asr.features import FeatureConfig
from asr.inference import LogProbBatch, SourceError, TorchRunner, log_prob_batches
from asr.model import ModelConfig, Recogniser

RATE = 16000


class LengthRunner:
    """A ModelRunner whose log-probs encode the input: one frame per 1,000 samples, each frame
    holding the utterance's sample count in unit 1."""

    device = torch.device("cpu")
    sample_rate = RATE
    frame_seconds = 1000 / RATE

    def log_probs(self, wavs, wav_lens):
        lengths = wav_lens // 1000
        out = torch.zeros(wavs.shape[0], int(lengths.max()), 2)  # (B, T, V)
        out[:, :, 1] = wav_lens[:, None].float()
        return out, lengths


def test_every_source_comes_back_once_with_its_position(tmp_path: Path):
    sources: list = []
    for i, seconds in enumerate([0.5, 2.0, 0.25, 1.0]):
        sf.write(tmp_path / f"{i}.wav", np.zeros(int(seconds * RATE), np.float32), RATE)
        sources.append(tmp_path / f"{i}.wav")
    sf.write(tmp_path / "nan.wav", np.full(RATE, np.nan, np.float32), RATE, subtype="FLOAT")
    sources.insert(1, str(tmp_path / "missing.wav"))  # no header: an error before any batch
    sources.insert(3, tmp_path / "nan.wav")  # its header reads, its samples are refused
    sources.append(Utterance(str(tmp_path / "1.wav"), 0.5, "", offset=1.0))  # a segment
    batches = list(log_prob_batches(LengthRunner(), sources, batch_seconds=1.0))
    assert all(isinstance(b, LogProbBatch) for b in batches)
    errors = {e.index: e for b in batches for e in b.errors}
    assert sorted(errors) == [1, 3]
    assert isinstance(errors[1], SourceError) and errors[1].name == str(tmp_path / "missing.wav")
    assert errors[1].message.startswith(f"{tmp_path / 'missing.wav'}: ")
    assert "NaN" in errors[3].message
    assert batches[0].errors == [errors[1]] and batches[0].names == []  # header errors first
    rows = {}
    for b in batches:
        assert b.log_probs.shape[0] == len(b.names) == len(b.indices) == b.lengths.shape[0]
        for name, i, lp, n in zip(b.names, b.indices, b.log_probs, b.lengths, strict=True):
            rows[i] = (name, lp[: int(n), 1].unique().tolist())
    samples = {0: 8000, 2: 32000, 4: 4000, 5: 16000, 6: 8000}
    assert sorted(rows) == sorted(samples)
    for i, n in samples.items():
        name = sources[i].key if isinstance(sources[i], Utterance) else str(sources[i])
        assert rows[i] == (name, [float(n)])


def test_the_torch_runner_evaluates_without_gradients_in_eval_mode():
    torch.manual_seed(0)
    model = Recogniser(FeatureConfig(n_mels=20), ModelConfig(n_mels=20, vocab_size=5))
    runner = TorchRunner(model, "cpu", "fp32")
    assert not model.training and runner.sample_rate == 16000
    assert runner.frame_seconds == FeatureConfig().hop_ms / 1000 * ModelConfig().subsample
    wavs = torch.randn(2, 8000)
    log_probs, lengths = runner.log_probs(wavs, torch.tensor([8000, 4000]))
    assert not log_probs.requires_grad and log_probs.dtype == torch.float32
    with torch.no_grad():
        expected, expected_lengths = model(wavs, torch.tensor([8000, 4000]))
    assert torch.equal(lengths, expected_lengths)
    torch.testing.assert_close(log_probs, expected)
