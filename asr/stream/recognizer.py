"""Live recognition: audio in as it arrives, greedy partial text while a segment is spoken, and
a final result (text, word times and confidences) at each endpoint.

Two modes, chosen by the model:
- "redecode" (bidirectional models, which need a segment's future to read its past): the open
  segment's audio is kept and re-decoded greedily every `redecode_interval` seconds of new
  audio for the partial; a segment ends at `endpoint_silence` of VAD silence (or is cut at its
  quietest point at `max_segment_seconds`, which bounds the cost of a re-decode), and its
  final is the Transcriber's result for exactly that audio: the offline transcript of the
  segment, beam search + LM included when the Transcriber has a decoder.
- "incremental" (unidirectional models): an `asr.stream.encoder.StreamingEncoder` turns each
  chunk into its new log-prob frames; the greedy partial grows frame by frame (the last unit is
  carried between chunks, so a unit spread over a chunk border is one token). A segment ends
  after `endpoint_silence` of VAD silence or of blank frames once it has said something; its
  final decodes the segment's kept log-probs with the Transcriber's decoder.

Results carry times in seconds from the start of the stream. One chunk can finish more than
one segment: `accept_waveform` returns True while a final is waiting and `final()` takes them
in order; `finish()` ends the stream and returns all that is left.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from asr.align import WordTiming
from asr.decoding.greedy import GreedyDecoder
from asr.model import Recogniser
from asr.segmenter import FRAME_SECONDS, SegmenterConfig, split_at_quietest
from asr.stream.endpoint import Endpointer, StreamingVad
from asr.transcribe import Recognition, Transcriber

BLANK = 0  # the CTC blank's id in every tokenizer


@dataclass
class StreamWord:
    word: str
    start: float  # seconds from the start of the stream
    end: float  # seconds
    conf: float  # in [0, 1] (asr.align.path_word_timings)


@dataclass
class StreamResult:
    text: str  # the segment's transcript ("" when nothing was said)
    words: list[StreamWord] = field(default_factory=list)  # empty when words cannot be timed
    start: float = 0.0  # seconds from the start of the stream: the segment's audio
    end: float = 0.0


class FrameEncoder(Protocol):
    """What the incremental mode reads log-probs from (asr.stream.encoder.StreamingEncoder)."""

    sample_rate: int
    frame_seconds: float

    def accept(self, samples: np.ndarray) -> torch.Tensor: ...  # (S,) -> (n_new, V)

    def flush(self) -> torch.Tensor: ...  # the frames still held -> (n, V)

    def reset(self) -> None: ...


def as_float_samples(samples: np.ndarray) -> np.ndarray:
    """(S,) int16 or float mono samples -> (S,) float32 in [-1, 1] (int16 divided by 32768).

    >>> as_float_samples(np.array([16384, -32768], np.int16)).tolist()
    [0.5, -1.0]
    """
    samples = np.asarray(samples)
    if samples.ndim == 2 and samples.shape[1] == 1:
        samples = samples[:, 0]
    if samples.ndim != 1:
        raise ValueError(f"stream audio: expected (S,) mono samples, got shape {samples.shape}")
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"stream audio: expected float32 or int16 samples, got {samples.dtype}")
    return samples.astype(np.float32, copy=False)


def _words(rec: Recognition, offset: float) -> list[StreamWord]:
    words: list[WordTiming] = rec.words or []
    return [StreamWord(w.word, w.start + offset, w.end + offset, w.confidence) for w in words]


class _SampleBuffer:
    """Samples [origin, end) of a stream by absolute position: appended in chunks, read by
    range, dropped from the front."""

    def __init__(self) -> None:
        self.origin = 0  # absolute index of the first sample held
        self.end = 0  # absolute index one past the last sample held
        self._chunks: list[np.ndarray] = []

    def append(self, samples: np.ndarray) -> None:
        if len(samples):
            self._chunks.append(samples)
            self.end += len(samples)

    def _joined(self) -> np.ndarray:
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks)] if self._chunks else [np.zeros(0)]
        return self._chunks[0]

    def take(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end) (absolute), all held."""
        if not self.origin <= start <= end <= self.end:
            raise IndexError(f"samples {start}-{end} not in the buffer ({self.origin}-{self.end})")
        return self._joined()[start - self.origin : end - self.origin].astype(np.float32)

    def drop_before(self, start: int) -> None:
        start = min(start, self.end)
        if start > self.origin:
            self._chunks = [self._joined()[start - self.origin :]]
            self.origin = start


