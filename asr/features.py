"""Features: batched log-mel on the model's device, global CMVN, SpecAugment; `LogMelStream`
computes the same log-mel over a waveform that arrives in pieces."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio
from torch import nn
from torch.nn import functional as F


@dataclass
class FeatureConfig:
    sample_rate: int = 16000  # audio is resampled to this rate before anything else
    n_mels: int = 80  # mel filterbank channels
    win_ms: float = 25.0  # analysis window length
    hop_ms: float = 10.0  # frame shift
    f_min: float = 0.0  # lowest filter edge, Hz
    f_max: float | None = None  # highest filter edge, Hz (None = Nyquist)
    # Scale the audio to the same RMS before the log-mel, so recording level cannot matter
    # (false: the recording's own level, a fixed gain of 1; streamable)
    normalize_level: bool = True
    # The RMS that normalize_level measures: 0 = each utterance's whole (it needs the whole
    # utterance, so it cannot stream); > 0 = a running RMS over the last so many seconds of
    # audio, up to each frame (streamable)
    level_window_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.level_window_s >= 0:  # (also refuses NaN)
            raise ValueError(f"level_window_s must be 0 or more seconds, not {self.level_window_s}")

    @property
    def streamable(self) -> bool:
        """Whether a frame's features depend only on the audio up to a fixed reach past it."""
        return not self.normalize_level or self.level_window_s > 0

    @property
    def level_window_blocks(self) -> int:
        """The running level's window in hops (at least one); 0 without a running level.

        >>> FeatureConfig(level_window_s=3.0).level_window_blocks
        300
        """
        if not (self.normalize_level and self.level_window_s > 0):
            return 0
        return max(1, round(self.level_window_s * 1000 / self.hop_ms))

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def n_fft(self) -> int:
        """The FFT size: the window length rounded up to a power of two.

        >>> cfg = FeatureConfig(sample_rate=8000)
        >>> cfg.win_length, cfg.hop_length, cfg.n_fft
        (200, 80, 256)
        """
        return 1 << (self.win_length - 1).bit_length()  # next power of two


@dataclass
class SpecAugmentConfig:
    freq_masks: int = 2  # frequency masks per utterance
    freq_width: int = 10  # widest frequency mask, in mel channels
    time_masks: int = 2  # time masks per utterance
    time_width: int = 20  # widest time mask, in frames
    time_max_ratio: float = 0.1  # a time mask never covers more than this share of the batch length


