"""Benchmark: log-mel frames per second, ours (asr.features.LogMel, batched) against librosa.

    .venv/bin/python bench/features.py --manifest exp/an4-idle-s0/data/test.jsonl

The same audio (the manifest's files, read once before timing) goes through
1. ours: `LogMel` on padded batches of similar-length utterances (`--batch` per batch),
   torch's default threads and, separately, one thread; this includes the level
   normalisation, CMVN and the zeroing of padded frames, which librosa does not do;
2. librosa: `librosa.feature.melspectrogram` then the log, one file at a time, as librosa is
   used, with our settings: FFT size, window, hop, mel count, power 2, centred with zero
   padding, and our filterbank (torchaudio's: HTK mel scale, unnormalised triangles, so
   `htk=True, norm=None`; librosa's defaults, Slaney scale and area-normalised triangles,
   would compute other numbers). `melspectrogram` builds its filterbank on every call;
3. librosa with the filterbank built once (`librosa_cached_filters_*`): `librosa.stft`,
   |X|^2, then a product with `librosa.filters.mel` (same settings), as a caller who keeps
   the filters would write it.
Before timing, every file's mel power from ours and from `melspectrogram` is compared once:
`mel_power_max_rel_diff` is the largest relative difference over the bins within 60 dB of
the file's peak (below that, float32 FFT rounding dominates); above 1e-3 the bench stops,
as the two would not compute the same thing.
Each method runs `--repeats` times after one warm-up pass; the fastest pass counts (the
machine is shared, so the slowest passes mostly measure the neighbours). Frames are the
valid output frames (S // hop + 1 per file). One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from importlib.metadata import version

import librosa
import numpy as np
import torch

from asr.data import read_manifest
from asr.features import FeatureConfig, LogMel


def ours_runner(wavs: list[np.ndarray], cfg: FeatureConfig, batch: int) -> Callable[[], int]:
    """Padded batches of length-sorted utterances; returns a pass that gives its frame count."""
    order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
    batches = []
    for start in range(0, len(order), batch):
        group = [torch.from_numpy(wavs[i]) for i in order[start : start + batch]]
        lens = torch.tensor([len(w) for w in group])
        batches.append((torch.nn.utils.rnn.pad_sequence(group, batch_first=True), lens))
    log_mel = LogMel(cfg).eval()

    def run() -> int:
        frames = 0
        with torch.no_grad():
            for padded, lens in batches:
                _, frame_lens = log_mel(padded, lens)
                frames += int(frame_lens.sum())
        return frames

    return run


def librosa_mel(wav: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mel power (n_mels, T) with our settings and our (torchaudio's) filterbank."""
    return librosa.feature.melspectrogram(
        y=wav,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        win_length=cfg.win_length,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        power=2.0,
        center=True,
        pad_mode="constant",
        htk=True,  # torchaudio's mel scale, not librosa's default Slaney scale
        norm=None,  # unnormalised triangles, as torchaudio's default
    )


def librosa_runner(wavs: list[np.ndarray], cfg: FeatureConfig) -> Callable[[], int]:
    def run() -> int:
        frames = 0
        for wav in wavs:
            mel = librosa_mel(wav, cfg)
            np.log(np.maximum(mel, 1e-10))
            frames += mel.shape[1]
        return frames

    return run


def librosa_cached_runner(wavs: list[np.ndarray], cfg: FeatureConfig) -> Callable[[], int]:
    fb = librosa.filters.mel(
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        n_mels=cfg.n_mels,
        fmin=cfg.f_min,
        fmax=cfg.f_max,
        htk=True,
        norm=None,
    )  # (n_mels, n_fft // 2 + 1)

    def run() -> int:
        frames = 0
        for wav in wavs:
            spec = librosa.stft(
                wav,
                n_fft=cfg.n_fft,
                hop_length=cfg.hop_length,
                win_length=cfg.win_length,
                center=True,
                pad_mode="constant",
            )  # (n_fft // 2 + 1, T)
            mel = fb @ (spec.real**2 + spec.imag**2)
            np.log(np.maximum(mel, 1e-10))
            frames += mel.shape[1]
        return frames

    return run


def max_rel_diff(wavs: list[np.ndarray], cfg: FeatureConfig) -> float:
    """Largest relative mel-power difference, ours against librosa, within 60 dB of each peak."""
    mel = LogMel(cfg).mel
    worst = 0.0
    with torch.no_grad():
        for wav in wavs:
            ref = librosa_mel(wav, cfg)
            ours = mel(torch.from_numpy(wav)[None])[0].numpy()  # (n_mels, T)
            if ours.shape != ref.shape:
                raise RuntimeError(f"mel shapes differ: ours {ours.shape}, librosa {ref.shape}")
            loud = ref >= 1e-6 * ref.max()
            worst = max(worst, float((np.abs(ours - ref)[loud] / ref[loud]).max()))
    return worst


def fastest(run: Callable[[], int], repeats: int) -> tuple[int, float]:
    """(frames of a pass, best wall seconds of `repeats` passes after a warm-up)."""
    frames = run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return frames, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--batch", type=int, default=32, help="utterances per batch (ours)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cfg = FeatureConfig()
    wavs = [u.load(cfg.sample_rate).numpy() for u in read_manifest(args.manifest)]
    audio = sum(len(w) for w in wavs) / cfg.sample_rate
    threads = torch.get_num_threads()
    rel_diff = max_rel_diff(wavs, cfg)
    if rel_diff > 1e-3:
        raise RuntimeError(f"ours and librosa differ: mel power max relative diff {rel_diff:.2g}")

    frames, ours = fastest(ours_runner(wavs, cfg, args.batch), args.repeats)
    torch.set_num_threads(1)
    _, ours_one = fastest(ours_runner(wavs, cfg, args.batch), args.repeats)
    torch.set_num_threads(threads)
    lib_frames, lib = fastest(librosa_runner(wavs, cfg), args.repeats)
    cached_frames, cached = fastest(librosa_cached_runner(wavs, cfg), args.repeats)
    if not lib_frames == cached_frames == frames:
        raise RuntimeError(
            f"frame counts differ: ours {frames}, librosa {lib_frames} and {cached_frames}"
        )
    out = {
        "benchmark": "features",
        "manifest": args.manifest,
        "files": len(wavs),
        "audio_seconds": round(audio, 1),
        "frames": frames,
        "n_mels": cfg.n_mels,
        "n_fft": cfg.n_fft,
        "batch": args.batch,
        "torch_threads": threads,
        "librosa": version("librosa"),
        "mel_power_max_rel_diff": float(f"{rel_diff:.2g}"),
        "ours_frames_per_s": round(frames / ours),
        "ours_1_thread_frames_per_s": round(frames / ours_one),
        "librosa_frames_per_s": round(frames / lib),
        "librosa_cached_filters_frames_per_s": round(frames / cached),
        "ours_over_librosa": round(lib / ours, 2),
        "ours_1_thread_over_librosa": round(lib / ours_one, 2),
        "ours_over_librosa_cached_filters": round(cached / ours, 2),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
