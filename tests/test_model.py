"""AcousticModel shapes, lengths, normalisation, padding invariance; ModelConfig checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from asr.features import FeatureConfig
from asr.model import AcousticModel, ModelConfig, Recogniser

N_MELS = 16
VOCAB = 7


def small_config(**kwargs) -> ModelConfig:
    defaults = dict(n_mels=N_MELS, vocab_size=VOCAB, conv_channels=4, hidden_size=8, num_layers=2)
    return ModelConfig(**{**defaults, **kwargs})


def padded_feats(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features (B, T_max, N_MELS) with zeros past each length, as LogMel gives them."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(len(lengths), max(lengths), N_MELS)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, N_MELS, generator=g)
    return x, torch.tensor(lengths)


def expected_len(t: int, subsample: int) -> int:
    for _ in range({1: 0, 2: 1, 4: 2}[subsample]):
        t = (t - 1) // 2 + 1  # each stride-2 layer: ceil(t / 2)
    return t


CASES = list(itertools.product([1, 2, 4], ["rnn", "gru", "lstm"], [False, True]))


@pytest.mark.parametrize(("subsample", "rnn_type", "bidirectional"), CASES)
def test_output_shapes_and_lengths(subsample, rnn_type, bidirectional):
    torch.manual_seed(0)
    cfg = small_config(subsample=subsample, rnn_type=rnn_type, bidirectional=bidirectional)
    model = AcousticModel(cfg).eval()
    lengths = [37, 50, 1, 24]
    feats, lens = padded_feats(lengths)
    with torch.no_grad():
        log_probs, out_lens = model(feats, lens)
    assert log_probs.shape == (4, expected_len(50, subsample), VOCAB)
    assert log_probs.dtype == torch.float32
    assert out_lens.tolist() == [expected_len(n, subsample) for n in lengths]
    # Log-probabilities: each frame is a distribution over the vocabulary.
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]))
    assert (log_probs <= 0).all()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_no_front_end(bidirectional):
    cfg = small_config(subsample=1, conv_channels=0, bidirectional=bidirectional)
    model = AcousticModel(cfg).eval()
    assert model.front is None
    feats, lens = padded_feats([9, 13])
    with torch.no_grad():
        log_probs, out_lens = model(feats, lens)
    assert log_probs.shape == (2, 13, VOCAB)
    assert out_lens.tolist() == [9, 13]
    hidden = 8 * (2 if bidirectional else 1)
    assert model.output.in_features == hidden


def test_front_end_output_size():
    # Frequency is halved (rounding up) by each of the two conv layers: 16 -> 8 -> 4.
    model = AcousticModel(small_config(subsample=4, conv_channels=4))
    assert model.front.out_size == 4 * 4
    model = AcousticModel(small_config(n_mels=80, subsample=2, conv_channels=32))
    assert model.front.out_size == 32 * 20
    model = AcousticModel(small_config(n_mels=81, subsample=1, conv_channels=3))
    assert model.front.out_size == 3 * 21


@pytest.mark.parametrize(
    ("rnn_type", "bidirectional"), list(itertools.product(["rnn", "gru", "lstm"], [False, True]))
)
def test_padding_invariance_without_front_end(rnn_type, bidirectional):
    torch.manual_seed(0)
    cfg = small_config(subsample=1, conv_channels=0, rnn_type=rnn_type, bidirectional=bidirectional)
    model = AcousticModel(cfg).eval()
    feats, lens = padded_feats([23, 40, 31], seed=1)
    with torch.no_grad():
        batch, batch_lens = model(feats, lens)
        for i, n in enumerate(lens.tolist()):
            alone, alone_lens = model(feats[i : i + 1, :n], lens[i : i + 1])
            assert alone_lens.tolist() == [batch_lens[i].item()] == [n]
            torch.testing.assert_close(batch[i, :n], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("subsample", [1, 2, 4])
def test_padding_invariance_with_front_end(subsample):
    torch.manual_seed(0)
    model = AcousticModel(small_config(subsample=subsample, rnn_type="gru")).eval()
    # Lengths of every residue mod 4, so each stride-2 edge case is met.
    feats, lens = padded_feats([50, 53, 51, 52, 60], seed=2)
    with torch.no_grad():
        batch, batch_lens = model(feats, lens)
        for i, n in enumerate(lens.tolist()):
            alone, alone_lens = model(feats[i : i + 1, :n], lens[i : i + 1])
            m = alone_lens.item()
            assert batch_lens[i].item() == m == alone.shape[1]
            torch.testing.assert_close(batch[i, :m], alone[0], atol=1e-5, rtol=1e-5)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = AcousticModel(small_config(dropout=0.5))
    feats, lens = padded_feats([20, 20])
    model.eval()
    with torch.no_grad():
        a, _ = model(feats, lens)
        b, _ = model(feats, lens)
    assert torch.equal(a, b)
    model.train()
    with torch.no_grad():
        c, _ = model(feats, lens)
    assert not torch.allclose(a, c)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = AcousticModel(small_config(subsample=2))
    feats, lens = padded_feats([30, 21])
    log_probs, out_lens = model(feats, lens)
    targets = torch.tensor([[1, 2, 3], [4, 5, 0]])
    loss = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, out_lens, torch.tensor([3, 2])
    )
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_recogniser_waveforms_to_log_probs():
    torch.manual_seed(0)
    fc = FeatureConfig(n_mels=N_MELS)
    model = Recogniser(fc, small_config(subsample=2)).eval()
    wavs = torch.randn(2, 8000) * 0.1
    wav_lens = torch.tensor([8000, 5000])
    with torch.no_grad():
        log_probs, lens = model(wavs, wav_lens)
    frames = [8000 // 160 + 1, 5000 // 160 + 1]  # 51, 32
    assert lens.tolist() == [expected_len(f, 2) for f in frames] == [26, 16]
    assert log_probs.shape == (2, 26, VOCAB)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rnn_type": "transformer"}, "rnn_type"),
        ({"rnn_type": "GRU"}, "rnn_type"),
        ({"subsample": 3}, "subsample"),
        ({"subsample": 8}, "subsample"),
        ({"subsample": 2, "conv_channels": 0}, "conv front-end"),
        ({"subsample": 4, "conv_channels": 0}, "conv front-end"),
    ],
)
def test_model_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_vocab_size_must_hold_blank_and_a_token():
    with pytest.raises(ValueError, match="vocab_size"):
        AcousticModel(ModelConfig(n_mels=N_MELS, vocab_size=1))
    AcousticModel(ModelConfig(n_mels=N_MELS, vocab_size=2, hidden_size=4, num_layers=1))
