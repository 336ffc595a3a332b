"""`asr serve` in its own process on 127.0.0.1, driven by clients this project did not write:
the `openai` package and the `wyoming` package's TCP client; many clients at once with a
10-minute file among 2-second ones and bad requests mixed in; SIGTERM while a request is in
flight; and a soak of about a minute watching for 500s and memory growth."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("openai", reason="the real-client tests need the openai package")
pytest.importorskip("wyoming", reason="the Wyoming tests need the wyoming package")
import httpx
import openai
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.info import Describe, Info

from tests.conftest import TEXTS, tone_utterance
from tests.serve_fixtures import RATE, ROOT, ServeProcess, long_tone_file, offline, tiny_model

KEY = "test-key"
URL = "/v1/audio/transcriptions"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    """HTTP with an API key, and Wyoming, in one process."""
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    process = ServeProcess(model.checkpoint, log, "--api-key", KEY, wyoming=True)
    yield process.wait_ready()
    assert process.terminate() == 0, process.output()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory) -> dict[str, Path]:
    """A 45-second file, a 10-minute file, and 2-second files of three joined utterances."""
    folder = tmp_path_factory.mktemp("serve-files")
    out = {
        "long45": long_tone_file(folder / "long45.wav", 45.0, seed=1),
        "long600": long_tone_file(folder / "long600.wav", 600.0, seed=2),
    }
    rng = np.random.default_rng(3)
    for i in range(12):
        parts = []
        for _ in range(3):
            parts += [tone_utterance(TEXTS[rng.integers(len(TEXTS))], RATE, rng)]
            parts += [np.zeros(int(0.25 * RATE), np.float32)]
        wav = np.concatenate(parts)
        wav = np.pad(wav, (0, max(0, 2 * RATE - len(wav))))
        out[f"short{i}"] = folder / f"short{i}.wav"
        sf.write(out[f"short{i}"], wav, RATE, subtype="PCM_16")
    return out


@pytest.fixture(scope="module")
def expected(model, files) -> dict[str, dict]:
    """`asr transcribe --format json` of every file, by name."""
    records = offline(model.checkpoint, list(files.values()))
    return dict(zip(files, records, strict=True))


def openai_client(server: ServeProcess, key: str = KEY):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=120)


def test_openai_client_json_and_verbose_json_equal_asr_transcribe(model, server, files, expected):
    client = openai_client(server)
    assert [m.id for m in client.models.list().data] == [f"exp/{model.checkpoint.name}"]
    for name in ("short0", "long45"):
        record = expected[name]
        with files[name].open("rb") as f:
            plain = client.audio.transcriptions.create(model="whisper-1", file=f)
        assert plain.text == record["text"] and record["text"]
        with files[name].open("rb") as f:
            verbose = client.audio.transcriptions.create(
                model="whisper-1",
                file=f,
                response_format="verbose_json",
                timestamp_granularities=["word", "segment"],
            )
        assert verbose.text == record["text"]
        words = [(w.word, w.start, w.end) for w in verbose.words]
        assert words == [(w["word"], w["start"], w["end"]) for w in record["words"]]
        assert verbose.segments and verbose.duration > 0
        if "segments" in record:  # the long file, cut at pauses
            assert [(s.start, s.end, s.text) for s in verbose.segments] == [
                (s["start"], s["end"], s["text"]) for s in record["segments"]
            ]


def test_openai_client_streams_and_sees_errors(server, files, expected):
    client = openai_client(server)
    with files["long45"].open("rb") as f:
        events = list(client.audio.transcriptions.create(model="whisper-1", file=f, stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == expected["long45"]["text"]
    assert events[-1].type == "transcript.text.done"
    assert events[-1].text == expected["long45"]["text"]
    wrong_key = openai_client(server, "wrong")
    with pytest.raises(openai.AuthenticationError, match="incorrect API key"):
        wrong_key.audio.transcriptions.create(model="whisper-1", file=files["short0"])
    with pytest.raises(openai.BadRequestError, match="cannot read audio"):
        client.audio.transcriptions.create(model="whisper-1", file=("notes.wav", b"not audio"))


async def wyoming_transcribe(port: int, path: Path) -> tuple[Info, Transcript]:
    """describe -> info, then the WAV's PCM in 100 ms audio-chunks -> the transcript."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(Describe().event())
        info = Info.from_event(await client.read_event())
        with wave.open(str(path)) as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate, width, channels).event())
            while chunk := w.readframes(rate // 10):
                await client.write_event(AudioChunk(rate, width, channels, chunk).event())
        await client.write_event(AudioStop().event())
        event = await client.read_event()
        assert Transcript.is_type(event.type), event
        return info, Transcript.from_event(event)


def test_wyoming_client_describe_and_transcribe(model, server, files, expected):
    for name in ("short1", "long45"):
        info, transcript = asyncio.run(wyoming_transcribe(server.wyoming_port, files[name]))
        assert transcript.text == expected[name]["text"]
    (program,) = info.asr
    (asr_model,) = program.models
    assert asr_model.name == f"exp/{model.checkpoint.name}"
    assert asr_model.languages == ["en"] and program.installed


def test_wyoming_alone_answers_and_refuses_bad_audio_with_an_error_event(
    model, files, expected, tmp_path
):
    process = ServeProcess(model.checkpoint, tmp_path / "serve.log", "--no-http", wyoming=True)
    deadline = time.monotonic() + 60
    while "asr: serving model" not in process.output() and time.monotonic() < deadline:
        assert process.process.poll() is None, process.output()
        time.sleep(0.1)
    _, transcript = asyncio.run(wyoming_transcribe(process.wyoming_port, files["short2"]))
    assert transcript.text == expected["short2"]["text"]

    async def bad_streams() -> list[Error]:
        errors = []
        async with AsyncTcpClient("127.0.0.1", process.wyoming_port) as client:
            for width, audio in ((3, b"\0" * 3000), (2, b"")):
                await client.write_event(AudioStart(RATE, width, 1).event())
                await client.write_event(AudioChunk(RATE, width, 1, audio).event())
                await client.write_event(AudioStop().event())
                errors.append(Error.from_event(await client.read_event()))
        return errors

    unsupported, empty = asyncio.run(bad_streams())
    assert "3-byte samples" in unsupported.text and unsupported.code == "invalid_audio"
    assert "empty audio" in empty.text
    assert process.terminate() == 0, process.output()
    assert "Uvicorn" not in process.output()  # no HTTP server


def test_many_clients_with_a_long_file_and_bad_requests(server, files, expected, tmp_path):
    """8 clients, 40 requests: the 10-minute file first, 2-second files, and bad requests
    (not audio, no file, a wrong key) mixed in."""
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not samples")
    requests = [("long600", files["long600"], KEY, 200)]
    shorts = [f"short{i}" for i in range(12)]
    for i in range(39):
        if i % 5 == 2:
            requests.append(("bad", not_audio, KEY, 400))
        elif i % 5 == 4:
            requests.append(("bad", files["short0"], "wrong", 401))
        else:
            name = shorts[i % len(shorts)]
            requests.append((name, files[name], KEY, 200))
    done_at: dict[int, float] = {}

    def send(i: int):
        _, path, key, _ = requests[i]
        with httpx.Client(base_url=server.url, timeout=300) as http:
            response = http.post(
                URL,
                headers={"Authorization": f"Bearer {key}"},
                files={"file": (path.name, path.read_bytes())},
                data={"model": "whisper-1", "response_format": "json"},
            )
        done_at[i] = time.monotonic()
        return response

    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(send, 0)
        time.sleep(0.2)  # the long file goes in first
        rest = list(pool.map(send, range(1, len(requests))))
    responses = [first.result(), *rest]
    for (name, _, _, status), response in zip(requests, responses, strict=True):
        assert response.status_code == status, (name, response.text)
        if status == 200:
            assert response.json()["text"] == expected[name]["text"], name
        else:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    # 2-second requests were answered while the 10-minute file was still being transcribed
    assert sum(done_at[i] < done_at[0] for i in range(1, len(requests))) >= 1


def test_sigterm_finishes_the_request_in_flight_and_exits_0(model, files, expected, tmp_path):
    process = ServeProcess(model.checkpoint, tmp_path / "serve.log").wait_ready()
    with httpx.Client(base_url=process.url, timeout=300) as http:
        path = files["long600"]
        with http.stream(
            "POST",
            URL,
            files={"file": (path.name, path.read_bytes())},
            data={"model": "whisper-1", "stream": "true"},
        ) as response:
            assert response.status_code == 200  # the file is read; transcription goes on
            process.process.send_signal(15)
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    done = json.loads(lines[-1].removeprefix("data: "))
    assert done == {"type": "transcript.text.done", "text": expected["long600"]["text"]}
    assert process.terminate() == 0, process.output()
    assert "Shutting down" in process.output()


@pytest.mark.slow
def test_soak_of_good_and_bad_requests(model, files, expected, tmp_path):
    """40 seconds of requests from 4 clients, a third of them bad: no 500, every good
    answer right, and the server's resident memory grows by less than 50 MB after warm-up."""
    process = ServeProcess(model.checkpoint, tmp_path / "serve.log", "--max-queue", "8")
    process.wait_ready()
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    kinds = [f"short{i}" for i in range(12)] + ["long45", "bad", "empty", "format", "stream"]
    statuses: list[int] = []
    wrong: list[str] = []
    baseline: list[float] = []
    stop_at = time.monotonic() + 40
    warm_until = time.monotonic() + 8

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=process.url, timeout=120) as http:
            while time.monotonic() < stop_at:
                if not baseline and time.monotonic() > warm_until:
                    baseline.append(process.rss_mb())
                kind = rng.choice(kinds)
                data = {"model": "whisper-1"}
                path = files.get(kind, files["short0"])
                if kind == "empty":
                    path = empty
                elif kind == "format":
                    data["response_format"] = "mp3"
                elif kind == "stream":
                    data["stream"] = "true"
                body = b"RIFF....not audio" if kind == "bad" else path.read_bytes()
                response = http.post(URL, files={"file": (path.name, body)}, data=data)
                statuses.append(response.status_code)
                good = response.status_code == 200 and kind in expected
                if good and response.json()["text"] != expected[kind]["text"]:
                    wrong.append(kind)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    growth = process.rss_mb() - baseline[0]
    assert process.terminate() == 0, process.output()
    assert 500 not in statuses and not wrong
    assert set(statuses) <= {200, 400, 503} and statuses.count(400) > 10
    assert growth < 50, f"resident memory grew by {growth:.1f} MB"


def test_the_serve_benchmark_reports_every_figure(tmp_path):
    """bench/serve.py --small on synthetic audio: each load level, the batch command, the
    long-file comparison, and a server that drained and exited 0."""
    out = tmp_path / "serve.json"
    command = [sys.executable, "bench/serve.py", "--small", "--an4", str(tmp_path / "no-an4")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["audio"] == "synthetic tone bursts" and report["server_exit_status"] == 0
    assert [(r["clients"], r["requests"]) for r in report["load"]] == [(1, 8), (4, 8), (16, 8)]
    assert all(r["p95_s"] >= r["p50_s"] > 0 for r in report["load"])
    batch = report["batch_command"]
    assert batch["before_server"]["files"] == batch["after_server"]["files"] == 8
    assert report["server_over_batch_at_most_clients"] > 0
    assert report["head_of_line"]["short_requests_idle"] == 8
    assert report["head_of_line"]["long_file_s"] == 60.0
    assert "2-s requests, p95: idle" in run.stdout
