"""The model's work for every request in flight, in shared batches on model threads.

A request's audio is a list of `Piece`s: a short file whole, or a long file's segments cut at
pauses. `BatchScheduler.submit` queues them as a `Job`. Model threads ("lanes") take batches of
at most `max_batch_size` pieces and `max_batch_seconds` of padded audio, from the jobs with the
least audio left first (shortest job first), one piece per job per round. With two or more
lanes, lane 0 only takes the pieces of one-piece jobs (short files), and no batch mixes short
files with a long file's segments, so a 2-second request never waits behind a batch of a
60-minute file's segments: the other lanes carry the long files, and short ones too. A
batch waits at most `max_wait` seconds for more pieces before it runs. Each piece's recognition
comes back on the event loop as soon as its batch is decoded; the event loop never runs the
model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import torch

from asr.audio import AudioError
from asr.transcribe import Recognition, Transcriber

log = logging.getLogger(__name__)


@dataclass
class Piece:
    """One stretch of audio the model runs on: a short file, or a segment of a long one."""

    seconds: float  # its length, for the batch's padded-audio bound
    load: Callable[[], torch.Tensor]  # -> (S,) float32 waveform at the model's rate


@dataclass
class PieceResult:
    index: int  # the piece's position in its job
    recognition: Recognition | None  # None when `error` is set
    error: str | None = None  # why the piece could not be recognised (one line)
    internal: bool = False  # the error is the server's fault, not the audio's


@dataclass(eq=False)  # jobs are told apart by identity
class Job:
    """A request's pieces in the scheduler; its results arrive on `loop`'s queue."""

    pieces: Sequence[Piece]
    timestamps: bool  # time the words (asr.transcribe.Recognition.words)
    loop: asyncio.AbstractEventLoop
    next: int = 0  # the first piece not yet taken into a batch
    cancelled: bool = False
    _results: asyncio.Queue = field(default_factory=asyncio.Queue)

    def deliver(self, result: PieceResult) -> None:
        """Hand a result to the event loop (from any thread)."""
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits for it any more
            self.loop.call_soon_threadsafe(self._results.put_nowait, result)

    async def in_order(self) -> AsyncIterator[PieceResult]:
        """Every piece's result, in piece order, each as soon as those before it are in."""
        held: dict[int, PieceResult] = {}
        for i in range(len(self.pieces)):
            while i not in held:
                result = await self._results.get()
                held[result.index] = result
            yield held.pop(i)

    @property
    def waiting(self) -> int:
        """Pieces not yet taken into a batch (0 once cancelled)."""
        return 0 if self.cancelled else len(self.pieces) - self.next

    @property
    def seconds_left(self) -> float:
        """Audio seconds not yet taken into a batch."""
        return 0.0 if self.cancelled else sum(p.seconds for p in self.pieces[self.next :])