class _Redecode:
    """The redecode mode: the open segment's audio re-decoded as it grows."""

    def __init__(
        self, transcriber: Transcriber, cfg: SegmenterConfig, silence: float, every: float
    ):
        self.transcriber = transcriber
        self.rate = transcriber.sample_rate
        self.greedy = GreedyDecoder(transcriber.tokenizer)
        self.every = max(1, round(every * self.rate))  # new samples between partial decodes
        self.vad = StreamingVad(self.rate, cfg)
        self.endpointer = Endpointer(cfg, silence)
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        self.endpointer.reset()
        self.buffer = _SampleBuffer()
        self.epoch = 0  # absolute sample of the VAD's frame 0 (it restarts after a flush)
        self.partial = ""
        self.decoded_to = 0  # buffer end at the last partial decode

    def sample(self, frame: int) -> int:
        """Absolute sample index where 10 ms VAD frame `frame` begins."""
        return self.epoch + round(frame * FRAME_SECONDS * self.rate)

    def accept(self, samples: np.ndarray) -> list[StreamResult]:
        self.buffer.append(samples)
        finished = self._push(*self.vad.accept(samples))
        if not self.endpointer.speech_seen:
            self.decoded_to = self.buffer.end
        elif self.buffer.end - self.decoded_to >= self.every:
            self._decode_partial()
        self.buffer.drop_before(self.sample(self.endpointer.start))
        return finished

    def flush(self) -> list[StreamResult]:
        finished = self._push(*self.vad.flush())
        start, end = self.sample(self.endpointer.start), self.buffer.end
        if self.endpointer.speech_seen:
            finished.append(self._recognise(start, end))
        else:
            finished.append(StreamResult("", [], end / self.rate, end / self.rate))
        # the stream may go on: a new VAD epoch from here
        self.epoch = end
        self.vad.reset()
        self.endpointer.reset()
        self.buffer.drop_before(end)
        self.partial, self.decoded_to = "", end
        return finished

    def _push(self, speech: np.ndarray, energy: np.ndarray) -> list[StreamResult]:
        """Frame decisions through the endpointer; the finished segments that said something."""
        finished = []
        for is_speech, level in zip(speech.tolist(), energy.tolist(), strict=True):
            segment = self.endpointer.push(is_speech, level)
            if segment is not None:
                result = self._recognise(self.sample(segment[0]), self.sample(segment[1]))
                self.partial, self.decoded_to = "", self.sample(segment[1])
                if result.text:
                    finished.append(result)
        return finished

    def _recognise(self, start: int, end: int) -> StreamResult:
        """The Transcriber's result for samples [start, end), timed from the stream's start."""
        wav = torch.from_numpy(self.buffer.take(start, end))
        (rec,) = self.transcriber.recognise_batch(wav[None], torch.tensor([len(wav)]), True)
        offset = start / self.rate
        return StreamResult(rec.text, _words(rec, offset), offset, end / self.rate)

    def _decode_partial(self) -> None:
        """Greedy text of the open segment; the partial takes it only where it extends it."""
        wav = torch.from_numpy(
            self.buffer.take(self.sample(self.endpointer.start), self.buffer.end)
        )
        log_probs, lengths = self.transcriber.log_probs(wav[None], torch.tensor([len(wav)]))
        text = self.greedy.decode(log_probs, lengths)[0][0].text
        if text.startswith(self.partial):
            self.partial = text
        self.decoded_to = self.buffer.end


