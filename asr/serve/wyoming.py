"""Home Assistant's Wyoming protocol, on the `wyoming` package's own server and event classes.

Per connection: `describe` -> `info` (an ASR program with the served model, its name and
language); `transcribe` (optional), `audio-start`, `audio-chunk`s (raw PCM of any rate, 8/16/32
bit, any number of channels), `audio-stop` -> `transcript`. The audio is kept as a WAV file and
goes through the same path as an upload to the HTTP API (so the text is `asr transcribe`'s for
that WAV); a problem (unreadable audio, too long, server busy) is answered with an `error`
event naming the cause.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.server import AsyncEventHandler, AsyncServer

from asr import __version__
from asr.serve.errors import ApiError
from asr.serve.service import TranscriptionService

log = logging.getLogger(__name__)

# bytes per sample -> (numpy dtype of the PCM, soundfile subtype it is written as)
PCM = {1: (np.uint8, "PCM_U8"), 2: (np.int16, "PCM_16"), 4: (np.int32, "PCM_32")}


def service_info(service: TranscriptionService) -> Info:
    """The `info` answer: one ASR program serving one model in the service's language."""
    attribution = Attribution(name="rnn-asr", url="")
    model = AsrModel(
        name=service.name,
        attribution=attribution,
        installed=True,
        description=f"CTC recogniser {service.name}",
        version=None,
        languages=[service.config.language],
    )
    program = AsrProgram(
        name="rnn-asr",
        attribution=attribution,
        installed=True,
        description="Speech recognition with recurrent networks and CTC",
        version=__version__,
        models=[model],
    )
    return Info(asr=[program])


class TranscriptionHandler(AsyncEventHandler):
    """One Wyoming connection: collects a stream's audio and answers with its transcript."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        service: TranscriptionService,
    ):
        super().__init__(reader, writer)
        self.service = service
        self.format: tuple[int, int, int] | None = None  # (rate, width, channels) of the stream
        self.audio = bytearray()
        self.language: str | None = None

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(service_info(self.service).event())
        elif Transcribe.is_type(event.type):
            self.language = Transcribe.from_event(event).language
        elif AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            self.format = (start.rate, start.width, start.channels)
            self.audio = bytearray()
        elif AudioChunk.is_type(event.type):
            return await self._add(AudioChunk.from_event(event))
        elif AudioStop.is_type(event.type):
            await self._answer()
        return True

    async def _add(self, chunk: AudioChunk) -> bool:
        """Append a chunk; an `error` (and the stream dropped) when its format changes or the
        audio passes --max-audio-seconds."""
        chunk_format = (chunk.rate, chunk.width, chunk.channels)
        if self.format is None:  # audio-chunk without audio-start: take the chunk's format
            self.format, self.audio = chunk_format, bytearray()
        if chunk_format != self.format:
            return await self._fail(
                f"audio-chunk format {chunk_format} differs from the stream's {self.format} "
                "(rate, width, channels)",
                "invalid_audio",
            )
        self.audio += chunk.audio
        rate, width, channels = self.format
        seconds = len(self.audio) / (rate * width * channels)
        limit = self.service.config.max_audio_seconds
        if seconds > limit:
            return await self._fail(
                f"audio is over this server's limit of {limit:g} s (--max-audio-seconds)",
                "audio_too_long",
            )
        return True

    async def _fail(self, message: str, code: str) -> bool:
        await self.write_event(Error(text=message, code=code).event())
        self.format, self.audio = None, bytearray()
        return True

    async def _answer(self) -> None:
        """Transcribe the stream's audio and send the `transcript` (or an `error`)."""
        audio, audio_format = bytes(self.audio), self.format
        self.format, self.audio = None, bytearray()
        if audio_format is None:
            await self._fail("audio-stop without audio", "invalid_audio")
            return
        try:
            self.service.acquire()
        except ApiError as err:
            await self._fail(err.message, err.code or "error")
            return
        workdir = self.service.workdir()
        try:
            path = Path(workdir.name) / "stream.wav"
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(
                self.service.executor, partial(write_wav, path, audio, *audio_format)
            )
            prepared = await self.service.prepare(path, "audio stream")
            transcript = await self.service.transcribe(prepared, timestamps=False)
        except ApiError as err:
            await self._fail(err.message, err.code or "error")
            return
        finally:
            self.service.release()
            workdir.cleanup()
        language = self.language or self.service.config.language
        await self.write_event(Transcript(text=transcript.text, language=language).event())


def write_wav(path: Path, pcm: bytes, rate: int, width: int, channels: int) -> None:
    """Raw little-endian PCM -> a WAV file of the same samples; ApiError (400) for a sample
    width other than 1, 2 or 4 bytes, or a byte count that is not whole frames."""
    if width not in PCM or channels < 1 or rate < 1:
        raise ApiError(
            400,
            f"unsupported audio: {width}-byte samples, {channels} channels, {rate} Hz "
            "(1, 2 or 4-byte PCM expected)",
            code="invalid_audio",
        )
    if len(pcm) % (width * channels):
        raise ApiError(400, "audio ends inside a sample frame", code="invalid_audio")
    dtype, subtype = PCM[width]
    samples = np.frombuffer(pcm, dtype=np.dtype(dtype).newbyteorder("<")).reshape(-1, channels)
    if width == 1:
        samples = ((samples.astype(np.int16) - 128) << 8).astype(np.int16)
        subtype = "PCM_16"
    sf.write(path, samples, rate, subtype=subtype)


async def start_wyoming(uri: str, service: TranscriptionService) -> AsyncServer:
    """Listen on `uri` (tcp://HOST:PORT or unix://PATH) without blocking; stop with .stop()."""
    server = AsyncServer.from_uri(uri)
    await server.start(partial(TranscriptionHandler, service=service))
    return server