class BatchScheduler:
    """Runs the pieces of all jobs through `transcriber` on `lanes` threads, in shared batches.

    `max_batch_size` pieces and `max_batch_seconds` of padded audio (pieces x the longest) at
    most per batch; a batch with room waits up to `max_wait` seconds for more pieces.
    """

    def __init__(
        self,
        transcriber: Transcriber,
        max_batch_size: int = 16,
        max_batch_seconds: float = 320.0,
        max_wait: float = 0.01,
        lanes: int = 1,
    ):
        if max_batch_size < 1 or max_batch_seconds <= 0 or max_wait < 0 or lanes < 1:
            raise ValueError(
                "need max_batch_size >= 1, max_batch_seconds > 0, max_wait >= 0, lanes >= 1"
            )
        self.lanes = lanes
        self.transcriber = transcriber
        self.max_batch_size = max_batch_size
        self.max_batch_seconds = max_batch_seconds
        self.max_wait = max_wait
        self._jobs: list[Job] = []  # jobs with pieces waiting, in the order they came
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._rate = 0.0  # audio seconds one lane recognises per second of work (moving average)
        self.batches = 0  # batches run so far
        self.largest_batch = 0  # most pieces in one batch so far

    def start(self) -> None:
        for lane in range(self.lanes):
            short_only = self.lanes > 1 and lane == 0
            thread = threading.Thread(
                target=self._run, args=(short_only,), name=f"asr-model-{lane}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float | None = None) -> None:
        """Finish the pieces already queued, then end the model threads (waits up to `timeout`
        seconds in all)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def submit(self, pieces: Sequence[Piece], timestamps: bool) -> Job:
        """Queue a request's pieces; call on the event loop that awaits the results."""
        job = Job(pieces, timestamps, asyncio.get_running_loop())
        if not pieces:
            return job
        with self._cond:
            if self._stopping:
                raise RuntimeError("the scheduler is stopping")
            self._jobs.append(job)
            self._cond.notify_all()
        return job

    def cancel(self, job: Job) -> None:
        """Take a job's waiting pieces out of the queue (a client that went away)."""
        with self._cond:
            job.cancelled = True

    def backlog_seconds(self) -> float:
        """Seconds of audio queued and not yet taken into a batch."""
        with self._cond:
            return sum(j.seconds_left for j in self._jobs)

    def retry_after(self) -> int:
        """Whole seconds the queued audio should take to recognise (1 to 60)."""
        backlog = self.backlog_seconds()
        if self._rate <= 0:
            return 1
        return max(1, min(60, math.ceil(backlog / (self._rate * self.lanes))))

    def _eligible(self, short_only: bool) -> list[Job]:
        """The jobs a lane may take pieces from, least audio left first (then first come).
        Call with the lock held."""
        jobs = [j for j in self._jobs if j.waiting and not (short_only and len(j.pieces) > 1)]
        return sorted(jobs, key=lambda j: j.seconds_left)

    def _run(self, short_only: bool) -> None:
        """A lane: take a batch, run it, until stopped with nothing left to take."""
        while True:
            with self._cond:
                while not self._eligible(short_only) and not self._stopping:
                    self._cond.wait()
                if not self._eligible(short_only):
                    return  # stopping, and nothing is left for this lane
                deadline = time.monotonic() + self.max_wait
                while not self._stopping:
                    waiting = sum(j.waiting for j in self._eligible(short_only))
                    left = deadline - time.monotonic()
                    if waiting >= self.max_batch_size or left <= 0:
                        break
                    self._cond.wait(left)
                batch = self._take_batch(self._eligible(short_only))
            if batch:
                self._run_batch(batch)

    def _take_batch(self, jobs: list[Job]) -> list[tuple[Job, int]]:
        """Up to max_batch_size (job, piece index) pairs from `jobs` in their order, one piece
        per job per round, within max_batch_seconds of padded audio. With two or more lanes a
        batch holds only one-piece jobs or only long files' pieces, whichever the first job is:
        a short request taken by a long-file lane then runs in a batch of short pieces, not
        padded to and waiting with a long file's segments. Call with the lock held."""
        if self.lanes > 1 and jobs:
            short = len(jobs[0].pieces) == 1
            jobs = [j for j in jobs if (len(j.pieces) == 1) == short]
        taken: list[tuple[Job, int]] = []
        longest = 0.0
        progressed = True
        while progressed and len(taken) < self.max_batch_size:
            progressed = False
            for job in jobs:
                if job.waiting == 0 or len(taken) == self.max_batch_size:
                    continue
                piece = job.pieces[job.next]
                padded = max(longest, piece.seconds) * (len(taken) + 1)
                if taken and padded > self.max_batch_seconds:
                    continue  # a shorter piece of another job may still fit
                taken.append((job, job.next))
                job.next += 1
                longest = max(longest, piece.seconds)
                progressed = True
        self._jobs = [j for j in self._jobs if j.waiting]
        return taken

    def _run_batch(self, batch: list[tuple[Job, int]]) -> None:
        """Load the pieces, run the model once, decode, and deliver every result."""
        start = time.monotonic()
        wavs: list[torch.Tensor] = []
        items: list[tuple[Job, int]] = []
        for job, i in batch:
            try:
                wavs.append(job.pieces[i].load())
                items.append((job, i))
            except AudioError as err:
                job.deliver(PieceResult(i, None, str(err)))
            except Exception as err:  # a piece must not take the model thread down
                log.exception("loading a piece failed")
                job.deliver(PieceResult(i, None, f"unexpected {type(err).__name__}: {err}", True))
        if not items:
            return
        lengths = torch.tensor([len(w) for w in wavs])
        padded = torch.zeros(len(wavs), int(lengths.max()))  # (B, S)
        for b, wav in enumerate(wavs):
            padded[b, : len(wav)] = wav
        try:
            log_probs, frames = self.transcriber.log_probs(padded, lengths)  # (B, T', V), (B,)
            for timestamps in (False, True):
                rows = [b for b, (job, _) in enumerate(items) if job.timestamps == timestamps]
                if not rows:
                    continue
                recognitions = self.transcriber.decode_log_probs(
                    log_probs[rows], frames[rows], timestamps=timestamps
                )
                for b, rec in zip(rows, recognitions, strict=True):
                    job, i = items[b]
                    job.deliver(PieceResult(i, rec))
        except Exception as err:
            log.exception("a batch of %d pieces failed", len(items))
            for job, i in items:
                job.deliver(PieceResult(i, None, f"unexpected {type(err).__name__}: {err}", True))
        audio = float(lengths.sum()) / self.transcriber.sample_rate
        rate = audio / max(time.monotonic() - start, 1e-6)
        with self._cond:
            self._rate = rate if self._rate == 0 else 0.8 * self._rate + 0.2 * rate
            self.batches += 1
            self.largest_batch = max(self.largest_batch, len(items))
