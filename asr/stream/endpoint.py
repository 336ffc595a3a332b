"""Endpoints of a live stream: where a spoken segment ends, found as audio arrives.

`StreamingVad` classes every 10 ms frame of a stream as speech or not, the way
asr.segmenter classes a file's frames (WebRTC's VAD on 30 ms frames, overruled by the frame's
level against the noise floor), except that it reads the stream at its own rate where the VAD
takes it (8, 16, 32 or 48 kHz: it analyses the 0-4 kHz band at each, so no resampler delays
the decisions), and that the noise floor is a running one: the
lowest 10th percentile of frame energies over the last few seconds, past frames only, digital
silence left out.
`Endpointer` turns those decisions into segments: a segment opens `pad` before its first speech
frame and ends `silence` after its last one; a segment that reaches `max_seconds` is cut at its
quietest point (asr.segmenter.split_at_quietest). Each frame's decision depends only on the
frames before it, so the segments do not depend on how the stream was chunked.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import soxr

from asr.segmenter import (
    FRAME_SECONDS,
    PER_VAD_FRAME,
    VAD_RATE,
    SegmenterConfig,
    log_energy,
    split_at_quietest,
    vad_decisions,
)

FLOOR_CHUNK = 100  # frames (1 s) per noise-floor percentile, as asr.segmenter.noise_floor
FLOOR_REACH = 5  # chunks back whose percentiles the running floor takes the lowest of
# log10 mean square below one 16-bit step: digital silence (a muted or starting input), which
# would set the floor far below the room's real noise
DIGITAL_SILENCE = -9.0
VAD_RATES = (8000, 16000, 32000, 48000)  # Hz the WebRTC VAD reads directly


class StreamingVad:
    """Samples at `sample_rate` in, one (speech, log10 energy) decision per 10 ms frame out.

    Frame i covers seconds [i / 100, (i + 1) / 100) of the stream; a frame is returned once
    the 30 ms VAD frame holding it is complete. A stream at a rate the VAD does not read is
    resampled to 8 kHz first, and its frames come about 70 ms later (the resampler's delay).
    """

    def __init__(self, sample_rate: int, cfg: SegmenterConfig):
        import webrtcvad  # the webrtcvad-wheels package

        self.sample_rate = sample_rate
        self.rate = sample_rate if sample_rate in VAD_RATES else VAD_RATE  # what the VAD reads
        self.energy_frame = self.rate // 100  # samples per 10 ms frame
        self.vad_frame = self.energy_frame * PER_VAD_FRAME  # samples per 30 ms VAD frame
        self.cfg = cfg
        self._vad = webrtcvad.Vad(cfg.aggressiveness)
        self.reset()

    def reset(self) -> None:
        """A new stream: frame 0 is the next sample's."""
        self._resampler = (
            None
            if self.sample_rate == self.rate
            else soxr.ResampleStream(self.sample_rate, self.rate, 1, dtype="float32")
        )
        self._carry = np.zeros(0, np.float32)  # samples short of a whole VAD frame
        self._chunk: list[float] = []  # energies of the floor's unfinished chunk
        self._floors: deque[float] = deque(maxlen=FLOOR_REACH)  # finished chunks' percentiles

    def accept(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(S,) float32 mono samples -> (F,) bool speech, (F,) float32 energy of the frames
        they complete (F may be 0)."""
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples.astype(np.float32))
        return self._frames(samples, last=False)

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """End of stream: the frames still held (a last partial VAD frame counts as
        non-speech, as asr.segmenter.analyse has it; a partial 10 ms frame is dropped)."""
        tail = np.zeros(0, np.float32)
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(tail, last=True)
        return self._frames(tail, last=True)

    def _frames(self, samples: np.ndarray, last: bool) -> tuple[np.ndarray, np.ndarray]:
        samples = np.concatenate([self._carry, samples])
        usable = len(samples) // self.vad_frame * self.vad_frame
        if last:  # whole 10 ms frames of the partial VAD frame, without a VAD decision
            usable = len(samples) // self.energy_frame * self.energy_frame
        self._carry = samples[usable:]
        if usable == 0:
            return np.zeros(0, bool), np.zeros(0, np.float32)
        energy = log_energy(samples[:usable], self.energy_frame)  # (F,) per 10 ms
        whole = usable // self.vad_frame * self.vad_frame
        flags = vad_decisions(self._vad, samples[:whole], self.rate)  # (F',) F' <= F
        voiced = np.zeros(len(energy), bool)
        voiced[: len(flags)] = flags
        speech = np.array([self._decide(v, e) for v, e in zip(voiced, energy, strict=True)], bool)
        return speech, energy

    def _decide(self, voiced: bool, energy: float) -> bool:
        """One frame's decision from the VAD's and its energy against the running floor."""
        if energy > DIGITAL_SILENCE:
            self._chunk.append(float(energy))
        floors = [*self._floors, float(np.percentile(self._chunk, 10))] if self._chunk else []
        if len(self._chunk) == FLOOR_CHUNK:
            self._floors.append(floors[-1])
            self._chunk = []
        speech = bool(voiced)
        if not floors:  # only digital silence so far
            return speech and energy > DIGITAL_SILENCE
        floor = min(floors)
        if self.cfg.quiet_db > 0:
            speech = speech and energy > floor + self.cfg.quiet_db / 10
        if self.cfg.loud_db > 0:
            speech = speech or energy > floor + self.cfg.loud_db / 10
        return speech


class Endpointer:
    """Per-frame speech decisions -> segments [start, end) in 10 ms frames from the stream's
    start.

    While no speech has been heard the open segment keeps only the last `cfg.pad` seconds; the
    first speech frame opens it for real; `silence` seconds without speech end it (the segment
    then ends there, its trailing silence included). An open segment longer than
    `cfg.max_seconds` is cut at its quietest point at least `cfg.min_seconds` from either end,
    and the rest goes on as the next segment.
    """

    def __init__(self, cfg: SegmenterConfig, silence: float):
        if silence <= 0:
            raise ValueError(f"endpoint silence must be > 0 seconds, got {silence}")
        self.silence_frames = max(1, round(silence / FRAME_SECONDS))
        self.pad_frames = round(cfg.pad / FRAME_SECONDS)
        self.max_frames = int(cfg.max_seconds / FRAME_SECONDS)
        self.min_frames = round(cfg.min_seconds / FRAME_SECONDS)
        self.reset()

    def reset(self, at: int = 0) -> None:
        """Start again with no speech heard, the next frame being frame `at`."""
        self.frame = at  # frames pushed so far
        self.start = at  # first frame of the open segment
        self.speech_seen = False  # the open segment holds speech
        self._speech_end = at  # end frame of the last speech frame
        self._energy: list[float] = []  # (frame - start,) the open segment's frame energies

    def push(self, speech: bool, energy: float) -> tuple[int, int] | None:
        """One frame's decision -> the (start, end) frames of a segment it finished, or None."""
        self.frame += 1
        self._energy.append(energy)
        finished = None
        if speech:
            self.speech_seen = True
            self._speech_end = self.frame
        elif self.speech_seen and self.frame - self._speech_end >= self.silence_frames:
            finished = self._close(self.frame)
            self.speech_seen = False
        if self.speech_seen and self.frame - self.start > self.max_frames:
            # mean log energy over 0.1 s, as asr.segmenter: a pause beats a stop consonant
            energy = np.asarray(self._energy, np.float32)
            quietness = np.convolve(energy, np.ones(10, np.float32) / 10, mode="same")
            length = self.frame - self.start
            _, cut = split_at_quietest(0, length, quietness, self.max_frames, self.min_frames)[0]
            finished = self._close(self.start + cut)
        if not self.speech_seen:  # keep only the pad before speech that may come
            self._advance(max(self.start, self.frame - self.pad_frames))
        return finished

    def _close(self, end: int) -> tuple[int, int]:
        """Finish the open segment at frame `end`; the next one starts there."""
        segment = (self.start, end)
        self._advance(end)
        return segment

    def _advance(self, start: int) -> None:
        del self._energy[: start - self.start]
        self.start = start
