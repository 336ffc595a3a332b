"""asr/gru_scan.py: CPU training GRU = nn.GRU's outputs and gradients, and runs only there."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr import gru_scan
from asr.model import AcousticModel, ModelConfig

LENGTHS = [9, 4, 1, 9, 6]  # unsorted, one of a single frame, two of the padded length


def packed_gru(rnn: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """nn.GRU on the packed batch, padded back with zeros: the reference. (B, T, D * H)"""
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


def make_gru(bidirectional: bool, num_layers: int, dtype: torch.dtype = torch.float32) -> nn.GRU:
    torch.manual_seed(0)
    rnn = nn.GRU(5, 6, num_layers, batch_first=True, bidirectional=bidirectional)
    return rnn.to(dtype)


def batch(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(len(LENGTHS), max(LENGTHS), 5, generator=g, dtype=dtype)
    return x, torch.tensor(LENGTHS)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_layers", [1, 3])
def test_outputs_and_gradients_match_nn_gru_on_a_packed_batch(bidirectional, num_layers):
    rnn = make_gru(bidirectional, num_layers)
    x, lengths = batch()
    # An upstream gradient everywhere, padding included: the padding must pass none back.
    weights = torch.randn(len(LENGTHS), max(LENGTHS), rnn.hidden_size * (1 + bidirectional))
    results = []
    for run in (packed_gru, gru_scan.gru_layers):
        xi = x.clone().requires_grad_()
        out = run(rnn, xi, lengths)
        grads = torch.autograd.grad((out * weights).sum(), [xi, *rnn.parameters()])
        results.append((out, grads))
    (ref, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    valid = torch.arange(max(LENGTHS))[None, :] < lengths[:, None]
    assert (out[~valid] == 0).all()  # zero padding, as pad_packed_sequence gives it
    assert (grads[0][~valid] == 0).all()


def test_hand_written_backward_passes_gradcheck():
    """_GRUScan's backward against finite differences, float64, both directions at once."""
    g = torch.Generator().manual_seed(2)
    steps, dirs, batch_size, hid = 4, 2, 3, 2
    gi = torch.randn(steps, dirs, batch_size, 3 * hid, generator=g, dtype=torch.float64)
    w_hh = torch.randn(dirs, 3 * hid, hid, generator=g, dtype=torch.float64)
    b_hh = torch.randn(dirs, 3 * hid, generator=g, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (gi, w_hh, b_hh)]
    assert torch.autograd.gradcheck(gru_scan._GRUScan.apply, inputs)


def test_dropout_between_layers_only_in_training_mode():
    torch.manual_seed(0)
    rnn = nn.GRU(5, 6, 2, batch_first=True, dropout=0.5)
    x, lengths = batch()
    rnn.eval()  # no dropout: nn.GRU's function exactly
    torch.testing.assert_close(
        gru_scan.gru_layers(rnn, x, lengths), packed_gru(rnn, x, lengths), rtol=1e-5, atol=1e-6
    )
    rnn.train()
    first = gru_scan.gru_layers(rnn, x, lengths)
    assert not torch.allclose(first, gru_scan.gru_layers(rnn, x, lengths))  # fresh masks


def test_used_only_for_fp32_cpu_training_of_a_batch_first_gru():
    x = torch.zeros(2, 3, 5)
    gru = nn.GRU(5, 6, batch_first=True)
    assert gru_scan.usable(gru, x)
    assert not gru_scan.usable(nn.LSTM(5, 6, batch_first=True), x)
    assert not gru_scan.usable(nn.GRU(5, 6), x)  # time-first
    assert not gru_scan.usable(gru, x.double())
    with torch.no_grad():  # evaluation and transcription keep nn.GRU
        assert not gru_scan.usable(gru, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not gru_scan.usable(gru, x)


@pytest.mark.parametrize(
    "options",
    [{}, {"bidirectional": False, "lookahead_frames": 2}],
    ids=["bidirectional", "left-to-right-lookahead"],
)
def test_acoustic_model_trains_through_it_on_the_cpu(monkeypatch, options):
    """The model's CPU training forward takes the scan, and gives what the packed nn.GRU gives:
    outputs and gradients."""
    cfg = ModelConfig(
        n_mels=16, vocab_size=7, conv_channels=4, hidden_size=8, dropout=0.0, **options
    )
    torch.manual_seed(0)
    model = AcousticModel(cfg)
    if model.lookahead is not None:
        with torch.no_grad():
            model.lookahead.weight.normal_()
    g = torch.Generator().manual_seed(3)
    feats, lengths = torch.randn(3, 40, 16, generator=g), torch.tensor([40, 23, 7])
    calls = []
    real = gru_scan.gru_layers

    def spy(*args):
        calls.append(1)
        return real(*args)

    def loss_and_grads(out: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, list]:
        valid = torch.arange(out.shape[1])[None, :] < lens[:, None]
        model.zero_grad()
        (out[valid] * weights[valid]).sum().backward()
        return out[valid].detach(), [p.grad.clone() for p in model.parameters()]

    monkeypatch.setattr(gru_scan, "gru_layers", spy)
    scan_out, out_lens = model(feats, lengths)
    assert calls
    weights = torch.randn(scan_out.shape, generator=g)
    scan_out, scan_grads = loss_and_grads(scan_out, out_lens)
    monkeypatch.setattr(gru_scan, "usable", lambda rnn, x: False)
    packed_out, packed_grads = loss_and_grads(*model(feats, lengths))
    torch.testing.assert_close(scan_out, packed_out, rtol=1e-5, atol=1e-5)
    for a, b in zip(scan_grads, packed_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
