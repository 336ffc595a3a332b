"""Live transcription over a WebSocket, in Vosk's protocol, at `/v1/stream` and at `/` (the
path Vosk's clients connect to; an HTTP GET of `/` still serves the page).

The client may first send `{"config": {"sample_rate": N}}` (Vosk's `words`, `phrase_list`
and `max_alternatives` are accepted too; `words: false` leaves the word list out of results),
then binary frames of 16-bit little-endian mono PCM, then `{"eof" : 1}`. Every audio frame and
the eof get exactly one reply; the config gets none (as Vosk's server). A reply is
`{"partial": TEXT}` while a segment is open, or `{"result": [{"word", "start", "end",
"conf"}], "text": TEXT}` when the recogniser finds an endpoint; the eof's reply is the final
result of the rest of the stream, after which the server closes the socket (1000). Times are
seconds from the stream's start. Audio at another rate is resampled (soxr) to the model's.

Each socket has its own `StreamingRecognizer` over the model the HTTP API serves (weights and
decoder shared: an LM given to `asr serve` decodes the finals too); its work runs on
a pool of --lanes threads, never on the event loop, and a socket's messages are handled one at
a time, in order. The API key (when the server has one) comes as `Authorization: Bearer KEY`
or, for clients that cannot set headers (browsers), as `?api_key=KEY`. Refusals are close
codes with a reason: 1008 (no or wrong key; no message for --stream-idle-seconds), 1007 (a
message that is not the protocol's), 1013 (--max-streams open, or the model is still loading),
1001 (shutting down), 1011 (the model could not be loaded, or the recogniser failed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import soxr
from fastapi import FastAPI
from starlette.websockets import WebSocket, WebSocketDisconnect

from asr.serve.config import ServeConfig
from asr.serve.service import TranscriptionService
from asr.stream import StreamingRecognizer, StreamResult
from asr.transcribe import Transcriber

log = logging.getLogger(__name__)

# Close codes (RFC 6455 section 7.4.1 and IANA's registry)
NORMAL, GOING_AWAY, INVALID_DATA, POLICY, INTERNAL, TRY_LATER = 1000, 1001, 1007, 1008, 1011, 1013
RATES = (4000.0, 192000.0)  # sample rates a client may declare, Hz


class Recognizer(Protocol):
    """What a socket needs of asr.stream.StreamingRecognizer."""

    sample_rate: int

    def accept_waveform(self, samples: np.ndarray) -> bool: ...
    def partial(self) -> str: ...
    def final(self) -> StreamResult: ...
    def finish(self) -> list[StreamResult]: ...


class ProtocolError(Exception):
    """A client message that is not the protocol's; closes the socket with 1007."""


def result_message(result, words: bool = True) -> dict:
    """Vosk's result: `{"result": [{"word", "start", "end", "conf"}], "text"}` (without the
    word list when `words` is false); times rounded to milliseconds."""
    message: dict = {}
    if words:
        message["result"] = [
            {
                "word": w.word,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "conf": round(w.conf, 6),
            }
            for w in result.words
        ]
    message["text"] = result.text
    return message


def merged(results: list[StreamResult]) -> StreamResult:
    """Consecutive results as one (the eof gets one reply however many segments it ends).

    >>> from asr.stream import StreamWord as W
    >>> merged([StreamResult("a", [W("a", 0, 1, 1)], 0, 1), StreamResult("b c", [], 2, 3)])
    StreamResult(text='a b c', words=[StreamWord(word='a', start=0, end=1, conf=1)], start=0, end=3)
    >>> merged([]).text
    ''
    """
    said = [r for r in results if r.text]
    if not said:
        return StreamResult("", [])
    text = " ".join(r.text for r in said)
    return StreamResult(text, [w for r in said for w in r.words], said[0].start, said[-1].end)


