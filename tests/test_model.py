"""AcousticModel shapes, lengths, normalisation, padding invariance, lookahead, the model run
over features in pieces (AcousticStream); ModelConfig checks."""

from __future__ import annotations

import itertools

import pytest
import torch

from asr.features import FeatureConfig
from asr.model import AcousticModel, AcousticStream, Lookahead, ModelConfig, Recogniser

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
        ({"lookahead_frames": 2}, "lookahead_frames needs a left-to-right model"),
        ({"lookahead_frames": -1, "bidirectional": False}, "lookahead_frames must be 0 or more"),
    ],
)
def test_model_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_vocab_size_must_hold_blank_and_a_token():
    with pytest.raises(ValueError, match="vocab_size"):
        AcousticModel(ModelConfig(n_mels=N_MELS, vocab_size=1))
    AcousticModel(ModelConfig(n_mels=N_MELS, vocab_size=2, hidden_size=4, num_layers=1))


def test_lookahead_mixes_each_frame_with_the_next_k_per_channel():
    row = Lookahead(channels=2, frames=2)
    x = torch.arange(1.0, 9.0).view(1, 4, 2)  # (B, T, C): channel 0 is 1, 3, 5, 7
    torch.testing.assert_close(row(x), x)  # starts as the identity
    with torch.no_grad():
        row.weight.copy_(torch.tensor([[[1.0, 10.0, 100.0]], [[0.0, 0.0, 1.0]]]))
    y = row(x)
    assert y.shape == x.shape
    # channel 0: x_t + 10 x_{t+1} + 100 x_{t+2}, zeros past the end; channel 1: x_{t+2}
    assert y[0, :, 0].tolist() == [1 + 30 + 500, 3 + 50 + 700, 5 + 70, 7]
    assert y[0, :, 1].tolist() == [6, 8, 0, 0]
    assert torch.equal(row(x, pad=False), y[:, :2])  # only the frames whose future is in x


def left_to_right(**kwargs) -> ModelConfig:
    return small_config(bidirectional=False, **kwargs)


def random_lookahead(model: AcousticModel) -> AcousticModel:
    """The lookahead's weights drawn at random (it starts as the identity)."""
    with torch.no_grad():
        model.lookahead.weight.normal_()
    return model


@pytest.mark.parametrize("subsample", [1, 2, 4])
def test_lookahead_model_shapes_padding_invariance_and_future_frames(subsample):
    torch.manual_seed(0)
    model = random_lookahead(AcousticModel(left_to_right(subsample=subsample, lookahead_frames=3)))
    model.eval()
    assert model.output.in_features == 8
    feats, lens = padded_feats([50, 53, 51, 52, 60], seed=2)
    with torch.no_grad():
        batch, batch_lens = model(feats, lens)
        for i, n in enumerate(lens.tolist()):
            alone, alone_lens = model(feats[i : i + 1, :n], lens[i : i + 1])
            m = alone_lens.item()
            assert batch_lens[i].item() == m == expected_len(n, subsample)
            torch.testing.assert_close(batch[i, :m], alone[0], atol=1e-5, rtol=1e-5)
        # Output frame j reads recurrent frames j .. j + 3. Changing the features from
        # j * subsample + 2 on changes recurrent frames from j on (each conv layer reads one
        # frame past its centre), so the outputs from j - 3 on, and none before.
        changed = feats[:1, :50].clone()
        j = 6
        first = j * subsample
        changed[0, first + 2 :] = torch.randn(50 - first - 2, N_MELS)
        a, _ = model(feats[:1, :50], lens[:1])
        b, _ = model(changed, lens[:1])
    differs = (a - b).abs().amax(-1)[0] > 0  # (T',)
    assert differs.nonzero()[0].item() == j - 3