class _Incremental:
    """The incremental mode: log-prob frames from a streaming encoder, decided frame by frame."""

    def __init__(
        self, transcriber: Transcriber, encoder: FrameEncoder, cfg: SegmenterConfig, silence: float
    ):
        if silence <= 0:
            raise ValueError(f"endpoint silence must be > 0 seconds, got {silence}")
        self.transcriber = transcriber
        self.encoder = encoder
        self.rate = encoder.sample_rate
        self.fs = encoder.frame_seconds  # seconds per log-prob frame
        self.silence = silence
        self.blank_frames = max(1, round(silence / self.fs))  # blank run that ends a segment
        self.pad_frames = round(cfg.pad / self.fs)
        self.max_frames = int(cfg.max_seconds / self.fs)
        self.min_frames = round(cfg.min_seconds / self.fs)
        self.vad = StreamingVad(self.rate, cfg)
        self.reset()

    def reset(self) -> None:
        self.encoder.reset()
        self.vad.reset()
        self.epoch = 0.0  # seconds: where the encoder's frame 0 and the VAD's frame 0 begin
        self.samples = 0  # samples accepted since the epoch began
        self.waiting: deque[torch.Tensor] = deque()  # (V,) frames the VAD has not reached yet
        self.vad_frames: deque[bool] = deque()  # VAD decisions not yet read, in order
        self.vad_read = 0  # VAD frames read so far
        self.vad_done = 0  # VAD frames decided so far
        self.speech_end = 0.0  # seconds (epoch time): end of the last VAD speech frame
        self.frame = 0  # frames decided so far (epoch frame index of the next one)
        self._new_segment([], [])

    def _new_segment(self, rows: list[torch.Tensor], path: list[int]) -> None:
        """Open a segment that starts with these frames (left over from a cut)."""
        self.start = self.frame - len(rows)  # epoch frame index of its first frame
        self.rows, self.path = rows, path
        self.tokens: list[int] = []
        self.prev = BLANK  # the unit of the previous frame: a repeat of it is no new token
        self.blank_run = 0
        for unit in path:
            self._read(unit)

    def _read(self, unit: int) -> None:
        if unit != BLANK and unit != self.prev:
            self.tokens.append(unit)
        self.prev = unit
        self.blank_run = self.blank_run + 1 if unit == BLANK else 0

    @property
    def partial(self) -> str:
        return " ".join(self.transcriber.tokenizer.decode(self.tokens).split())

    def accept(self, samples: np.ndarray) -> list[StreamResult]:
        self.samples += len(samples)
        self.waiting.extend(self.encoder.accept(samples))
        self._take_vad(self.vad.accept(samples)[0])
        return self._decide(end_of_stream=False)

    def flush(self) -> list[StreamResult]:
        self.waiting.extend(self.encoder.flush())
        self._take_vad(self.vad.flush()[0])
        finished = self._decide(end_of_stream=True)
        now = self.epoch + self.samples / self.rate
        if self.tokens:
            finished.append(self._finish(len(self.rows)))
        else:
            finished.append(StreamResult("", [], now, now))
        # the stream may go on: a new epoch from here
        self.encoder.reset()
        self.vad.reset()
        self.epoch, self.samples = now, 0
        self.vad_frames.clear()
        self.vad_read = self.vad_done = self.frame = 0
        self.speech_end = 0.0
        self._new_segment([], [])
        return finished

    def _take_vad(self, speech: np.ndarray) -> None:
        self.vad_frames.extend(speech.tolist())
        self.vad_done += len(speech)

    def _decide(self, end_of_stream: bool) -> list[StreamResult]:
        """Read the waiting frames in time order, each once the VAD has decided up to its end
        (or at the end of the stream); the finished segments that said something."""
        finished = []
        while self.waiting:
            end = (self.frame + 1) * self.fs  # epoch seconds at the end of this frame
            if not end_of_stream and self.vad_done * FRAME_SECONDS < end - 1e-9:
                break
            while self.vad_frames and (self.vad_read + 1) * FRAME_SECONDS <= end + 1e-9:
                self.vad_read += 1
                if self.vad_frames.popleft():
                    self.speech_end = self.vad_read * FRAME_SECONDS
            row = self.waiting.popleft()
            unit = int(row.argmax())
            self.rows.append(row)
            self.path.append(unit)
            self.frame += 1
            self._read(unit)
            result = self._endpoint(end)
            if result is not None and result.text:
                finished.append(result)
        return finished

    def _endpoint(self, now: float) -> StreamResult | None:
        """After a frame ending at epoch second `now`: a final when the segment ended."""
        if not self.tokens:  # nothing said yet: keep only the pad before what may come
            if len(self.rows) > self.pad_frames:
                drop = len(self.rows) - self.pad_frames
                self._new_segment(self.rows[drop:], self.path[drop:])
            return None
        heard = self.speech_end > self.start * self.fs  # VAD speech within the segment
        if self.blank_run >= self.blank_frames or (heard and now - self.speech_end >= self.silence):
            return self._finish(len(self.rows))
        if len(self.rows) > self.max_frames:
            # cut where the model is surest it hears nothing, averaged over 0.1 s
            blank = torch.stack(self.rows)[:, BLANK].exp().numpy()
            width = max(1, round(0.1 / self.fs))
            quietness = np.convolve(1 - blank, np.ones(width) / width, mode="same")
            pieces = split_at_quietest(
                0, len(self.rows), quietness, self.max_frames, self.min_frames
            )
            return self._finish(pieces[0][1])
        return None

    def _finish(self, length: int) -> StreamResult:
        """The final of the segment's first `length` frames; the rest opens the next segment."""
        log_probs = torch.stack(self.rows[:length])[None]  # (1, T, V)
        (rec,) = self.transcriber.decode_log_probs(log_probs, torch.tensor([length]), True)
        offset = self.epoch + self.start * self.fs
        result = StreamResult(rec.text, _words(rec, offset), offset, offset + length * self.fs)
        self._new_segment(self.rows[length:], self.path[length:])
        return result


