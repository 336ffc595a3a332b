"""The acoustic model: optional 2-D conv front-end -> recurrent stack -> linear -> log-probs."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr import gru_scan
from asr.features import FeatureConfig, LogMel

RNN_TYPES = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class ModelConfig:
    n_mels: int = 80  # input feature size (set from the feature config)
    vocab_size: int = 0  # output classes incl. blank (set from the tokenizer)
    subsample: int = 2  # time subsampling of the conv front-end: 1, 2 or 4
    conv_channels: int = 32  # channels of the two conv layers; 0 = no front-end (subsample 1)
    rnn_type: str = "gru"  # "rnn" (tanh), "gru" or "lstm"
    hidden_size: int = 256  # units per direction
    num_layers: int = 3  # recurrent layers
    bidirectional: bool = True  # False gives a streaming-capable left-to-right model
    dropout: float = 0.2  # between recurrent layers and before the output layer

    def __post_init__(self) -> None:
        if self.rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {sorted(RNN_TYPES)}, not {self.rnn_type!r}")
        if self.subsample not in (1, 2, 4):
            raise ValueError(f"subsample must be 1, 2 or 4, not {self.subsample}")
        if self.conv_channels == 0 and self.subsample != 1:
            raise ValueError("subsample > 1 needs the conv front-end (conv_channels > 0)")


def conv_out_len(lengths: torch.Tensor, stride: int) -> torch.Tensor:
    """Output length of a kernel-3, padding-1 convolution with this stride: ceil(T / stride).

    >>> conv_out_len(torch.tensor([100, 101, 1]), stride=2)
    tensor([50, 51,  1])
    """
    return torch.div(lengths - 1, stride, rounding_mode="floor") + 1


class ConvFrontEnd(nn.Module):
    """Two 3x3 conv layers; frequency always halved twice, time by `subsample` overall.

    forward(x (B, T, F), lengths (B,)) -> (B, T', C * F'), lengths' (B,).
    """

    def __init__(self, n_mels: int, channels: int, subsample: int):
        super().__init__()
        self.time_strides = {1: (1, 1), 2: (2, 1), 4: (2, 2)}[subsample]
        blocks: list[nn.Module] = []
        in_ch = 1
        for t_stride in self.time_strides:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(in_ch, channels, kernel_size=3, stride=(t_stride, 2), padding=1),
                    nn.BatchNorm2d(channels),
                    nn.GELU(),
                )
            )
            in_ch = channels
        self.blocks = nn.ModuleList(blocks)
        freq = n_mels
        for _ in self.time_strides:
            freq = (freq - 1) // 2 + 1
        self.out_size = channels * freq

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.unsqueeze(1)  # (B, 1, T, F)
        for block, stride in zip(self.blocks, self.time_strides, strict=True):
            x = block(x)  # (B, C, T', F')
            lengths = conv_out_len(lengths, stride)
            # Zero the frames past each length, so the next kernel sees the same zeros an
            # utterance alone would: outputs do not depend on what it is batched with.
            valid = torch.arange(x.shape[2], device=x.device)[None, :] < lengths[:, None]
            x = x * valid[:, None, :, None]
        b, c, t, f = x.shape
        x = x.permute(0, 2, 1, 3).reshape(b, t, c * f)  # (B, T', C * F')
        return x, lengths


class AcousticModel(nn.Module):
    """CTC acoustic model. forward(feats (B, T, n_mels), lengths (B,)) -> (B, T', vocab), (B,)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size < 2:
            raise ValueError("vocab_size must count the blank and at least one token")
        self.cfg = cfg
        if cfg.conv_channels > 0:
            self.front = ConvFrontEnd(cfg.n_mels, cfg.conv_channels, cfg.subsample)
            rnn_in = self.front.out_size
        else:
            self.front = None
            rnn_in = cfg.n_mels
        self.rnn = RNN_TYPES[cfg.rnn_type](
            input_size=rnn_in,
            hidden_size=cfg.hidden_size,
            num_layers=cfg.num_layers,
            batch_first=True,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        directions = 2 if cfg.bidirectional else 1
        self.output = nn.Linear(cfg.hidden_size * directions, cfg.vocab_size)
        # (first, last) -> `_layer_group`'s module and weight names; a plain dict, so the
        # weightless modules are neither submodules nor in the state dict
        self._groups: dict[tuple[int, int], tuple[nn.Module, dict[str, str]]] = {}

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor, tap: int = 0
    ) -> tuple[torch.Tensor, ...]:
        """Returns float32 log-probabilities (B, T', vocab) and their lengths (B,).

        `tap` = k (1 <= k < num_layers) also returns the log-probabilities of the output layer
        applied to the k-th recurrent layer's output (B, T', vocab), for an intermediate CTC
        loss in training (`train.inter_ctc_layer`); 0 = none.
        """
        x = feats
        if self.front is not None:
            x, lengths = self.front(x, lengths)  # (B, T', C * F')
        layers = self.cfg.num_layers
        if not 0 <= tap < layers:
            raise ValueError(f"tap must be 0 (none) or a layer from 1 to {layers - 1}, not {tap}")
        inter = None
        if tap:
            x = self._recurrent(x, lengths, 0, tap)  # (B, T', H*D)
            # The dropout nn.GRU applies between its layers, applied here between the two parts.
            x = F.dropout(x, self.rnn.dropout, self.training)
            inter = self.output(x).float().log_softmax(dim=-1)
            x = self._recurrent(x, lengths, tap, layers)
        else:
            x = self._recurrent(x, lengths, 0, layers)
        log_probs = self.output(self.dropout(x)).float().log_softmax(dim=-1)  # (B, T', vocab)
        return (log_probs, lengths) if inter is None else (log_probs, lengths, inter)

    def _recurrent(
        self, x: torch.Tensor, lengths: torch.Tensor, first: int, last: int
    ) -> torch.Tensor:
        """Recurrent layers first..last-1 over (B, T', in) -> (B, T', H*D), zero padding."""
        if gru_scan.usable(self.rnn, x):  # CPU training: the same GRU, faster (asr/gru_scan.py)
            return gru_scan.gru_layers(self.rnn, x, lengths, range(first, last))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        if (first, last) == (0, self.cfg.num_layers):
            out, _ = self.rnn(packed)
        else:
            group, names = self._layer_group(first, last)
            group.train(self.training)
            params = {name: getattr(self.rnn, own) for name, own in names.items()}
            out, _ = torch.func.functional_call(group, params, (packed,))
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]

    def _layer_group(self, first: int, last: int) -> tuple[nn.Module, dict[str, str]]:
        """A weightless recurrent module of layers first..last-1 (made once, kept) and, for each
        of its weight names, the name of the weight of `self.rnn` it runs with
        (torch.func.functional_call): the same parameters, no copies."""
        if (first, last) not in self._groups:
            directions = 2 if self.cfg.bidirectional else 1
            with torch.device("meta"):
                group = type(self.rnn)(
                    input_size=self.rnn.input_size
                    if first == 0
                    else self.rnn.hidden_size * directions,
                    hidden_size=self.rnn.hidden_size,
                    num_layers=last - first,
                    batch_first=True,
                    bidirectional=self.cfg.bidirectional,
                    dropout=self.rnn.dropout if last - first > 1 else 0.0,
                )
            names = {
                name: re.sub(r"_l(\d+)", lambda m: f"_l{int(m[1]) + first}", name)
                for name in group._flat_weights_names
            }
            self._groups[(first, last)] = (group, names)
        return self._groups[(first, last)]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class Recogniser(nn.Module):
    """Feature extractor + acoustic model: (B, S) waveforms -> (B, T', V) log-probs."""

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig):
        super().__init__()
        self.features = LogMel(feature_cfg)
        self.acoustic = AcousticModel(model_cfg)

    def forward(
        self,
        wavs: torch.Tensor,
        wav_lens: torch.Tensor,
        spec_augment: nn.Module | None = None,
        tap: int = 0,
    ) -> tuple[torch.Tensor, ...]:
        """(B, S), (B,) -> log-probs (B, T', V), lengths (B,); `spec_augment` masks the features;
        `tap` > 0 adds an intermediate layer's log-probs (B, T', V) (AcousticModel.forward)."""
        feats, frame_lens = self.features(wavs, wav_lens)  # (B, T, n_mels)
        if spec_augment is not None:
            feats = spec_augment(feats)
        return self.acoustic(feats, frame_lens, tap)