def test_lookahead_weights_are_saved_and_trained():
    torch.manual_seed(0)
    model = AcousticModel(left_to_right(lookahead_frames=2))
    assert model.state_dict()["lookahead.weight"].shape == (8, 1, 3)
    assert "lookahead.weight" not in AcousticModel(left_to_right()).state_dict()
    feats, lens = padded_feats([30, 21])
    log_probs, out_lens = model(feats, lens)
    targets = torch.tensor([[1, 2, 3], [4, 5, 0]])
    loss = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, out_lens, torch.tensor([3, 2])
    )
    loss.backward()
    assert model.lookahead.weight.grad[:, 0, 1:].abs().sum() > 0  # the future frames' weights


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_lookahead_model_under_bf16_autocast(rnn_type):
    torch.manual_seed(0)
    model = random_lookahead(AcousticModel(left_to_right(rnn_type=rnn_type, lookahead_frames=2)))
    feats, lens = padded_feats([30, 21])
    model.eval()
    with torch.no_grad():
        expected, _ = model(feats, lens)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            log_probs, out_lens = model(feats, lens)
    assert log_probs.dtype == torch.float32
    valid = torch.arange(log_probs.shape[1])[None, :] < out_lens[:, None]
    assert (log_probs - expected).abs()[valid].max() < 0.1  # bf16 keeps about 3 digits
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs, _ = model(feats, lens)
    log_probs[valid].sum().backward()
    assert model.lookahead.weight.grad.abs().sum() > 0


def stream_log_probs(model: AcousticModel, feats: torch.Tensor, chunk: int) -> torch.Tensor:
    """(T, n_mels) features through an AcousticStream `chunk` frames at a time -> (T', V)."""
    stream = AcousticStream(model)
    pieces = [stream.accept(feats[i : i + chunk]) for i in range(0, len(feats), chunk)]
    return torch.cat([*pieces, stream.accept(feats[:0], final=True)])


@pytest.mark.parametrize(
    ("subsample", "conv_channels", "rnn_type", "lookahead"),
    [
        (1, 0, "gru", 0),
        (1, 0, "lstm", 2),
        (1, 4, "rnn", 1),
        (2, 4, "gru", 3),
        (4, 4, "lstm", 0),
        (4, 4, "gru", 2),
    ],
)
def test_stream_gives_the_log_probs_of_the_whole_sequence(
    subsample, conv_channels, rnn_type, lookahead
):
    torch.manual_seed(0)
    cfg = left_to_right(
        subsample=subsample,
        conv_channels=conv_channels,
        rnn_type=rnn_type,
        lookahead_frames=lookahead,
    )
    model = AcousticModel(cfg)
    if lookahead:
        random_lookahead(model)
    model.eval()
    for n in [1, 2, 3, 5, 41]:  # a single frame, the conv kernel's edges, every residue mod 4
        feats, lens = padded_feats([n], seed=n)
        with torch.no_grad():
            whole, _ = model(feats, lens)
        for chunk in sorted({1, 2, 3, 7, n}):
            got = stream_log_probs(model, feats[0], chunk)
            assert got.shape == whole[0].shape, (n, chunk)
            torch.testing.assert_close(got, whole[0], atol=1e-5, rtol=1e-5)


def test_stream_gives_each_frame_as_soon_as_its_features_are_in():
    """Subsample 4 with lookahead 2: output frame j reads recurrent frames up to j + 2, which
    read feature frames up to 2 (2 (j + 2) + 1) + 1 = 4 j + 11 (each conv layer: kernel 3,
    stride 2, one frame of right context)."""
    torch.manual_seed(0)
    model = AcousticModel(left_to_right(subsample=4, lookahead_frames=2)).eval()
    stream = AcousticStream(model)
    feats, _ = padded_feats([60])
    arrivals = []  # feature frames in when each output frame came out
    for t in range(60):
        arrivals += [t + 1] * len(stream.accept(feats[0, t : t + 1]))
    assert arrivals == [4 * j + 12 for j in range(len(arrivals))]
    assert len(stream.accept(feats[0, :0], final=True)) == 15 - len(arrivals)  # ceil(60 / 4)


def test_stream_refuses_a_bidirectional_model():
    with pytest.raises(ValueError, match="bidirectional"):
        AcousticStream(AcousticModel(small_config()))