def num_frames(num_samples: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Frames a centred STFT gives for each length: S // hop + 1.

    >>> num_frames(torch.tensor([16000, 159, 160]), hop_length=160)  # 1 s at 16 kHz, 10 ms hop
    tensor([101,   1,   2])
    """
    return torch.div(num_samples, hop_length, rounding_mode="floor") + 1


LEVEL_POWER = 0.01  # mean square that level normalisation scales to: RMS 0.1 = -20 dBFS
MIN_POWER = 1e-10  # floor of mel powers and of a measured mean square


def block_energies(wavs: torch.Tensor, blocks: int, hop_length: int) -> torch.Tensor:
    """Sums of squares of consecutive hops: (B, S) -> (B, blocks) float64, block k over samples
    [k * hop, (k + 1) * hop); samples past S count as zeros."""
    padded = F.pad(wavs.double(), (0, blocks * hop_length - wavs.shape[1]))
    return padded.square().view(wavs.shape[0], blocks, hop_length).sum(-1)


def window_mean_square(energies: torch.Tensor, counts: torch.Tensor, window: int) -> torch.Tensor:
    """Mean square over each block and the `window - 1` blocks before it (fewer at the start).

    energies (B, N) sums of squares and counts (B, N) samples per block -> (B, N) float32.

    >>> window_mean_square(torch.tensor([[4.0, 0.0, 8.0]]), torch.tensor([[2, 2, 1]]), 2)
    tensor([[2.0000, 1.0000, 2.6667]])
    """
    sums = F.pad(energies.double().cumsum(1), (window, 0))  # (B, window + N)
    samples = F.pad(counts.double().cumsum(1), (window, 0))
    in_window = (sums[:, window:] - sums[:, :-window]).clamp(min=0)  # (B, N)
    return (in_window / (samples[:, window:] - samples[:, :-window]).clamp(min=1)).float()


def running_level(
    wavs: torch.Tensor, wav_lens: torch.Tensor, hop_length: int, window: int, frames: int
) -> torch.Tensor:
    """Mean square of each frame's running level: (B, S), (B,) -> (B, frames) float32.

    Frame t's level is the mean square of the samples in hops t - window + 1 .. t (hop k:
    samples [k * hop, (k + 1) * hop) within the utterance's length): the audio up to one hop
    past the frame's centre, so a stream knows it as soon as it has that hop.
    """
    energies = block_energies(wavs, frames, hop_length)  # (B, frames)
    starts = torch.arange(frames, device=wavs.device) * hop_length
    counts = (wav_lens.to(wavs.device)[:, None] - starts[None, :]).clamp(0, hop_length)
    return window_mean_square(energies, counts, window)


def log_mel_power(mel: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
    """Log of mel powers (B, T, n_mels), each frame first scaled from its level (B, T) (a mean
    square; None: unscaled) to LEVEL_POWER, as if its audio had been."""
    if level is not None:
        mel = mel * (LEVEL_POWER / level.clamp(min=MIN_POWER))[:, :, None]
    return mel.clamp(min=MIN_POWER).log()


def filter_bands(fb: torch.Tensor, parts: int) -> list[tuple[slice, slice]]:
    """Split a filterbank (F, n_mels) into `parts` runs of filters, each with the bins it covers.

    Returns (bins, mels) slices; every nonzero of `fb` lies in one fb[bins, mels] block, so
    x @ fb is, column block by column block, x[..., bins] @ fb[bins, mels].

    >>> fb = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    >>> filter_bands(fb, 2)
    [(slice(0, 3, None), slice(0, 2, None)), (slice(3, 4, None), slice(2, 3, None))]
    """
    bands = []
    for mels in torch.arange(fb.shape[1]).tensor_split(parts):
        if len(mels) == 0:
            continue
        bins = fb[:, mels].ne(0).any(1).nonzero().flatten().tolist() or [0]  # [0]: all-zero filters
        bands.append((slice(bins[0], bins[-1] + 1), slice(int(mels[0]), int(mels[-1]) + 1)))
    return bands


def mel_spectrogram_settings(cfg: FeatureConfig) -> dict:
    """torchaudio `MelSpectrogram` arguments for `cfg`: power 2, centred, zero padding at the
    edges (like the padding of a batch: an utterance gets the same features alone and in a
    batch with longer ones)."""
    return {
        "sample_rate": cfg.sample_rate,
        "n_fft": cfg.n_fft,
        "win_length": cfg.win_length,
        "hop_length": cfg.hop_length,
        "f_min": cfg.f_min,
        "f_max": cfg.f_max,
        "n_mels": cfg.n_mels,
        "power": 2.0,
        "center": True,
        "pad_mode": "constant",
    }


class ChunkedMelSpectrogram(torchaudio.transforms.MelSpectrogram):
    """torchaudio's mel power spectrogram (centred, zero padding, power 2), computed faster.

    forward(wavs (B, S)) -> mel power (B, n_mels, T), T = S // hop + 1: the parent's values (to
    float rounding) from the parent's buffers (window, filterbank), so state_dict keys and ONNX
    export are unchanged. Two things make it faster than the parent on the CPU:
    - frames go through `CHUNK_FRAMES` at a time, so a chunk's frames, spectra and powers stay
      in cache (accelerators take the whole batch as one chunk);
    - each mel filter is a narrow triangle, so the filterbank product runs in `BANDS` blocks of
      filters, each over only the bins it covers: a quarter of the dense product's work.
    Given each row's frame count, the CPU also leaves out the frames of a batch's padding.
    """

    CHUNK_FRAMES = 2048
    BANDS = 4

    def __init__(self, cfg: FeatureConfig):
        super().__init__(**mel_spectrogram_settings(cfg))
        self.bands = filter_bands(self.mel_scale.fb, self.BANDS)
        self.register_load_state_dict_post_hook(self._bands_of_loaded_filterbank)

    @staticmethod
    def _bands_of_loaded_filterbank(module: ChunkedMelSpectrogram, _incompatible_keys) -> None:
        """A checkpoint brings its own filterbank: take the bands from the one loaded."""
        module.bands = filter_bands(module.mel_scale.fb, module.BANDS)

    def forward(self, wavs: torch.Tensor, frame_lens: torch.Tensor | None = None) -> torch.Tensor:
        """wavs (B, S) -> mel power (B, n_mels, T). With frame_lens (B,), chunks that start past
        a row's last frame are not computed on the CPU: a row's frames from its length on
        hold no meaningful value (0 or the padding's), and callers mask them."""
        n_fft, fb = self.n_fft, self.mel_scale.fb  # fb: (n_fft // 2 + 1, n_mels)
        window = self.centred_window()
        padded = F.pad(wavs, (n_fft // 2, n_fft // 2))  # centre=True with zeros
        frames = padded.unfold(-1, n_fft, self.hop_length)  # (B, T, n_fft), a view
        batch, total = frames.shape[:2]
        cpu = wavs.device.type == "cpu"
        skip = cpu and frame_lens is not None
        mel = (wavs.new_zeros if skip else wavs.new_empty)(batch, total, fb.shape[1])
        start = 0
        while start < total:
            rows = (frame_lens > start).nonzero().flatten() if skip else None  # (B',)
            every = rows is None or len(rows) == batch  # then no gather and no scatter
            step = max(1, self.CHUNK_FRAMES // (batch if every else len(rows))) if cpu else total
            chunk = frames[:, start : start + step] if every else frames[rows, start : start + step]
            out = mel[:, start : start + step] if every else None
            out = self.mel_of_frames(chunk, window, out)
            if not every:
                mel[rows, start : start + step] = out
            start += step
        return mel.transpose(1, 2)

    def centred_window(self) -> torch.Tensor:
        """The analysis window centred in n_fft zeros, as torch.stft applies it: (n_fft,)."""
        left = (self.n_fft - self.win_length) // 2
        return F.pad(self.spectrogram.window, (left, self.n_fft - self.win_length - left))

    def mel_of_frames(
        self, frames: torch.Tensor, window: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mel power of frames of samples: (B, t, n_fft) -> (B, t, n_mels), into `out` if given.
        `window` is `centred_window()`."""
        fb = self.mel_scale.fb  # (n_fft // 2 + 1, n_mels)
        spec = torch.fft.rfft(frames * window)  # (B, t, F) complex
        power = spec.real.square()
        power.addcmul_(spec.imag, spec.imag)  # |X|^2 without abs()'s square root
        if out is None:
            out = power.new_empty(*power.shape[:2], fb.shape[1])
        for bins, mels in self.bands:
            out[..., mels] = power[..., bins] @ fb[bins, mels]  # (B, t, n_mels) blocks
        return out


class LogMel(nn.Module):
    """Zero-padded waveforms -> normalised log-mel features.

    forward(wavs (B, S), wav_lens (B,)) -> feats (B, T, n_mels), frame_lens (B,).
    CMVN statistics live in buffers (saved with the model); padded frames are zero.
    """

    def __init__(self, cfg: FeatureConfig):
        super().__init__()
        self.cfg = cfg
        self.mel = ChunkedMelSpectrogram(cfg)
        self.register_buffer("cmvn_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("cmvn_std", torch.ones(cfg.n_mels))

    def _valid(self, frame_lens: torch.Tensor, t: int) -> torch.Tensor:
        return torch.arange(t, device=frame_lens.device)[None, :] < frame_lens[:, None]  # (B, T)

    def raw(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel before the global CMVN: (B, S) -> (B, T, n_mels), (B,). Runs in float32
        always; padded frames hold no meaningful value."""
        wavs = wavs.float()
        if self.cfg.normalize_level and not self.cfg.level_window_s:
            # The padding must be zero anyway (the last frames' STFT reads it), so the sum runs
            # over whole rows: no (B, S) mask, and the masked sum's value, bit for bit.
            power = wavs.square().sum(1) / wav_lens.clamp(min=1)
            wavs = wavs * (0.1 / power.clamp(min=MIN_POWER).sqrt())[:, None]  # to LEVEL_POWER
        total = wavs.shape[1] // self.cfg.hop_length + 1
        frame_lens = num_frames(wav_lens, self.cfg.hop_length).clamp(max=total)
        with torch.autocast(wavs.device.type, enabled=False):
            mel = self.mel(wavs, frame_lens).transpose(1, 2)  # (B, T, n_mels)
            level = None
            if self.cfg.level_window_blocks:
                window = self.cfg.level_window_blocks
                level = running_level(wavs, wav_lens, self.cfg.hop_length, window, total)
            feats = log_mel_power(mel, level)  # (B, T, n_mels)
        return feats, frame_lens

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        feats, frame_lens = self.raw(wavs, wav_lens)
        feats = self.normalise(feats)
        feats.masked_fill_(~self._valid(frame_lens, feats.shape[1])[..., None], 0)
        return feats, frame_lens

    def normalise(self, feats: torch.Tensor) -> torch.Tensor:
        """Global CMVN of log-mels (..., n_mels)."""
        return (feats - self.cmvn_mean) / self.cmvn_std

    @torch.no_grad()
    def fit_cmvn(self, batches) -> int:
        """Set the global mean/std from an iterable of (wavs, wav_lens); returns frames seen."""
        total = torch.zeros((), dtype=torch.float64)
        sums = torch.zeros(self.cfg.n_mels, dtype=torch.float64)
        squares = torch.zeros(self.cfg.n_mels, dtype=torch.float64)
        device = self.cmvn_mean.device
        for wavs, wav_lens in batches:
            feats, frame_lens = self.raw(wavs.to(device), wav_lens.to(device))
            valid = self._valid(frame_lens, feats.shape[1])
            x = feats[valid].double().cpu()  # (N, n_mels)
            total += x.shape[0]
            sums += x.sum(0)
            squares += x.square().sum(0)
        if total == 0:
            raise ValueError("no frames to compute CMVN statistics from")
        mean = sums / total
        var = (squares / total - mean.square()).clamp(min=1e-8)
        self.cmvn_mean.copy_(mean.float())
        self.cmvn_std.copy_(var.sqrt().float())
        return int(total)


class LogMelStream:
    """`LogMel` over a waveform that arrives in pieces: the frames it gives the whole waveform
    (to float rounding), each as soon as the audio its window covers is in.

    `accept(samples (S,))` -> the frames completed, CMVN applied: (n, n_mels), n >= 0;
    `accept(..., final=True)` ends the stream with the last frames, their windows zero-padded
    as LogMel pads the end of a waveform. Carried between pieces: the samples of the frames
    still open (the STFT's overlap) and, for a running level, the last window of hop energies.
    Runs in float32 on the device of `log_mel`'s buffers; no gradients.
    """

    def __init__(self, log_mel: LogMel):
        cfg = log_mel.cfg
        if not cfg.streamable:
            raise ValueError(
                "its features scale each utterance by the RMS of the whole (features."
                "normalize_level with level_window_s 0): only a model trained with a running "
                "level (level_window_s > 0) or none (normalize_level false) streams"
            )
        self.log_mel = log_mel
        self.hop = cfg.hop_length
        self.window_blocks = cfg.level_window_blocks
        mel = log_mel.mel
        self.n_fft = mel.n_fft
        self.window = mel.centred_window()
        # Samples past a frame's centre that its window weighs (the rest of n_fft is zeros),
        # and with a running level the frame's own hop too.
        left = (self.n_fft - mel.win_length) // 2
        self.reach = left + mel.win_length - self.n_fft // 2
        if self.window_blocks:
            self.reach = max(self.reach, self.hop)
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        device = self.log_mel.cmvn_mean.device
        self.frames = 0  # frames returned so far = index of the next frame
        self.received = 0  # samples accepted so far
        # Samples from index frames * hop - n_fft // 2 on (the first n_fft // 2: the zeros
        # a centred STFT pads the start with).
        self.wave = torch.zeros(self.n_fft // 2, device=device)
        self.energies = torch.zeros(0, dtype=torch.float64, device=device)  # last hops' sums

    @torch.no_grad()
    def accept(self, samples: torch.Tensor, final: bool = False) -> torch.Tensor:
        """(S,) float samples -> (n, n_mels) normalised log-mel frames."""
        samples = samples.to(self.wave.device, torch.float32).reshape(-1)
        self.wave = torch.cat((self.wave, samples))
        self.received += samples.numel()
        total = self.received // self.hop + 1  # the frames of the whole waveform so far
        if not final:
            total = min(total, max(0, (self.received - self.reach) // self.hop + 1))
        n = total - self.frames
        if n <= 0:
            return self.wave.new_zeros(0, self.log_mel.cfg.n_mels)
        span = (n - 1) * self.hop + self.n_fft
        # Past the samples received: the end's zero padding, or window weights of zero.
        wave = F.pad(self.wave, (0, max(0, span - self.wave.numel())))
        frames = wave[:span].unfold(0, self.n_fft, self.hop)  # (n, n_fft)
        with torch.autocast(wave.device.type, enabled=False):
            mel = self.log_mel.mel.mel_of_frames(frames[None], self.window)  # (1, n, n_mels)
            feats = log_mel_power(mel, self._level(n))[0]  # (n, n_mels)
        self.wave = self.wave[n * self.hop :]
        self.frames = total
        return self.log_mel.normalise(feats)

    def _level(self, n: int) -> torch.Tensor | None:
        """(1, n) running level of the next n frames (None without one); keeps the last
        window - 1 hop energies for the frames after them."""
        if not self.window_blocks:
            return None
        # Hops frames .. frames + n - 1 start n_fft // 2 samples into the wave buffer.
        half = self.n_fft // 2
        hops = self.wave[half : half + n * self.hop]
        new = block_energies(hops[None], n, self.hop)[0]  # (n,)
        starts = torch.arange(self.frames, self.frames + n, device=new.device) * self.hop
        new_counts = (self.received - starts).clamp(0, self.hop)
        # The hops kept from before are whole: a frame is out only once its hop is in.
        counts = torch.cat((torch.full_like(self.energies, self.hop), new_counts.double()))
        energies = torch.cat((self.energies, new))
        level = window_mean_square(energies[None], counts[None], self.window_blocks)
        self.energies = energies[-(self.window_blocks - 1) :] if self.window_blocks > 1 else new[:0]
        return level[:, -n:]


class SpecAugment(nn.Module):
    """Frequency and time masks (Park et al. 2019), independent per utterance; training only.

    forward(feats (B, T, F)) -> (B, T, F). Masked values are 0, the CMVN mean.
    """

    def __init__(self, cfg: SpecAugmentConfig):
        super().__init__()
        self.cfg = cfg
        self.freq = torchaudio.transforms.FrequencyMasking(cfg.freq_width, iid_masks=True)
        self.time = torchaudio.transforms.TimeMasking(
            cfg.time_width, iid_masks=True, p=cfg.time_max_ratio
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return feats
        x = feats.transpose(1, 2).unsqueeze(1)  # (B, 1, F, T)
        for _ in range(self.cfg.freq_masks):
            x = self.freq(x)
        for _ in range(self.cfg.time_masks):
            x = self.time(x)
        return x.squeeze(1).transpose(1, 2)