class StreamSession:
    """One socket's stream: Vosk's messages in, reply dicts out. Blocking (the model runs
    here): call from a worker thread, one message at a time."""

    def __init__(self, recognizer: Recognizer, sample_rate: float | None = None):
        self.recognizer = recognizer
        self.sample_rate = float(sample_rate or recognizer.sample_rate)  # the client's rate
        self.words = True  # send word lists with results
        self.started = False  # audio has arrived (the config is fixed from then on)
        self._odd = b""  # a frame's trailing byte: the first half of the next frame's sample
        self._resampler: soxr.ResampleStream | None = None

    def configure(self, config: object) -> None:
        """Apply a `config` object; ProtocolError naming the field at fault."""
        if self.started:
            raise ProtocolError("the config must come before the audio")
        if not isinstance(config, dict):
            raise ProtocolError('"config" must be an object, e.g. {"sample_rate": 16000}')
        if "sample_rate" in config:
            rate = config["sample_rate"]
            ok = isinstance(rate, int | float) and not isinstance(rate, bool)
            if not ok or not RATES[0] <= rate <= RATES[1]:
                raise ProtocolError(
                    f"sample_rate must be a number of Hz from {RATES[0]:g} to {RATES[1]:g}, "
                    f"not {rate!r}"
                )
            self.sample_rate = float(rate)
        if "words" in config:
            self.words = bool(config["words"])

    def audio(self, data: bytes) -> dict:
        """A frame of 16-bit PCM -> the reply (partial, or a result at an endpoint)."""
        samples = self._samples(data, last=False)
        if self.recognizer.accept_waveform(samples):
            return result_message(self.recognizer.final(), self.words)
        return {"partial": self.recognizer.partial()}

    def end(self) -> dict:
        """The eof: the rest of the stream, recognised -> one final result of every segment
        not yet answered."""
        samples = self._samples(b"", last=True)
        if len(samples):
            self.recognizer.accept_waveform(samples)
        return result_message(merged(self.recognizer.finish()), self.words)

    def _samples(self, data: bytes, last: bool) -> np.ndarray:
        """Little-endian int16 bytes -> float32 in [-1, 1) at the recogniser's rate."""
        self.started = True
        data = self._odd + data
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0
        target = self.recognizer.sample_rate
        if self.sample_rate == target:
            return samples
        if self._resampler is None:
            self._resampler = soxr.ResampleStream(
                self.sample_rate, target, 1, dtype="float32", quality="HQ"
            )
        return self._resampler.resample_chunk(samples, last=last)


def parse_text(text: str) -> dict:
    """A text message -> its JSON object; ProtocolError for anything else."""
    try:
        message = json.loads(text)
    except ValueError:
        message = None
    if not isinstance(message, dict) or not ({"config", "eof"} & message.keys()):
        raise ProtocolError(
            'a text message must be {"config": {...}} or {"eof" : 1}, not ' + repr(text[:40])
        )
    return message


def key_problem(expected: str | None, authorization: str, query_key: str | None) -> str | None:
    """Why a socket's credentials are refused, or None when they are good (or none needed).

    >>> key_problem("k", "Bearer k", None), key_problem("k", "", "k"), key_problem(None, "", None)
    (None, None, None)
    >>> key_problem("k", "Bearer x", None)
    'incorrect API key'
    """
    if not expected:
        return None
    scheme, _, given = authorization.partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    given = given or (query_key or "").strip()
    if not given:
        return "no API key: send the header 'Authorization: Bearer KEY' or ?api_key=KEY"
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return "incorrect API key"
    return None


def recognizers_of(transcriber: Transcriber, endpoint_silence: float) -> Callable[[], Recognizer]:
    """A function that makes a new StreamingRecognizer over `transcriber`'s model and decoder
    (shared by all, not copied), in the mode the model allows (incremental or re-decoding)."""
    first = StreamingRecognizer.for_transcriber(transcriber, endpoint_silence=endpoint_silence)
    return first.new_stream


