"""The acoustic model: optional 2-D conv front-end -> recurrent stack -> linear -> log-probs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
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

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, T, n_mels), lengths (B,) -> float32 log-probs (B, T', vocab), lengths (B,).

        T' = ceil(T / subsample). Frames past an utterance's length do not change its outputs
        (the batch it is in does not matter); their log-probs hold no meaningful value.
        """
        x = feats  # (B, T, n_mels)
        if self.front is not None:
            x, lengths = self.front(x, lengths)  # (B, T', C * F')
        if gru_scan.usable(self.rnn, x):  # CPU training: the same GRU, faster (asr/gru_scan.py)
            x = gru_scan.gru_layers(self.rnn, x, lengths)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            x, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        # x: (B, T', hidden_size * directions), zero past each length
        logits = self.output(self.dropout(x))  # (B, T', vocab)
        return logits.float().log_softmax(dim=-1), lengths

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class Recogniser(nn.Module):
    """Feature extractor + acoustic model: (B, S) waveforms -> (B, T', V) log-probs."""

    def __init__(self, feature_cfg: FeatureConfig, model_cfg: ModelConfig):
        super().__init__()
        self.features = LogMel(feature_cfg)
        self.acoustic = AcousticModel(model_cfg)

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor, spec_augment: nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S), (B,) -> log-probs (B, T', V), lengths (B,); `spec_augment` masks the features."""
        feats, frame_lens = self.features(wavs, wav_lens)  # (B, T, n_mels)
        if spec_augment is not None:
            feats = spec_augment(feats)
        return self.acoustic(feats, frame_lens)
