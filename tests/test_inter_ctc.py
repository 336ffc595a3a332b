"""Intermediate CTC (train.inter_ctc_layer): the tapped layer's log-probs, the loss, the config."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from asr import gru_scan
from asr.config import ConfigError, load_config
from asr.model import AcousticModel, ModelConfig
from asr.train import Trainer
from tests.conftest import tiny_overrides

LENGTHS = torch.tensor([12, 7, 1, 12])


def make_model(rnn_type: str, dropout: float = 0.0) -> AcousticModel:
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_mels=8,
        vocab_size=5,
        subsample=1,
        conv_channels=0,
        rnn_type=rnn_type,
        hidden_size=6,
        num_layers=3,
        dropout=dropout,
    )
    return AcousticModel(cfg)


def feats() -> torch.Tensor:
    return torch.randn(
        len(LENGTHS), int(LENGTHS.max()), 8, generator=torch.Generator().manual_seed(1)
    )


def first_layers(model: AcousticModel, k: int) -> AcousticModel:
    """A k-layer model with `model`'s first k recurrent layers and its output layer."""
    cfg = ModelConfig(**{**model.cfg.__dict__, "num_layers": k})
    small = AcousticModel(cfg)
    state = {
        name: value
        for name, value in model.state_dict().items()
        if not name.startswith("rnn.") or int(name.split("_l")[1][0]) < k
    }
    small.load_state_dict(state)
    return small


@pytest.mark.parametrize("rnn_type", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("grad", [False, True])  # True: asr/gru_scan.py runs a GRU
def test_tap_is_the_output_layer_on_that_layer_and_leaves_the_output_alone(rnn_type, grad):
    model = make_model(rnn_type).train()  # dropout 0: train mode is deterministic
    x = feats()
    with torch.set_grad_enabled(grad):
        assert gru_scan.usable(model.rnn, x) == (grad and rnn_type == "gru")
        plain, lengths = model(x, LENGTHS)
        for k in (1, 2):
            out, out_lengths, inter = model(x, LENGTHS, tap=k)
            assert torch.allclose(out, plain, atol=1e-6)
            assert torch.equal(out_lengths, lengths)
            expected, _ = first_layers(model, k).train()(x, LENGTHS)
            for b, n in enumerate(LENGTHS.tolist()):  # padding frames are not compared
                assert torch.allclose(inter[b, :n], expected[b, :n], atol=1e-6)


def test_the_intermediate_loss_trains_only_the_layers_below_the_tap():
    model = make_model("gru", dropout=0.2).train()
    _, _, inter = model(feats(), LENGTHS, tap=1)
    inter.sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["rnn.weight_ih_l0"].abs().sum() > 0
    assert grads["rnn.weight_hh_l0_reverse"].abs().sum() > 0
    assert grads["output.weight"].abs().sum() > 0  # the output layer is shared
    for name in ("rnn.weight_ih_l1", "rnn.weight_hh_l2", "rnn.bias_ih_l2_reverse"):
        assert grads[name] is None or grads[name].abs().sum() == 0, name


def test_gru_scan_runs_a_range_of_layers_as_the_whole_does():
    model = make_model("gru")
    x = feats()
    whole = gru_scan.gru_layers(model.rnn, x, LENGTHS)
    low = gru_scan.gru_layers(model.rnn, x, LENGTHS, range(0, 2))
    assert torch.allclose(gru_scan.gru_layers(model.rnn, low, LENGTHS, range(2, 3)), whole)


def test_tap_under_bf16_autocast_on_the_cpu():
    model = make_model("gru").eval()
    x = feats()
    with torch.no_grad():
        ref, _, ref_inter = model(x, LENGTHS, tap=1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _, inter = model(x, LENGTHS, tap=1)
    assert out.dtype == inter.dtype == torch.float32
    assert (out - ref).abs().max() < 0.05 and (inter - ref_inter).abs().max() < 0.05


def test_a_tap_outside_the_stack_is_refused():
    model = make_model("gru")
    with pytest.raises(ValueError, match=r"tap must be 0 .* from 1 to 2, not 3"):
        model(feats(), LENGTHS, tap=3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["train.inter_ctc_layer=2"],
            r"train.inter_ctc_layer=2: .*\(1 to 1 with model.num_layers=2\)",
        ),
        (["train.inter_ctc_layer=-1"], r"train.inter_ctc_layer=-1: must be 0 \(off\)"),
        (["train.inter_ctc_layer=1", "train.inter_ctc_weight=1.0"], "inter_ctc_weight=1.0"),
    ],
)
def test_bad_settings_name_the_key(overrides, message, tmp_path: Path):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*tiny_overrides(tmp_path / "m.jsonl"), *overrides])


@pytest.mark.slow
def test_the_loss_mixes_the_two_ctc_losses_by_the_weight(tone_manifest: Path, tmp_path: Path):
    overrides = [*tiny_overrides(tone_manifest), "train.spec_augment=false"]
    trainer = Trainer(load_config(None, [*overrides, "train.inter_ctc_layer=1"]), tmp_path / "a")
    trainer.model.eval()  # no dropout: the three forward passes below see the same model
    batch = next(iter(trainer._loader(trainer.dataset, trainer.sampler)))
    mixed, count = trainer._loss_sum(batch)
    trainer.cfg.train.inter_ctc_layer = 0
    final, _ = trainer._loss_sum(batch)
    # The intermediate loss alone: the output layer read at layer 1 of a 1-layer copy.
    first = first_layers(trainer.model.acoustic, 1).eval()
    trainer.model.acoustic, whole = first, trainer.model.acoustic
    inter, _ = trainer._loss_sum(batch)
    trainer.model.acoustic = whole
    assert count == len(batch["wav_lens"])
    assert math.isclose(mixed.item(), 0.7 * final.item() + 0.3 * inter.item(), rel_tol=1e-5)
