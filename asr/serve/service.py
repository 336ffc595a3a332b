"""What the HTTP and Wyoming front ends share: the served model, the limits, admission (a
bounded number of requests in flight) and the audio -> pieces -> transcript path.

An uploaded file is read as `asr transcribe` reads it: up to `Transcriber.long_seconds` whole,
longer ones cut at pauses (asr.segmenter) into segments read one by one; the pieces go through
the shared `BatchScheduler`, and a long file's words come back with times from its start. For
the same file and model the text is `asr transcribe`'s. The pause finder runs in a child
process: its frame-by-frame Python loop (seconds for an hour of audio) would otherwise hold
this process's interpreter lock while short requests wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import re
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from asr.align import WordTiming
from asr.audio import AudioError, audio_duration, load_audio
from asr.segmenter import Segment, find_segments
from asr.serve.batching import BatchScheduler, Piece
from asr.serve.config import ServeConfig
from asr.serve.errors import ApiError, bad_request, busy, too_large
from asr.transcribe import Transcriber

log = logging.getLogger(__name__)


@dataclass
class TimedSegment:
    start: float  # seconds from the start of the audio
    end: float
    text: str
    words: list[WordTiming] | None  # times from the start of the audio; None when not timed
    word_error: str | None = None  # why the words could not be timed


@dataclass
class Transcript:
    duration: float  # seconds of audio
    segments: list[TimedSegment]

    @property
    def text(self) -> str:
        """The segments' texts joined by spaces (as `asr transcribe` joins them)."""
        return " ".join(s.text for s in self.segments if s.text)

    @property
    def words(self) -> list[WordTiming] | None:
        """Every word in time order; None when a segment's words could not be timed."""
        if any(s.words is None for s in self.segments):
            return None
        return [w for s in self.segments for w in s.words]

    @property
    def word_error(self) -> str | None:
        return next((s.word_error for s in self.segments if s.word_error), None)


@dataclass
class Prepared:
    """An audio file ready for the scheduler."""

    name: str  # the client's name for it, used in messages
    path: Path  # where it was saved
    duration: float  # seconds
    spans: list[tuple[float, float]]  # (start, end) seconds of each piece
    pieces: list[Piece]


def safe_filename(name: str | None) -> str:
    """The last part of a client's file name, with only safe characters (for a temp file).

    >>> safe_filename("../../etc/my talk.m4a"), safe_filename(None), safe_filename("..")
    ('my_talk.m4a', 'audio', 'audio')
    """
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")[:100]
    return base or "audio"


