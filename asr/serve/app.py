"""The HTTP API (FastAPI): OpenAI's `POST /v1/audio/transcriptions`, `GET /v1/models`,
`GET /health`, the page at `/`, and live transcription over a WebSocket (Vosk's protocol) at
`/v1/stream` and `/` (asr.serve.stream_ws).

The route reads the multipart form itself (so a missing file is OpenAI's 400, not FastAPI's
422, and the repeated `timestamp_granularities[]` field is read with `getlist`), counts the body
as it arrives (413 past --max-upload-mb, chunked uploads included), saves the file to a private
folder, and hands it to the `TranscriptionService`; the model never runs on the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive

from asr.serve.errors import HTTP_CODES, ApiError, bad_request, unauthorized
from asr.serve.formats import (
    FORMATS,
    GRANULARITIES,
    MEDIA_TYPES,
    needs_words,
    render,
    sse,
)
from asr.serve.service import TranscriptionService, safe_filename
from asr.serve.stream_ws import StreamHub, add_stream_routes

log = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "page" / "index.html"


@dataclass
class Options:
    """The form fields of a transcription request that change the answer."""

    response_format: str
    granularities: list[str]  # "segment" and/or "word"
    stream: bool


def create_app(
    service: TranscriptionService, owns_service: bool = True, streams: StreamHub | None = None
) -> FastAPI:
    """The app over `service`. When it `owns_service`, a service without a model loads it in a
    thread at startup (GET /health says 503 until then) and is closed at shutdown; otherwise
    whoever runs the app does both (asr.serve.server). The live streams run on `streams`
    (default: over the service's model)."""
    hub = streams or StreamHub(service.config, service=service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owns_service and not service.ready:
            asyncio.get_running_loop().run_in_executor(None, _load, service)
        yield
        hub.close()
        if owns_service:
            service.draining = True
            await asyncio.to_thread(service.close)

    app = FastAPI(
        title="rnn-asr", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health() -> JSONResponse:
        if service.ready:
            return JSONResponse({"status": "ok", "model": service.name})
        if service.load_error is not None:
            return JSONResponse({"status": "error", "error": service.load_error}, 503)
        return JSONResponse({"status": "loading"}, 503, headers={"Retry-After": "5"})

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        check_key(service, request)
        return JSONResponse({"object": "list", "data": [_model_record(service)]})

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> JSONResponse:
        check_key(service, request)
        if model_id != service.name:
            raise ApiError(
                404,
                f"no model {model_id!r}: this server serves {service.name!r}",
                param="model",
                code="model_not_found",
            )
        return JSONResponse(_model_record(service))

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        return await _transcribe(service, request)

    add_stream_routes(app, hub, lambda: service.draining)
    return app


def _load(service: TranscriptionService) -> None:
    try:
        service.load()
    except Exception:
        log.exception("cannot load the model")


def _model_record(service: TranscriptionService) -> dict:
    path = Path(service.config.model)
    created = int(path.stat().st_mtime) if path.exists() else 0
    return {"id": service.name, "object": "model", "created": created, "owned_by": "rnn-asr"}


def check_key(service: TranscriptionService, request: Request) -> None:
    """401 unless the request carries `Authorization: Bearer KEY` with the server's key."""
    key = service.config.api_key
    if not key:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise unauthorized("no API key: send it as the header 'Authorization: Bearer KEY'")
    if not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise unauthorized("incorrect API key")


def _limited(receive: Receive, service: TranscriptionService) -> Receive:
    """`receive` that raises 413 once the body passes --max-upload-mb."""
    received = 0

    async def limited_receive():
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            service.check_upload_size(received)
        return message

    return limited_receive


async def _transcribe(service: TranscriptionService, request: Request) -> Response:
    check_key(service, request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        service.check_upload_size(int(declared))  # refused before reading the body
    service.acquire()
    workdir = service.workdir()
    form: FormData | None = None
    handed_over = False
    try:
        form = await Request(request.scope, _limited(request.receive, service)).form(
            max_files=1, max_fields=64
        )
        options = read_options(form)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise bad_request(
                "no audio: send the file as the multipart field 'file'", "file", "missing_file"
            )
        name = safe_filename(upload.filename)
        path = Path(workdir.name) / name
        size = await run_in_threadpool(_save, upload, path)
        service.check_upload_size(size)
        prepared = await service.prepare(path, upload.filename or name)
        if options.stream:
            done = _once(lambda: (service.release(), workdir.cleanup()))
            handed_over = True
            return StreamingResponse(
                _events(service, prepared, done),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
                background=BackgroundTask(done),
            )
        timed = needs_words(options.response_format, options.granularities)
        transcript = await service.transcribe(prepared, timestamps=timed)
        if timed and transcript.words is None:
            raise bad_request(
                f"{prepared.name}: {transcript.word_error}",
                "response_format",
                "word_timestamps_unavailable",
            )
        body = render(
            transcript, options.response_format, options.granularities, service.config.language
        )
        return Response(body, media_type=MEDIA_TYPES[options.response_format])
    finally:
        if form is not None:
            await form.close()
        if not handed_over:
            service.release()
            workdir.cleanup()


def _save(upload: UploadFile, path: Path) -> int:
    """Copy the upload to `path`; its size in bytes."""
    upload.file.seek(0)
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
        return out.tell()


def _once(action: Callable[[], object]) -> Callable[[], None]:
    """`action`, run on the first call only (a stream's cleanup has two callers)."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run


async def _events(service, prepared, done: Callable[[], None]) -> AsyncIterator[str]:
    """OpenAI's stream: a `transcript.text.delta` per non-empty segment as it is decoded
    (the deltas add up to the text), then `transcript.text.done` with the whole text."""
    text = ""
    try:
        async for segment in service.segments(prepared, timestamps=False):
            if segment.text:
                delta = f" {segment.text}" if text else segment.text
                text += delta
                yield sse({"type": "transcript.text.delta", "delta": delta})
        yield sse({"type": "transcript.text.done", "text": text})
    except ApiError as err:
        yield sse({"type": "error", **err.body()})
    finally:
        done()


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None or isinstance(value, str):
        return value
    raise bad_request(f"{name} must be a text field, not a file", name)


def read_options(form: FormData) -> Options:
    """The form's response_format, timestamp_granularities[], stream and temperature, checked
    (400 naming the field); model, language and prompt are accepted as they are."""
    fmt = _field(form, "response_format") or "json"
    if fmt not in FORMATS:
        raise bad_request(
            f"response_format must be one of {', '.join(FORMATS)}, not {fmt!r}", "response_format"
        )
    granularities = []
    for key in ("timestamp_granularities[]", "timestamp_granularities"):
        for value in form.getlist(key):
            if value not in GRANULARITIES:
                raise bad_request(
                    f"{key} must be 'word' or 'segment', not {value!r}", "timestamp_granularities"
                )
            granularities.append(value)
    if granularities and fmt != "verbose_json":
        raise bad_request(
            "response_format must be verbose_json when timestamp_granularities[] is given",
            "timestamp_granularities",
        )
    stream_text = (_field(form, "stream") or "false").lower()
    if stream_text not in ("true", "false"):
        raise bad_request(f"stream must be true or false, not {stream_text!r}", "stream")
    stream = stream_text == "true"
    if stream and fmt not in ("json", "text"):
        raise bad_request("stream=true needs response_format json or text", "stream")
    temperature = _field(form, "temperature")
    if temperature is not None:
        try:
            ok = 0.0 <= float(temperature) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise bad_request(
                f"temperature must be a number from 0 to 1, not {temperature!r}", "temperature"
            )
    for name in ("model", "language", "prompt"):
        _field(form, name)
    return Options(fmt, granularities, stream)


async def _api_error(request: Request, err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), err.status, headers=err.headers)


async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    """Starlette's own errors (unknown path, wrong method, malformed multipart) in OpenAI's
    shape."""
    code = HTTP_CODES.get(err.status_code, "http_error")
    return await _api_error(request, ApiError(err.status_code, str(err.detail), code=code))


async def _unexpected_error(request: Request, err: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=err)
    return JSONResponse(
        ApiError(
            500,
            f"unexpected {type(err).__name__}: {err}",
            type="server_error",
            code="internal_error",
        ).body(),
        500,
    )
