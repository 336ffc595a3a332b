"""Incremental log-probs of a left-to-right model: audio in as it arrives, frames out as soon
as the audio they depend on is in, equal (to float rounding) to the model's log-probs of the
whole stream at once, whatever the pieces.

What a frame waits for past its own span (`lookahead_seconds`): the STFT window's right half
(or, with a running level, the frame's hop), the conv front-end's right context (one frame per
conv layer, at that layer's input rate) and the lookahead's K output frames.

>>> from asr.features import FeatureConfig
>>> from asr.model import ModelConfig, Recogniser
>>> model = Recogniser(
...     FeatureConfig(n_mels=20, normalize_level=False),
...     ModelConfig(n_mels=20, vocab_size=5, hidden_size=8, num_layers=1, bidirectional=False),
... )
>>> encoder = StreamingEncoder(model)
>>> encoder.accept(np.zeros(1600, np.float32)).shape  # 100 ms in: 3 frames of 20 ms out
torch.Size([3, 5])
>>> encoder.lookahead_seconds  # the 4th (60-80 ms) waits for the audio up to 102.5 ms
0.0225
>>> encoder.flush().shape, encoder.frames_emitted  # ceil((1600 // 160 + 1) / 2) in all
(torch.Size([3, 5]), 6)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from asr.features import LogMelStream
from asr.model import AcousticStream, Recogniser
from asr.tokenizers import Tokenizer


class StreamingEncoder:
    """A left-to-right `Recogniser`'s log-probs over a stream of samples.

    `accept(samples)` takes the next (S,) float samples in [-1, 1] at `sample_rate` and returns
    the log-prob frames completed by them, (n, V) float32 on the CPU (n may be 0); `flush()`
    ends the stream and returns the rest (the end padded as the offline model pads it);
    `reset()` starts a new stream. `frames_emitted` counts the frames returned since the
    reset: the index of the next one (its time is frames_emitted * frame_seconds).

    ValueError for a bidirectional model, and for features that normalise each utterance by
    its whole level (features.normalize_level with level_window_s 0).
    """

    def __init__(self, model: Recogniser, tokenizer: Tokenizer | None = None, name: str = ""):
        where = f"{name}: " if name else ""
        if model.acoustic.cfg.bidirectional:
            raise ValueError(
                f"{where}the model is bidirectional: stream it with re-decoding "
                "(StreamingRecognizer)"
            )
        try:
            self.features = LogMelStream(model.features)
        except ValueError as err:
            raise ValueError(f"{where}{err}") from None
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.acoustic = AcousticStream(model.acoustic)
        self.frames_emitted = 0
        self.flushed = False

    @classmethod
    def from_checkpoint(
        cls, ckpt: dict | str | Path, device: str | torch.device = "cpu"
    ) -> StreamingEncoder:
        """The encoder of a checkpoint (a path, or the dict `load_checkpoint` returns)."""
        from asr.checkpoint import load_checkpoint, recogniser_from_state

        state = ckpt if isinstance(ckpt, dict) else load_checkpoint(ckpt)
        model, tokenizer = recogniser_from_state(state)
        name = str(getattr(state, "path", "") or ("" if isinstance(ckpt, dict) else ckpt))
        return cls(model.to(device), tokenizer, name)

    @property
    def sample_rate(self) -> int:
        """Hz of the samples `accept` takes: callers resample to it."""
        return self.model.features.cfg.sample_rate

    @property
    def frame_seconds(self) -> float:
        """Seconds per output frame: the feature hop times the front-end's subsampling."""
        return self.model.features.cfg.hop_ms / 1000 * self.model.acoustic.cfg.subsample

    @property
    def lookahead_seconds(self) -> float:
        """Audio a frame needs past its own end before it is emitted (the algorithmic latency
        beyond the chunking): STFT reach + conv right context + lookahead frames."""
        # The same for every frame (each step below is linear in the frame index): frame 0's.
        frame = self.model.acoustic.cfg.lookahead_frames  # the last recurrent frame it reads
        front = self.model.acoustic.front
        for stride in reversed(front.time_strides if front is not None else ()):
            frame = stride * frame + 1  # kernel 3, padding 1: input frames up to s * j + 1
        needed = frame * self.features.hop + self.features.reach  # samples that frame needs
        end = self.model.acoustic.cfg.subsample * self.features.hop  # end of frame 0's span
        return (needed - end) / self.sample_rate

    def accept(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(S,) float mono samples at `sample_rate` -> (n, V) log-probs of the new frames."""
        if self.flushed:
            raise RuntimeError("the stream was flushed: reset() starts a new one")
        return self._emit(self.features.accept(_as_tensor(samples)), final=False)

    def flush(self) -> torch.Tensor:
        """End of stream: (n, V) log-probs of the frames still held (none after a flush)."""
        if self.flushed:
            return torch.zeros(0, self.model.acoustic.cfg.vocab_size)
        self.flushed = True
        return self._emit(self.features.accept(torch.zeros(0), final=True), final=True)

    def reset(self) -> None:
        """Start a new stream: the carried audio, context and recurrent state are cleared."""
        self.features.reset()
        self.acoustic.reset()
        self.frames_emitted = 0
        self.flushed = False

    def _emit(self, feats: torch.Tensor, final: bool) -> torch.Tensor:
        log_probs = self.acoustic.accept(feats, final=final).float().cpu()  # (n, V)
        self.frames_emitted += log_probs.shape[0]
        return log_probs


def _as_tensor(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(S,) (or (S, 1)) float samples -> (S,) float32 tensor; ValueError for other shapes."""
    x = torch.as_tensor(np.asarray(samples) if not isinstance(samples, torch.Tensor) else samples)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"stream audio: expected (S,) mono samples, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"stream audio: expected float samples in [-1, 1], got {x.dtype}")
    return x.float()
