"""The acoustic model: optional 2-D conv front-end -> recurrent stack -> optional lookahead
(row convolution) -> linear -> log-probs. `AcousticStream` runs a left-to-right model over
features that arrive in pieces."""

from __future__ import annotations

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
    # Left-to-right models: a row convolution over each output frame and the next K ones,
    # after the recurrent stack (0 = none); it delays a stream's output by K frames
    lookahead_frames: int = 0
    dropout: float = 0.2  # between recurrent layers and before the output layer

    def __post_init__(self) -> None:
        if self.rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {sorted(RNN_TYPES)}, not {self.rnn_type!r}")
        if self.subsample not in (1, 2, 4):
            raise ValueError(f"subsample must be 1, 2 or 4, not {self.subsample}")
        if self.conv_channels == 0 and self.subsample != 1:
            raise ValueError("subsample > 1 needs the conv front-end (conv_channels > 0)")
        if self.lookahead_frames < 0:
            raise ValueError(f"lookahead_frames must be 0 or more, not {self.lookahead_frames}")
        if self.lookahead_frames and self.bidirectional:
            raise ValueError(
                "lookahead_frames needs a left-to-right model (bidirectional: false); a "
                "bidirectional one already sees the whole utterance"
            )


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


def unpadded_in_time(block: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """A front-end block without its zero padding in time (frequency still padded):
    (B, C, T, F) -> (B, C', (T - 3) // stride + 1, F'), output i from input frames
    stride * i .. stride * i + 2."""
    conv = block[0]
    x = F.conv2d(x, conv.weight, conv.bias, stride=conv.stride, padding=(0, conv.padding[1]))
    return block[1:](x)  # batch norm, GELU


class Lookahead(nn.Module):
    """Row convolution (Wang et al. 2016): each channel of frame t becomes a learnt mix of
    that channel in frames t .. t + K. Starts as the identity (the weight of frame t is 1).

    forward(x (B, T, C)) -> (B, T, C), frames past T taken as zeros (as past an utterance's
    length); with pad=False, (B, T, C) -> (B, T - K, C): only frames whose future is in x.
    """

    def __init__(self, channels: int, frames: int):
        super().__init__()
        self.frames = frames
        weight = torch.zeros(channels, 1, frames + 1)  # (C, 1, K + 1): one filter per channel
        weight[:, 0, 0] = 1.0
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor, pad: bool = True) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, C, T)
        if pad:
            x = F.pad(x, (0, self.frames))  # (B, C, T + K)
        return F.conv1d(x, self.weight, groups=self.weight.shape[0]).transpose(1, 2)


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
        self.lookahead = (
            Lookahead(cfg.hidden_size, cfg.lookahead_frames) if cfg.lookahead_frames else None
        )
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
        if self.lookahead is not None:
            x = self.lookahead(x)  # (B, T', hidden_size)
        return self.log_probs(x), lengths

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout and the output layer: (B, T', H * directions) -> float32 log-probs (B, T', V)."""
        logits = self.output(self.dropout(x))  # (B, T', vocab)
        return logits.float().log_softmax(dim=-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class AcousticStream:
    """A left-to-right `AcousticModel` (in eval mode) over features that arrive in pieces:
    the log-probs the model gives the whole sequence (to float rounding), each frame as soon
    as the features it depends on are in.

    `accept(feats (T, n_mels))` -> the output frames completed, (n, vocab) float32, n >= 0;
    `accept(..., final=True)` ends the sequence: the last frames, zero-padded on the right as
    the offline model pads an utterance's end. Carried between pieces: each conv block's
    input frames not yet used (its left context, starting with the zero frame of its
    padding), the recurrent state (h, and c for an LSTM, per layer), and the recurrent
    outputs that wait for the lookahead's K future frames. No gradients.
    """

    def __init__(self, model: AcousticModel):
        if model.cfg.bidirectional:
            raise ValueError("a bidirectional model cannot run left to right")
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Start a new sequence."""
        weight = self.model.output.weight
        self.context: list[torch.Tensor] = []  # per conv block: (1, C_in, t, F_in)
        if self.model.front is not None:
            freq, channels = self.model.cfg.n_mels, 1
            for block in self.model.front.blocks:
                self.context.append(weight.new_zeros(1, channels, 1, freq))  # frame -1: zeros
                channels, freq = block[0].out_channels, (freq - 1) // 2 + 1
        self.state: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None
        self.pending = weight.new_zeros(1, 0, self.model.cfg.hidden_size)  # (1, t <= K, H)

    @torch.no_grad()
    def accept(self, feats: torch.Tensor, final: bool = False) -> torch.Tensor:
        """(T, n_mels) features -> (n, vocab) log-probs of the frames completed."""
        x = feats.to(self.pending)[None]  # (1, T, n_mels)
        if self.model.front is not None:
            x = self._front(x, final)  # (1, T', C * F')
        if x.shape[1]:
            x, self.state = self.model.rnn(x, self.state)  # (1, T', H)
        else:
            x = self.pending[:, :0]  # (1, 0, H)
        if self.model.lookahead is not None:
            k = self.model.lookahead.frames
            x = torch.cat((self.pending, x), dim=1)  # (1, t + T', H)
            if final:
                x = F.pad(x, (0, 0, 0, k))  # zeros past the end
            done = max(0, x.shape[1] - k)
            self.pending = x[:, done:]
            x = self.model.lookahead(x, pad=False) if done else x[:, :0]  # (1, done, H)
        return self.model.log_probs(x)[0]

    def _front(self, x: torch.Tensor, final: bool) -> torch.Tensor:
        """(1, T, n_mels) -> (1, T', C * F'): the conv outputs whose input frames are in."""
        x = x.unsqueeze(1)  # (1, 1, T, F)
        for i, (block, stride) in enumerate(
            zip(self.model.front.blocks, self.model.front.time_strides, strict=True)
        ):
            x = torch.cat((self.context[i], x), dim=2)  # (1, C, t, F)
            if final:
                x = F.pad(x, (0, 0, 0, 1))  # the zero frame of the padding at the end
            done = (x.shape[2] - 3) // stride + 1 if x.shape[2] >= 3 else 0
            self.context[i] = x[:, :, done * stride :]
            if done:
                x = unpadded_in_time(block, x[:, :, : (done - 1) * stride + 3])  # (1, C', done, F')
            else:  # nothing for the later blocks yet
                x = x.new_zeros(1, block[0].out_channels, 0, (x.shape[3] - 1) // 2 + 1)
        b, c, t, f = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, t, c * f)


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
