"""The HTTP API of `asr serve` through FastAPI's test client: every response format equals
`asr transcribe`'s output for the same file and model, timestamp_granularities[], streaming,
each error with its status in OpenAI's shape; and the batch scheduler's sharing and bounds."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi", reason="asr serve needs the serve extra (fastapi)")
from fastapi.testclient import TestClient

from asr.audio import AudioError
from asr.serve.app import create_app
from asr.serve.batching import BatchScheduler, Piece
from asr.serve.config import ServeConfig
from asr.serve.server import exposure_warnings
from asr.serve.service import TranscriptionService
from asr.transcribe import Recognition, Transcriber
from tests.serve_fixtures import long_tone_file, offline, tiny_model

URL = "/v1/audio/transcriptions"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def transcriber(model) -> Transcriber:
    return Transcriber.from_checkpoint(model.checkpoint, device="cpu")


@pytest.fixture(scope="module")
def long_file(model) -> Path:
    """45 s: over `asr transcribe`'s 30 s, so it is cut at pauses into segments."""
    return long_tone_file(model.folder / "long45.wav", 45.0)


@pytest.fixture
def make_client(model, transcriber):
    """TestClient over a service with the given ServeConfig fields and the loaded model."""
    clients = []

    def make(**fields) -> TestClient:
        service = TranscriptionService(
            ServeConfig(model=str(model.checkpoint), **fields), transcriber
        )
        client = TestClient(create_app(service, owns_service=False))
        client.service = service
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.service.close()


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def post(client: TestClient, path: Path | None, headers=None, **fields):
    files = {"file": (path.name, path.read_bytes())} if path is not None else None
    return client.post(URL, files=files, data={"model": "whisper-1", **fields}, headers=headers)


