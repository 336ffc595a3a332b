"""Long recordings -> segments at pauses, found by a voice-activity detector (WebRTC's).

A file is read in blocks and resampled block by block to 8 kHz (`asr.audio.read_blocks`:
libsndfile's blocks, or the frames FFmpeg decodes from an m4a, mp4, webm, ... gathered into
blocks, so no format is ever decoded whole); every 30 ms frame is classed speech or not by the
WebRTC VAD, and every 10 ms frame gets its log energy. Speech runs closer than `min_pause`
are merged, padded by `pad` on each side, and a run longer than `max_seconds` is cut at its
quietest point (lowest mean log energy over 0.1 s), so a word is not cut in two.
Only two small arrays per 10 ms frame are kept (about 1 MB an hour).

The WebRTC VAD (the `webrtcvad-wheels` package) always runs in its 8 kHz mode, whatever the
file's rate: it analyses the 0-4 kHz band only, at every rate it accepts. Why this detector and
these defaults: docs/long-audio.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.audio import read_blocks

VAD_RATE = 8000  # Hz: the WebRTC VAD's own analysis rate (it accepts 8/16/32/48 kHz)
VAD_FRAME = 240  # samples: 30 ms at VAD_RATE, the longest frame it takes (the fastest)
ENERGY_FRAME = 80  # samples: 10 ms, the resolution of segment times and cut points
PER_VAD_FRAME = VAD_FRAME // ENERGY_FRAME
FRAME_SECONDS = ENERGY_FRAME / VAD_RATE


@dataclass
class SegmenterConfig:
    aggressiveness: int = 3  # WebRTC VAD mode: 0 keeps the most as speech .. 3 the least
    # frames this many dB above the local noise floor (the 10th percentile of frame energies,
    # lowest within 5 s) are speech whatever the VAD says: it misses some loud sounds, and
    # what was said is for the recogniser to decide; 0 = the VAD alone
    loud_db: float = 20.0
    # frames the VAD calls speech that are no louder than the noise floor + this are not (it
    # takes steady noise for speech at first, while it adapts); 0 = the VAD alone
    quiet_db: float = 3.0
    min_pause: float = 0.5  # seconds of non-speech that separate two segments
    pad: float = 0.5  # seconds of audio kept before and after each speech run (a word's
    # quiet onset or tail the VAD missed), never past halfway to the next run
    max_seconds: float = 20.0  # longest segment; longer runs are cut at their quietest point
    min_seconds: float = 2.0  # a cut leaves at least this much on each side (<= max_seconds/2)
    block_seconds: float = 30.0  # audio read and resampled this much at a time

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"VAD aggressiveness must be 0..3, got {self.aggressiveness}")
        if not 0 < 2 * self.min_seconds <= self.max_seconds:
            raise ValueError(
                f"need 0 < 2 * min_seconds <= max_seconds, got {self.min_seconds}, "
                f"{self.max_seconds}"
            )
        if min(self.min_pause, self.pad, self.loud_db, self.quiet_db) < 0:
            raise ValueError("min_pause, pad, loud_db and quiet_db must be >= 0")
        if self.block_seconds <= 0:
            raise ValueError("block_seconds must be > 0")


@dataclass
class Segment:
    start: float  # seconds from the start of the file
    end: float  # seconds
    text: str = ""  # its transcript, once recognised


@dataclass
class FrameAnalysis:
    speech: np.ndarray  # (F,) bool: the VAD's decision for each 10 ms frame
    energy: np.ndarray  # (F,) float32: log10 of each 10 ms frame's mean square (dB / 10)
    duration: float  # seconds of audio in the file


def log_energy(samples: np.ndarray, frame: int) -> np.ndarray:
    """(n * frame,) samples -> (n,) float32 log10 mean square of each `frame` samples.

    >>> log_energy(np.full(160, 0.1, np.float32), 80).round(3).tolist()
    [-2.0, -2.0]
    """
    frames = samples.reshape(-1, frame)  # (n, frame)
    return np.log10(np.mean(frames**2, axis=1) + 1e-10).astype(np.float32)


def vad_decisions(vad, samples: np.ndarray, rate: int = VAD_RATE) -> np.ndarray:
    """(n * 30 ms,) float samples in [-1, 1] at `rate` (8/16/32/48 kHz) -> (3n,) bool: each
    30 ms WebRTC VAD decision repeated for its three 10 ms frames."""
    step = 2 * VAD_FRAME * rate // VAD_RATE  # bytes per 30 ms of 16-bit PCM
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    flags = [vad.is_speech(pcm[i : i + step], rate) for i in range(0, len(pcm), step)]
    return np.repeat(np.array(flags, dtype=bool), PER_VAD_FRAME)


def analyse(path: str | Path, cfg: SegmenterConfig) -> FrameAnalysis:
    """Stream the file once: the VAD decision and the log energy of every 10 ms frame.

    The last partial frame is dropped. AudioError names a file that cannot be read.
    """
    import webrtcvad  # the webrtcvad-wheels package

    vad = webrtcvad.Vad(cfg.aggressiveness)
    speech: list[np.ndarray] = []
    energy: list[np.ndarray] = []
    carry = np.zeros(0, np.float32)  # samples left over from the previous block
    total = 0
    for block in read_blocks(path, VAD_RATE, cfg.block_seconds):
        total += len(block)
        samples = np.concatenate([carry, block])
        usable = len(samples) // VAD_FRAME * VAD_FRAME
        carry = samples[usable:]
        if usable:
            energy.append(log_energy(samples[:usable], ENERGY_FRAME))
            speech.append(vad_decisions(vad, samples[:usable]))
    if len(carry) >= ENERGY_FRAME:  # the tail shorter than one VAD frame: energy only
        tail = log_energy(carry[: len(carry) // ENERGY_FRAME * ENERGY_FRAME], ENERGY_FRAME)
        energy.append(tail)
        speech.append(np.zeros(len(tail), dtype=bool))
    return FrameAnalysis(
        speech=np.concatenate(speech) if speech else np.zeros(0, bool),
        energy=np.concatenate(energy) if energy else np.zeros(0, np.float32),
        duration=total / VAD_RATE,
    )


def noise_floor(energy: np.ndarray, chunk: int = 100, reach: int = 5) -> np.ndarray:
    """(F,) log10 frame energies -> (F,) local noise floor: the 10th percentile of each
    `chunk` frames, then the lowest of that within `reach` chunks either side.

    >>> e = np.r_[np.full(300, -6.0), np.full(300, -2.0)].astype(np.float32)
    >>> noise_floor(e, chunk=100, reach=1)[[0, 350, 450]].tolist()
    [-6.0, -6.0, -2.0]
    """
    if len(energy) == 0:
        return energy
    num_chunks = -(-len(energy) // chunk)
    padded = np.pad(energy, (0, num_chunks * chunk - len(energy)), mode="edge")
    per_chunk = np.percentile(padded.reshape(num_chunks, chunk), 10, axis=1)
    edged = np.pad(per_chunk, reach, mode="edge")
    local = np.lib.stride_tricks.sliding_window_view(edged, 2 * reach + 1).min(axis=1)
    return np.repeat(local, chunk)[: len(energy)].astype(np.float32)


def speech_runs(speech: np.ndarray, min_gap: int) -> list[tuple[int, int]]:
    """(F,) bool -> [start, end) frame ranges of speech, merged across gaps under `min_gap`.

    >>> speech_runs(np.array([0, 1, 1, 0, 1, 0, 0, 0, 1], bool), min_gap=2)
    [(1, 5), (8, 9)]
    """
    edges = np.diff(np.concatenate([[0], speech.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if runs and s - runs[-1][1] < min_gap:
            runs[-1] = (runs[-1][0], e)
        else:
            runs.append((s, e))
    return runs


def pad_runs(runs: list[tuple[int, int]], pad: int, num_frames: int) -> list[tuple[int, int]]:
    """Widen each run by `pad` frames each side, within the file and no further than halfway
    to its neighbours, so padded runs never overlap.

    >>> pad_runs([(2, 4), (7, 9)], pad=3, num_frames=10)
    [(0, 5), (5, 10)]
    """
    out = []
    for i, (s, e) in enumerate(runs):
        left = 0 if i == 0 else (runs[i - 1][1] + s) // 2
        right = num_frames if i == len(runs) - 1 else (e + runs[i + 1][0]) // 2
        out.append((max(left, s - pad), min(right, e + pad)))
    return out


def split_at_quietest(
    start: int, end: int, quietness: np.ndarray, max_len: int, min_len: int
) -> list[tuple[int, int]]:
    """Cut frames [start, end) into pieces of at most `max_len` frames, each cut before the frame
    of lowest `quietness` (F,) where it may fall: at least `min_len` frames from either end.

    >>> q = np.array([5, 5, 5, 0, 5, 5, 1, 5, 5, 5], np.float32)
    >>> split_at_quietest(0, 10, q, max_len=5, min_len=2)
    [(0, 3), (3, 6), (6, 10)]
    """
    pieces = []
    while end - start > max_len:
        lo, hi = start + min_len, min(start + max_len, end - min_len)  # where the cut may fall
        cut = lo + int(np.argmin(quietness[lo : hi + 1]))
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def segments_from_frames(analysis: FrameAnalysis, cfg: SegmenterConfig) -> list[Segment]:
    """Frame decisions -> segments (in time order, not overlapping) that hold all the speech."""
    num_frames = len(analysis.speech)
    speech = analysis.speech
    floor = noise_floor(analysis.energy)
    if cfg.quiet_db > 0:
        speech = speech & (analysis.energy > floor + cfg.quiet_db / 10)
    if cfg.loud_db > 0:
        speech = speech | (analysis.energy > floor + cfg.loud_db / 10)
    runs = speech_runs(speech, round(cfg.min_pause / FRAME_SECONDS))
    runs = pad_runs(runs, round(cfg.pad / FRAME_SECONDS), num_frames)
    max_len = int(cfg.max_seconds / FRAME_SECONDS)
    min_len = round(cfg.min_seconds / FRAME_SECONDS)
    # Mean log energy over 0.1 s: a pause between words beats a stop consonant's short silence.
    quietness = np.convolve(analysis.energy, np.ones(10, np.float32) / 10, mode="same")
    segments = []
    for s, e in runs:
        for a, b in split_at_quietest(s, e, quietness, max_len, min_len):
            end = analysis.duration if b == num_frames else b * FRAME_SECONDS
            segments.append(Segment(round(a * FRAME_SECONDS, 3), round(end, 3)))
    return segments


def find_segments(path: str | Path, cfg: SegmenterConfig | None = None) -> list[Segment]:
    """The speech segments of a file of any length, read in blocks; AudioError names a file
    that cannot be read. A file without speech gives no segments."""
    cfg = cfg or SegmenterConfig()
    return segments_from_frames(analyse(path, cfg), cfg)