def _encoder_for(transcriber: Transcriber, name: str) -> FrameEncoder | None:
    """A StreamingEncoder over the transcriber's own model when it can stream frame by frame:
    left-to-right, with features that need no whole utterance. None for the others (a
    bidirectional or exported model, or one that scales each utterance by its whole level):
    they stream by re-decoding."""
    model = transcriber.model
    if not isinstance(model, Recogniser) or model.acoustic.cfg.bidirectional:
        return None
    if not model.features.cfg.streamable:
        return None
    from asr.stream.encoder import StreamingEncoder

    return StreamingEncoder(model, transcriber.tokenizer, name)


class StreamingRecognizer:
    """Partial and final results for a live audio stream (see the module docstring)::

    recognizer = StreamingRecognizer.from_checkpoint("exp/an4/best.pt")
    for chunk in chunks:  # float32 (or int16) mono at recognizer.sample_rate
        if recognizer.accept_waveform(chunk):
            print(recognizer.final().text)
        else:
            print("...", recognizer.partial())
    for result in recognizer.finish():
        print(result.text)
    """

    def __init__(
        self,
        transcriber: Transcriber,
        encoder: FrameEncoder | None = None,
        endpoint_silence: float = 0.5,
        redecode_interval: float = 0.5,
        max_segment_seconds: float = 20.0,
        vad_aggressiveness: int = 3,
    ):
        """`transcriber` decodes the finals (its decoder: greedy or beam search + LM); with an
        `encoder` (a unidirectional model's StreamingEncoder) the mode is "incremental", without
        one "redecode" (the transcriber's model re-run over the open segment)."""
        if redecode_interval <= 0:
            raise ValueError(f"redecode_interval must be > 0 seconds, got {redecode_interval}")
        if max_segment_seconds < 4:
            raise ValueError(f"max_segment_seconds must be at least 4, got {max_segment_seconds}")
        cfg = SegmenterConfig(
            aggressiveness=vad_aggressiveness,
            max_seconds=max_segment_seconds,
            min_seconds=min(2.0, max_segment_seconds / 4),
        )
        self._settings = {
            "endpoint_silence": endpoint_silence,
            "redecode_interval": redecode_interval,
            "max_segment_seconds": max_segment_seconds,
            "vad_aggressiveness": vad_aggressiveness,
        }
        self.transcriber = transcriber
        self.sample_rate: int = transcriber.sample_rate
        self._stream: _Redecode | _Incremental
        if encoder is None:
            self.mode = "redecode"
            self._stream = _Redecode(transcriber, cfg, endpoint_silence, redecode_interval)
        else:
            if encoder.sample_rate != self.sample_rate:
                raise ValueError(
                    f"the encoder takes {encoder.sample_rate} Hz, the transcriber "
                    f"{self.sample_rate} Hz: they must be the same model's"
                )
            self.mode = "incremental"
            self._stream = _Incremental(transcriber, encoder, cfg, endpoint_silence)
        self._finals: deque[StreamResult] = deque()

    @classmethod
    def from_checkpoint(
        cls,
        model_path: str | Path,
        lm: str | Path | None = None,
        lexicon: str | Path | None = None,
        device: str = "cpu",
        endpoint_silence: float = 0.5,
        redecode_interval: float = 0.5,
        max_segment_seconds: float = 20.0,
        vad_aggressiveness: int = 3,
        decoder_options: dict | None = None,
    ) -> StreamingRecognizer:
        """A checkpoint's (or exported .onnx model's) recognizer: "incremental" for a
        left-to-right checkpoint with streamable features, "redecode" otherwise; beam search
        for the finals with an LM and/or lexicon (`decoder_options` as Transcriber.from_state
        takes them)."""
        from asr.checkpoint import load_checkpoint

        settings = {
            "endpoint_silence": endpoint_silence,
            "redecode_interval": redecode_interval,
            "max_segment_seconds": max_segment_seconds,
            "vad_aggressiveness": vad_aggressiveness,
        }
        if Path(model_path).suffix.lower() == ".onnx":
            transcriber = Transcriber.from_checkpoint(
                model_path, lm=lm, lexicon=lexicon, decoder_options=decoder_options
            )
            return cls(transcriber, **settings)
        state = load_checkpoint(model_path)
        transcriber = Transcriber.from_state(state, device, lm, lexicon, decoder_options)
        return cls(transcriber, _encoder_for(transcriber, str(model_path)), **settings)

    @classmethod
    def for_transcriber(cls, transcriber: Transcriber, **settings) -> StreamingRecognizer:
        """A recognizer over a loaded Transcriber's model and decoder (shared, not copied), in
        the mode its model allows: "incremental" for a left-to-right model with streamable
        features, "redecode" otherwise. `settings`: __init__'s keyword arguments."""
        return cls(transcriber, _encoder_for(transcriber, ""), **settings)

    def new_stream(self) -> StreamingRecognizer:
        """A recognizer for another stream with this one's settings, sharing its model and
        decoder (their weights are not copied)."""
        return self.for_transcriber(self.transcriber, **self._settings)

    def accept_waveform(self, samples: np.ndarray) -> bool:
        """(S,) float32 (or int16) mono samples at `sample_rate` -> True when a final is ready."""
        self._finals.extend(self._stream.accept(as_float_samples(samples)))
        return bool(self._finals)

    def partial(self) -> str:
        """Greedy text of the open segment so far; within a segment each partial extends the
        one before (the final may differ)."""
        return self._stream.partial

    def final(self) -> StreamResult:
        """The oldest finished segment; when none is waiting, the end of the stream: the open
        segment, flushed (text "" when nothing was said). A new segment starts after it."""
        if not self._finals:
            results = self._stream.flush()
            *said, last = results
            self._finals.extend(said)
            if last.text or not said:
                self._finals.append(last)
        return self._finals.popleft()

    def finish(self) -> list[StreamResult]:
        """End of stream: every final still waiting, then the open segment's (if it said
        something)."""
        out = list(self._finals)
        self._finals.clear()
        out += [r for r in self._stream.flush() if r.text]
        return out

    def reset(self) -> None:
        """Forget the stream: the next sample is second 0 of a new one."""
        self._stream.reset()
        self._finals.clear()