def assert_error(response, status: int, param: str | None, *phrases: str) -> dict:
    """OpenAI's error shape, with the status, the field at fault and the words of the cause."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["param"] == param
    for phrase in phrases:
        assert phrase in body["error"]["message"]
    return body["error"]


def test_health_is_503_until_the_model_is_loaded(model):
    service = TranscriptionService(ServeConfig(model=str(model.checkpoint), device="cpu"))
    with TestClient(create_app(service, owns_service=False)) as client:
        response = client.get("/health")
        assert response.status_code == 503 and response.json() == {"status": "loading"}
        assert response.headers["retry-after"] == "5"
        error = assert_error(post(client, model.files[0]), 503, None, "loading")
        assert error["code"] == "model_not_loaded"
        service.load()
        assert client.get("/health").json() == {"status": "ok", "model": service.name}
        assert post(client, model.files[0]).status_code == 200
    service.close()


def test_a_model_that_cannot_be_loaded_is_named_by_health(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    service = TranscriptionService(ServeConfig(model=str(bad)))
    with TestClient(create_app(service)) as client:  # owns the service: loads at startup
        for _ in range(100):
            body = client.get("/health").json()
            if body["status"] != "loading":
                break
            threading.Event().wait(0.05)
        assert body["status"] == "error" and str(bad) in body["error"]


def test_models_lists_the_served_model(client, model):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [f"exp/{model.checkpoint.name}"]
    assert client.get(f"/v1/models/exp/{model.checkpoint.name}").json()["object"] == "model"
    assert_error(client.get("/v1/models/whisper-1"), 404, "model", "whisper-1")


@pytest.mark.parametrize("which", ["short", "long"])
def test_every_format_equals_asr_transcribe(client, model, long_file, which):
    path = model.files[5] if which == "short" else long_file  # files[5]: "a b", two words
    (record,) = offline(model.checkpoint, [path])
    assert record["text"]
    json_body = post(client, path, response_format="json").json()
    assert json_body["text"] == record["text"]
    assert json_body["usage"]["type"] == "duration"
    text = post(client, path, response_format="text")
    assert text.text == record["text"] + "\n"
    assert text.headers["content-type"].startswith("text/plain")
    for fmt in ("srt", "vtt"):
        response = post(client, path, response_format=fmt)
        assert response.status_code == 200
        assert response.text == offline(model.checkpoint, [path], fmt)[0]
    verbose = post(
        client, path, response_format="verbose_json", **{"timestamp_granularities[]": "word"}
    ).json()
    assert verbose["text"] == record["text"] and verbose["task"] == "transcribe"
    assert verbose["language"] == "en"
    words = [
        {"word": w["word"], "start": w["start"], "end": w["end"], "confidence": w["probability"]}
        for w in verbose["words"]
    ]
    assert words == record["words"]
    segments = [{k: s[k] for k in ("start", "end", "text")} for s in verbose["segments"]]
    assert [s["id"] for s in verbose["segments"]] == list(range(len(segments)))
    if which == "long":
        assert len(segments) > 1 and segments == record["segments"]
        assert verbose["duration"] == pytest.approx(45.0, abs=2.0)
    else:
        assert segments == [{"start": 0.0, "end": verbose["duration"], "text": record["text"]}]


def test_timestamp_granularities_with_and_without_verbose_json(client, model):
    path = model.files[5]
    (record,) = offline(model.checkpoint, [path])
    both = post(
        client,
        path,
        response_format="verbose_json",
        **{"timestamp_granularities[]": ["word", "segment"]},
    ).json()
    assert [w["word"] for w in both["words"]] == record["text"].split() and both["segments"]
    for fields in ({}, {"timestamp_granularities[]": "segment"}):
        body = post(client, path, response_format="verbose_json", **fields).json()
        assert "words" not in body and body["segments"] and body["text"] == both["text"]
    # the field's name without brackets, as some clients send it
    plain = post(client, path, response_format="verbose_json", timestamp_granularities="word")
    assert plain.json()["words"] == both["words"]
    for fmt in ("json", "text", "srt"):
        response = post(client, path, response_format=fmt, **{"timestamp_granularities[]": "word"})
        assert_error(response, 400, "timestamp_granularities", "verbose_json")
    response = post(
        client, path, response_format="verbose_json", **{"timestamp_granularities[]": "char"}
    )
    assert_error(response, 400, "timestamp_granularities", "'char'")


def test_stream_sends_a_delta_per_segment_then_the_text(client, model, long_file):
    (record,) = offline(model.checkpoint, [long_file])
    response = post(client, long_file, stream="true")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line.removeprefix("data: "))
        for line in response.text.split("\n\n")
        if line.startswith("data: ")
    ]
    deltas = [e["delta"] for e in events if e["type"] == "transcript.text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == record["text"]
    assert events[-1] == {"type": "transcript.text.done", "text": record["text"]}
    assert_error(post(client, long_file, stream="true", response_format="srt"), 400, "stream")
    assert_error(post(client, long_file, stream="maybe"), 400, "stream", "'maybe'")


def test_bad_audio_is_400_naming_the_file_and_cause(client, tmp_path):
    assert_error(post(client, None), 400, "file", "'file'")
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are not samples")
    error = assert_error(post(client, not_audio), 400, "file", "notes.wav", "cannot read audio")
    assert error["code"] == "invalid_audio" and str(tmp_path) not in error["message"]
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert_error(post(client, empty), 400, "file", "empty.wav", "empty file (0 bytes)")


def test_other_bad_fields_are_400(client, model):
    path = model.files[0]
    assert_error(post(client, path, response_format="mp3"), 400, "response_format", "'mp3'")
    assert_error(post(client, path, temperature="hot"), 400, "temperature", "'hot'")
    ok = post(client, path, temperature="0.2", language="en", prompt="tones", model="anything")
    assert ok.status_code == 200
    assert_error(client.get("/v1/nothing"), 404, None)
    assert_error(client.get(URL), 405, None)


def test_a_long_file_is_still_served_after_the_segmenting_process_died(client, long_file):
    """Long files' pauses are found in a child process; if it dies, the next long file starts
    another instead of failing."""
    first = post(client, long_file, response_format="text")
    assert first.status_code == 200, first.text
    for process in list(client.service.segmenter._processes.values()):
        process.kill()
        process.join(10)
    again = post(client, long_file, response_format="text")
    assert again.status_code == 200, again.text
    assert again.text == first.text


def test_uploads_over_the_size_limit_are_413(make_client, model, long_file):
    client = make_client(max_upload_mb=0.5)  # the 45 s file is 0.7 MB, a short one 8 kB
    assert post(client, model.files[0]).status_code == 200
    assert_error(post(client, long_file), 413, "file", "0.5 MB", "--max-upload-mb")

    def chunks():  # no Content-Length: counted as it arrives
        body = long_file.read_bytes()
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]
        yield b"\r\n--b--\r\n"

    response = client.post(
        URL, content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert_error(response, 413, "file", "--max-upload-mb")


def test_audio_over_the_duration_limit_is_413(make_client, model, long_file):
    client = make_client(max_audio_seconds=30)
    assert post(client, model.files[0]).status_code == 200
    error = assert_error(post(client, long_file), 413, "file", "long45.wav", "--max-audio-seconds")
    assert error["code"] == "audio_too_long"


def test_a_missing_or_wrong_key_is_401(make_client, model):
    client = make_client(api_key="s3cret")
    for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        error = assert_error(post(client, model.files[0], headers=headers), 401, None)
        assert error["code"] == "invalid_api_key"
        assert client.get("/v1/models", headers=headers).status_code == 401
    good = {"Authorization": "Bearer s3cret"}
    assert post(client, model.files[0], headers=good).status_code == 200
    assert client.get("/v1/models", headers=good).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/").status_code == 200


def test_a_full_queue_is_503_with_retry_after(make_client, model):
    client = make_client(max_queue=2)
    client.service.acquire()
    client.service.acquire()  # two requests in flight: the most it takes
    response = post(client, model.files[0])
    error = assert_error(response, 503, None, "--max-queue")
    assert error["type"] == "server_error" and int(response.headers["retry-after"]) >= 1
    client.service.release()
    assert post(client, model.files[0]).status_code == 200
    assert client.service.in_flight == 1  # the answered request released its place


def test_the_page_is_served(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "/v1/audio/transcriptions" in response.text and 'id="record"' in response.text


def test_listening_beyond_this_machine_without_a_key_is_warned():
    config = ServeConfig(model="m.pt")
    assert exposure_warnings(config, "127.0.0.1", None) == []
    (line,) = exposure_warnings(config, "0.0.0.0", None)
    assert "--host 0.0.0.0" in line and "--api-key" in line
    assert exposure_warnings(ServeConfig(model="m.pt", api_key="k"), "0.0.0.0", None) == []
    (line,) = exposure_warnings(config, None, "tcp://0.0.0.0:10300")
    assert "no authentication" in line


# --- the scheduler, with a stand-in model ---


class CountingModel:
    """Stands in for a Transcriber: log-probs of one frame per 100 samples; records each
    batch's rows (the first sample of each piece) and holds a batch with a piece tagged 1
    until `hold` is set."""

    sample_rate = 1000

    def __init__(self):
        self.batches: list[list[int]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.running = threading.Event()

    def log_probs(self, wavs: torch.Tensor, wav_lens: torch.Tensor):
        tags = [int(w[0]) for w in wavs]
        self.batches.append(tags)
        if 1 in tags:
            self.running.set()
            self.hold.wait(10)
        frames = wav_lens // 100
        return torch.zeros(len(wavs), int(frames.max()), 3), frames

    def decode_log_probs(self, log_probs, lengths, timestamps=False):
        return [Recognition(f"{int(n)} frames") for n in lengths]


def piece(tag: int, seconds: float) -> Piece:
    """A piece whose waveform starts with `tag` (so batches can be read back)."""
    wav = torch.zeros(int(seconds * 1000))
    wav[0] = tag
    return Piece(seconds, lambda: wav)


def test_a_short_request_shares_the_next_batch_with_a_long_files_segments():
    fake = CountingModel()
    scheduler = BatchScheduler(fake, max_batch_size=4, max_batch_seconds=100.0, max_wait=0.0)
    scheduler.start()

    async def scenario():
        fake.hold.clear()
        long_job = scheduler.submit([piece(1, 10.0) for _ in range(40)], timestamps=False)
        await asyncio.to_thread(fake.running.wait, 10)  # the long file's first batch runs
        short_job = scheduler.submit([piece(2, 2.0)], timestamps=True)
        fake.hold.set()
        (short,) = [r async for r in short_job.in_order()]
        long = [r async for r in long_job.in_order()]
        return short, long

    short, long = asyncio.run(scenario())
    scheduler.stop(10)
    assert short.recognition.text == "20 frames" and len(long) == 40
    assert [r.index for r in long] == list(range(40))
    # the second batch holds the short request beside three of the long file's segments
    assert fake.batches[0] == [1, 1, 1, 1] and sorted(fake.batches[1]) == [1, 1, 1, 2]
    assert all(len(b) <= 4 for b in fake.batches)


def test_with_two_lanes_a_short_request_is_answered_while_a_long_files_batch_runs():
    fake = CountingModel()
    scheduler = BatchScheduler(
        fake, max_batch_size=4, max_batch_seconds=100.0, max_wait=0.0, lanes=2
    )

    async def scenario():
        fake.hold.clear()
        long_job = scheduler.submit([piece(1, 10.0) for _ in range(12)], timestamps=False)
        await asyncio.to_thread(fake.running.wait, 10)  # a batch of the long file is held
        (short,) = [r async for r in scheduler.submit([piece(2, 2.0)], True).in_order()]
        held = not fake.hold.is_set()
        fake.hold.set()
        return short, held, [r async for r in long_job.in_order()]

    scheduler.start()
    short, held, long = asyncio.run(scenario())
    scheduler.stop(10)
    assert held and short.recognition.text == "20 frames"
    assert [r.index for r in long] == list(range(12))
    assert [2] in fake.batches  # the short lane ran it alone


def test_with_two_lanes_no_batch_mixes_short_files_with_a_long_files_segments():
    """A lane that carries long files takes a waiting short request into a batch of short
    pieces only; with one lane the short request shares the next batch (test above)."""
    fake = CountingModel()
    scheduler = BatchScheduler(
        fake, max_batch_size=4, max_batch_seconds=100.0, max_wait=0.0, lanes=2
    )

    async def batches():
        scheduler.submit([piece(1, 10.0) for _ in range(6)], timestamps=False)
        scheduler.submit([piece(2, 2.0)], timestamps=False)
        scheduler.submit([piece(3, 3.0)], timestamps=False)
        taken = []
        with scheduler._cond:  # as a long-file lane takes them (not started: no threads)
            while jobs := scheduler._eligible(short_only=False):
                taken.append(
                    [int(job.pieces[i].load()[0]) for job, i in scheduler._take_batch(jobs)]
                )
        return taken

    assert asyncio.run(batches()) == [[2, 3], [1, 1, 1, 1], [1, 1]]


def test_batches_keep_to_the_padded_seconds_bound_and_report_unreadable_pieces():
    fake = CountingModel()
    scheduler = BatchScheduler(fake, max_batch_size=8, max_batch_seconds=20.0, max_wait=0.05)
    scheduler.start()

    def unreadable():
        raise AudioError("x.wav: cannot read audio")

    async def scenario():
        jobs = [scheduler.submit([piece(3, 9.0), piece(3, 9.0)], False) for _ in range(3)]
        broken = scheduler.submit([Piece(1.0, unreadable), piece(4, 1.0)], False)
        results = []
        for job in [*jobs, broken]:
            results.append([r async for r in job.in_order()])
        return results

    results = asyncio.run(scenario())
    scheduler.stop(10)
    assert all(len(batch) * 9 <= 20 or set(batch) == {4} for batch in fake.batches)
    assert results[-1][0].error == "x.wav: cannot read audio" and not results[-1][0].internal
    assert results[-1][1].recognition.text == "10 frames"
    assert all(r.recognition.text == "90 frames" for job in results[:-1] for r in job)


def test_serve_refuses_a_missing_model_and_nothing_to_serve(tmp_path, capsys):
    from asr.cli import main

    assert main(["serve", "--model", str(tmp_path / "none.pt")]) == 1
    assert "none.pt: no such model file" in capsys.readouterr().err
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    assert main(["serve", "--model", str(model), "--no-http"]) == 1
    assert "--no-http needs --wyoming" in capsys.readouterr().err