class StreamHub:
    """What the sockets share: the recogniser factory (over the service's model once it is
    loaded, or the one given), the worker threads, and the count of open streams."""

    def __init__(
        self,
        config: ServeConfig,
        factory: Callable[[], Recognizer] | None = None,
        threads: int | None = None,
        service: TranscriptionService | None = None,
    ):
        self.config = config
        self.factory = factory
        self.service = service
        self.open = 0  # sockets with a stream (event-loop side only)
        self.executor = ThreadPoolExecutor(threads or config.lanes, thread_name_prefix="asr-stream")

    def refusal(self) -> tuple[int, str] | None:
        """(close code, reason) while no stream can start (the model is loading or failed)."""
        if self.factory is not None:
            return None
        service = self.service
        if service is None or service.load_error:
            return INTERNAL, service.load_error if service else "no model to stream"
        if not service.ready:
            return TRY_LATER, "the model is still loading: retry shortly"
        self.factory = recognizers_of(service.transcriber, self.config.stream_endpoint_seconds)
        return None

    def new_session(self) -> StreamSession:
        """A session with a fresh recogniser (blocking)."""
        return StreamSession(self.factory())

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with `code` and `reason` (cut to the 123 bytes a close frame holds)."""
    reason = reason.encode()[:123].decode(errors="ignore")
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the client left
        await websocket.close(code, reason)


def _refusal(websocket: WebSocket, hub: StreamHub, draining: bool) -> tuple[int, str] | None:
    """(close code, reason) when this socket may not stream."""
    problem = key_problem(
        hub.config.api_key,
        websocket.headers.get("authorization", ""),
        websocket.query_params.get("api_key"),
    )
    if problem:
        return POLICY, problem
    if draining:
        return GOING_AWAY, "the server is shutting down"
    if hub.open >= hub.config.max_streams:
        return TRY_LATER, (
            f"the server is busy: {hub.open} streams open, the most it serves (--max-streams)"
        )
    return hub.refusal()


async def serve_socket(websocket: WebSocket, hub: StreamHub, draining: Callable[[], bool]) -> None:
    """One socket, from the handshake to the close."""
    await websocket.accept()
    refusal = _refusal(websocket, hub, draining())
    if refusal:
        await _close(websocket, *refusal)
        return
    loop = asyncio.get_running_loop()
    hub.open += 1
    try:
        try:
            session = await loop.run_in_executor(hub.executor, hub.new_session)
        except Exception:
            log.exception("cannot start a stream")
            await _close(websocket, INTERNAL, "cannot start a stream: see the server's log")
            return
        await _converse(websocket, session, hub, loop)
    finally:
        hub.open -= 1


async def _converse(websocket: WebSocket, session: StreamSession, hub: StreamHub, loop) -> None:
    """Read messages and answer each, until the eof, an error, idleness or the client leaves."""
    idle = hub.config.stream_idle_seconds
    while True:
        try:
            message = await asyncio.wait_for(websocket.receive(), idle)
        except TimeoutError:
            await _close(websocket, POLICY, f"no message for {idle:g} s (--stream-idle-seconds)")
            return
        if message["type"] == "websocket.disconnect":
            return
        try:
            if message.get("bytes") is not None:
                reply = await loop.run_in_executor(hub.executor, session.audio, message["bytes"])
                last = False
            else:
                parsed = parse_text(message.get("text") or "")
                if "config" in parsed:
                    session.configure(parsed["config"])
                    continue  # Vosk's server does not answer the config
                reply = await loop.run_in_executor(hub.executor, session.end)
                last = True
        except ProtocolError as err:
            await _close(websocket, INVALID_DATA, str(err))
            return
        except Exception as err:
            log.exception("a stream failed")
            await _close(websocket, INTERNAL, f"recognition failed: {type(err).__name__}: {err}")
            return
        try:
            await websocket.send_text(json.dumps(reply))
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        if last:
            await _close(websocket, NORMAL, "end of stream")
            return


class _HideKeys(logging.Filter):
    """Masks `api_key=...` in log lines (uvicorn logs each socket's path with its query)."""

    pattern = re.compile(r"(api_key=)[^&\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "api_key=" in text:
            record.msg, record.args = self.pattern.sub(r"\1***", text), ()
        return True


def add_stream_routes(app: FastAPI, hub: StreamHub, draining: Callable[[], bool]) -> None:
    """The socket at /v1/stream and at / (Vosk's path)."""

    async def stream(websocket: WebSocket) -> None:
        await serve_socket(websocket, hub, draining)

    app.add_api_websocket_route("/v1/stream", stream)
    app.add_api_websocket_route("/", stream)
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideKeys) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(_HideKeys())