class TranscriptionService:
    """The served model behind both front ends: load it, admit requests, transcribe."""

    def __init__(self, config: ServeConfig, transcriber: Transcriber | None = None):
        self.config = config
        self.transcriber = transcriber
        self.scheduler: BatchScheduler | None = None
        self.executor = ThreadPoolExecutor(config.prepare_threads, thread_name_prefix="asr-read")
        # long files' pauses are found in a child process (spawned, not forked: no copy of the
        # model threads), started by the first long file
        self.segmenter = self._segmenter_pool()
        self.in_flight = 0  # requests admitted and not finished (event-loop side only)
        self.draining = False  # shutting down: new requests are refused
        self.load_error: str | None = None
        if transcriber is not None:
            self._start()

    @property
    def ready(self) -> bool:
        return self.scheduler is not None

    @property
    def name(self) -> str:
        return self.config.served_name

    def load(self) -> None:
        """Load the model (blocking: run it off the event loop) and start the model thread."""
        try:
            self.transcriber = Transcriber.from_checkpoint(
                self.config.model, device=self.config.device, lm=self.config.lm
            )
        except Exception as err:
            self.load_error = f"{self.config.model}: {err}"
            raise
        for note in self.transcriber.notes:
            log.info("note: %s", note)
        self._start()

    def _start(self) -> None:
        scheduler = BatchScheduler(
            self.transcriber,
            self.config.max_batch_size,
            self.config.max_batch_seconds,
            self.config.max_wait_ms / 1000,
            self.config.lanes,
        )
        scheduler.start()
        self.scheduler = scheduler

    def close(self) -> None:
        """Finish queued work (bounded by shutdown_seconds) and stop the threads."""
        self.draining = True
        if self.scheduler is not None:
            self.scheduler.stop(self.config.shutdown_seconds)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.segmenter.shutdown(wait=False, cancel_futures=True)

    def acquire(self) -> None:
        """Admit one request, or raise 503 (loading, draining, or --max-queue in flight)."""
        if self.draining:
            raise busy("the server is shutting down", 5, code="shutting_down")
        if not self.ready:
            raise busy("the model is still loading: retry shortly", 5, code="model_not_loaded")
        if self.in_flight >= self.config.max_queue:
            raise busy(
                f"the server is busy: {self.in_flight} requests in flight, the most it queues "
                "(--max-queue): retry later",
                self.scheduler.retry_after(),
            )
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1

    def workdir(self) -> tempfile.TemporaryDirectory:
        """A private folder for one request's audio (removed by its cleanup())."""
        return tempfile.TemporaryDirectory(prefix="asr-serve-")

    def check_upload_size(self, size: int) -> None:
        """413 for an upload of `size` bytes past --max-upload-mb."""
        limit = self.config.max_upload_mb * 1024 * 1024
        if size > limit:
            raise too_large(
                f"the upload is {size / 2**20:.1f} MB, over this server's limit of "
                f"{self.config.max_upload_mb:g} MB (--max-upload-mb)"
            )

    async def prepare(self, path: Path, name: str) -> Prepared:
        """Read `path` off the event loop into pieces; 400 (unreadable, named as `name`) or
        413 (too long)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._prepare, path, name)

    def _prepare(self, path: Path, name: str) -> Prepared:
        t = self.transcriber
        try:
            duration = audio_duration(path)
            if duration > self.config.max_audio_seconds:
                raise too_large(
                    f"{name}: audio is {duration:.1f} s long, over this server's limit of "
                    f"{self.config.max_audio_seconds:g} s (--max-audio-seconds)",
                    code="audio_too_long",
                )
            if duration <= t.long_seconds:
                wav = load_audio(path, t.sample_rate)
                spans = [(0.0, duration)]
                pieces = [Piece(duration, lambda: wav)]
            else:
                segments = self._segments(path)
                spans = [(s.start, s.end) for s in segments]
                pieces = [
                    Piece(
                        s.end - s.start,
                        partial(
                            load_audio,
                            path,
                            t.sample_rate,
                            offset=s.start,
                            duration=s.end - s.start,
                        ),
                    )
                    for s in segments
                ]
        except AudioError as err:
            raise bad_request(self.named(str(err), path, name), "file", "invalid_audio") from None
        return Prepared(name, path, duration, spans, pieces)

    @staticmethod
    def _segmenter_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    def _segments(self, path: Path) -> list[Segment]:
        """find_segments in the child process; a child that died (killed, out of memory) is
        replaced once, so one lost process does not fail every later long file."""
        cfg = self.transcriber.segmenter
        try:
            return self.segmenter.submit(find_segments, path, cfg).result()
        except BrokenProcessPool:
            log.warning("the segmenting process died: starting another")
            self.segmenter = self._segmenter_pool()
            return self.segmenter.submit(find_segments, path, cfg).result()

    @staticmethod
    def named(message: str, path: Path, name: str) -> str:
        """A message about the saved copy, naming the client's file instead."""
        return message.replace(str(path), name)

    async def segments(self, prepared: Prepared, timestamps: bool) -> AsyncIterator[TimedSegment]:
        """The recognised pieces in time order, each as soon as it and those before it are
        done; a piece that fails ends it with ApiError (400 for unreadable audio)."""
        job = self.scheduler.submit(prepared.pieces, timestamps)
        try:
            async for result in job.in_order():
                if result.error is not None:
                    message = self.named(result.error, prepared.path, prepared.name)
                    if result.internal:
                        raise ApiError(500, message, type="server_error", code="internal_error")
                    raise bad_request(message, "file", "invalid_audio")
                start, end = prepared.spans[result.index]
                rec = result.recognition
                words = None
                if rec.words is not None:
                    words = [
                        WordTiming(w.word, w.start + start, w.end + start, w.confidence)
                        for w in rec.words
                    ]
                yield TimedSegment(start, end, rec.text, words, rec.error)
        finally:
            self.scheduler.cancel(job)

    async def transcribe(self, prepared: Prepared, timestamps: bool) -> Transcript:
        """The whole transcript of a prepared file."""
        segments = [s async for s in self.segments(prepared, timestamps)]
        return Transcript(prepared.duration, segments)
