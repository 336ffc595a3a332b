"""Live transcription over `asr serve`'s WebSocket (Vosk's protocol), with the `websockets`
client: one reply per message, partials that the final only extends, the final result at eof
and the close, resampling to the model's rate, the idle timeout, the cap on streams (1013), the
API key, and refusals of messages outside the protocol, in this process over a recogniser that
finds words in loud stretches of audio (`LoudnessRecognizer`); then end to end against `asr
serve` processes: 8 streams at once of a left-to-right model each equal `asr transcribe`'s
text, 8 kHz audio to its 16 kHz model, and a bidirectional model's finals equal `asr transcribe
--stream`'s."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

pytest.importorskip("fastapi", reason="asr serve needs the serve extra (fastapi)")
pytest.importorskip("websockets", reason="the stream tests need the websockets client")
import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from asr.cli import main
from asr.serve.app import create_app
from asr.serve.config import ServeConfig
from asr.serve.service import TranscriptionService
from asr.serve.stream_ws import StreamHub, _HideKeys
from asr.stream import StreamResult, StreamWord
from tests.conftest import make_tone_corpus, tiny_overrides
from tests.serve_fixtures import ROOT, ServeProcess, TinyModel, offline, tiny_model


@dataclass
class LoudnessRecognizer:
    """StreamingRecognizer's interface over a rule a test can predict: each run of 10 ms frames
    with RMS over 0.05 is a word ("w1", "w2", ... in stream order), and 0.3 s of quiet after a
    word is an endpoint. Keeps every sample it was given."""

    sample_rate: int = 16000
    received: list[np.ndarray] = field(default_factory=list)
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    _frames: int = 0  # frames seen since the stream's start
    _count: int = 0  # words begun since the stream's start
    _segment: list[StreamWord] = field(default_factory=list)
    _open: int | None = None  # first frame of the word being heard
    _quiet: int = 0  # quiet frames since the last loud one
    _ended: bool = False  # the open segment has reached its endpoint

    def accept_waveform(self, samples: np.ndarray) -> bool:
        assert samples.dtype == np.float32 and samples.ndim == 1
        self.received.append(samples.copy())
        self._pending = np.concatenate([self._pending, samples])
        hop = self.sample_rate // 100
        while len(self._pending) >= hop:
            frame, self._pending = self._pending[:hop], self._pending[hop:]
            self._step(float(np.sqrt(np.mean(frame**2))) > 0.05)
        return self._ended

    def _step(self, loud: bool) -> None:
        if loud and self._open is None:
            self._open, self._count = self._frames, self._count + 1
        if not loud and self._open is not None:
            self._close_word()
        self._quiet = 0 if loud else self._quiet + 1
        if self._segment and self._open is None and self._quiet == 30:
            self._ended = True
        self._frames += 1

    def _close_word(self) -> None:
        start, end = self._open / 100, self._frames / 100
        self._segment.append(StreamWord(f"w{self._count}", start, end, 0.9))
        self._open = None

    def partial(self) -> str:
        words = [w.word for w in self._segment]
        return " ".join(words + ([f"w{self._count}"] if self._open is not None else []))

    def final(self) -> StreamResult:
        if self._open is not None:
            self._close_word()
        words, self._segment, self._ended = self._segment, [], False
        start, end = (words[0].start, words[-1].end) if words else (0.0, 0.0)
        return StreamResult(" ".join(w.word for w in words), words, start, end)

    def finish(self) -> list[StreamResult]:
        result = self.final()
        return [result] if result.text else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """asr serve's app over `LoudnessRecognizer`s, in uvicorn on a thread of this process."""

    def __init__(self, rate: int = 16000, **fields):
        config = ServeConfig(model="loudness", **fields)
        self.recognizers: list[LoudnessRecognizer] = []
        self.hub = StreamHub(config, self._new, threads=2)
        self.service = TranscriptionService(config)
        self.rate = rate
        app = create_app(self.service, owns_service=False, streams=self.hub)
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def _new(self) -> LoudnessRecognizer:
        recognizer = LoudnessRecognizer(self.rate)
        self.recognizers.append(recognizer)
        return recognizer

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.service.close()


def speech(pattern: str, rate: int, seconds_per_char: float = 0.1) -> np.ndarray:
    """Float32 audio where each "x" of `pattern` is a loud 300 Hz tone and each "." quiet noise,
    `seconds_per_char` each (tones of one run join into one word)."""
    n = int(seconds_per_char * rate)
    rng = np.random.default_rng(0)
    t = np.arange(n * len(pattern)) / rate
    loud = np.repeat([c == "x" for c in pattern], n)
    wav = np.where(loud, 0.3 * np.sin(2 * np.pi * 300 * t), 0.002 * rng.standard_normal(len(t)))
    return wav.astype(np.float32)


def pcm16(wav: np.ndarray) -> bytes:
    return (np.clip(wav, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def closed(ws) -> ConnectionClosed:
    """The ConnectionClosed that the next recv raises (the server's close code and reason)."""
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=10)
    return info.value


def stream(ws, data: bytes, chunk_bytes: int) -> list[dict]:
    """Send `data` in chunks, reading the one reply to each before the next; then the eof and
    its reply. Returns the replies in order."""
    replies = []
    for i in range(0, len(data), chunk_bytes):
        ws.send(data[i : i + chunk_bytes])
        replies.append(json.loads(ws.recv(timeout=10)))
    ws.send('{"eof" : 1}')
    replies.append(json.loads(ws.recv(timeout=10)))
    return replies


def test_one_reply_per_message_partials_extend_and_eof_gives_the_final(tmp_path):
    """Two words, a pause (an endpoint), then a third word cut off by the eof: every audio
    chunk gets one reply, each segment's partials are prefixes of its result, the eof's reply
    is the last result, then the server closes with 1000; the config message gets no reply."""
    wav = speech("..xxx..xx......xx.", 16000)  # w1 w2 | endpoint | w3
    with AppServer() as server, connect(server.url + "/v1/stream") as ws:
        ws.send(json.dumps({"config": {"sample_rate": 16000, "words": True}}))
        replies = stream(ws, pcm16(wav), 1600 * 2)  # 100 ms chunks
        end = closed(ws)
    assert end.rcvd.code == 1000
    assert len(replies) == 19  # 18 chunks and the eof
    results = [(i, r) for i, r in enumerate(replies) if "result" in r]
    assert [r["text"] for _, r in results] == ["w1 w2", "w3"]
    assert results[-1][0] == len(replies) - 1  # the eof's reply is the final result
    assert all(set(r) == {"partial"} for r in replies if "result" not in r)
    segment_start = 0
    for index, result in results:
        partials = [r["partial"] for r in replies[segment_start:index]]
        assert any(partials)  # words showed while they were spoken
        for earlier, later in zip(partials, [*partials[1:], result["text"]], strict=True):
            assert later.startswith(earlier), (earlier, later)
        segment_start = index + 1
    first = results[0][1]["result"]
    assert [w["word"] for w in first] == ["w1", "w2"]
    assert first[0] == {"word": "w1", "start": 0.2, "end": 0.5, "conf": 0.9}
    assert first[1]["start"] == 0.7 and first[1]["end"] == 0.9


def test_vosk_path_words_false_and_odd_byte_frames(tmp_path):
    """Vosk's clients connect to / and may ask for results without word lists; a frame may
    end in the middle of a sample (its last byte is kept for the next)."""
    wav = speech(".xx..", 16000)
    data = pcm16(wav)
    with AppServer() as server, connect(server.url + "/") as ws:
        ws.send('{ "config" : { "sample_rate" : 16000, "words" : false } }')
        replies = stream(ws, data, 1001)  # odd-sized frames
        assert closed(ws).rcvd.code == 1000
        received = np.concatenate(server.recognizers[0].received)
    assert replies[-1] == {"text": "w1"}
    expected = np.frombuffer(data, "<i2").astype(np.float32) / 32768
    np.testing.assert_array_equal(received, expected)


def test_8_khz_audio_is_resampled_to_a_16_khz_model():
    """The client declares 8 kHz; the recogniser (16 kHz) gets what soxr makes of the whole
    signal at once, and the word times are the same as for 16 kHz audio."""
    wav8 = speech("..xxx..x..", 8000)
    data = pcm16(wav8)
    with AppServer(rate=16000) as server, connect(server.url + "/v1/stream") as ws:
        ws.send(json.dumps({"config": {"sample_rate": 8000}}))
        replies = stream(ws, data, 777 * 2)
        assert closed(ws).rcvd.code == 1000
        received = np.concatenate(server.recognizers[0].received)
    quantised = np.frombuffer(data, "<i2").astype(np.float32) / 32768
    expected = soxr.resample(quantised, 8000, 16000, quality="HQ")
    assert len(received) == len(expected) == 2 * len(wav8)
    np.testing.assert_allclose(received, expected, atol=1e-5)
    assert replies[-1]["text"] == "w1 w2"
    assert [(w["start"], w["end"]) for w in replies[-1]["result"]] == [(0.2, 0.5), (0.7, 0.8)]


def test_an_idle_stream_is_closed_with_the_reason():
    with AppServer(stream_idle_seconds=0.5) as server, connect(server.url + "/v1/stream") as ws:
        ws.send(pcm16(speech("x", 16000)))
        assert "partial" in json.loads(ws.recv(timeout=10))
        end = closed(ws)
    assert end.rcvd.code == 1008
    assert end.rcvd.reason == "no message for 0.5 s (--stream-idle-seconds)"


def test_streams_past_the_cap_are_closed_with_1013_and_a_slot_frees_on_close():
    with AppServer(max_streams=2) as server:
        with connect(server.url + "/v1/stream") as a, connect(server.url + "/v1/stream") as b:
            for ws in (a, b):  # both streams are open (each answered a frame)
                ws.send(b"\0\0" * 160)
                assert json.loads(ws.recv(timeout=10)) == {"partial": ""}
            with connect(server.url + "/v1/stream") as c:
                end = closed(c)
            assert end.rcvd.code == 1013
            assert "2 streams open" in end.rcvd.reason and "--max-streams" in end.rcvd.reason
        deadline = time.monotonic() + 10
        while server.hub.open and time.monotonic() < deadline:
            time.sleep(0.02)
        with connect(server.url + "/v1/stream") as d:
            d.send(b"\0\0" * 160)
            assert json.loads(d.recv(timeout=10)) == {"partial": ""}


def test_the_api_key_comes_as_a_bearer_header_or_the_api_key_query():
    with AppServer(api_key="s3cret") as server:
        for url, headers, reason in [
            ("/v1/stream", None, "no API key"),
            ("/v1/stream", {"Authorization": "Bearer wrong"}, "incorrect API key"),
            ("/v1/stream?api_key=wrong", None, "incorrect API key"),
        ]:
            with connect(server.url + url, additional_headers=headers) as ws:
                end = closed(ws)
            assert end.rcvd.code == 1008 and end.rcvd.reason.startswith(reason), url
        for url, headers in [
            ("/v1/stream", {"Authorization": "Bearer s3cret"}),
            ("/?api_key=s3cret", None),
        ]:
            with connect(server.url + url, additional_headers=headers) as ws:
                ws.send('{"eof" : 1}')
                assert json.loads(ws.recv(timeout=10)) == {"result": [], "text": ""}


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        (["hello"], "a text message must be"),
        (['{"config": {"sample_rate": "fast"}}'], "sample_rate must be a number of Hz"),
        (['{"config": {"sample_rate": 100}}'], "sample_rate must be a number of Hz"),
        (['{"config": 16000}'], '"config" must be an object'),
        ([b"\0\0", '{"config": {"sample_rate": 8000}}'], "the config must come before"),
    ],
)
def test_messages_outside_the_protocol_close_with_1007_and_the_cause(messages, reason):
    with AppServer() as server, connect(server.url + "/v1/stream") as ws:
        for message in messages:
            ws.send(message)
            if isinstance(message, bytes):
                ws.recv(timeout=10)
        end = closed(ws)
    assert end.rcvd.code == 1007 and end.rcvd.reason.startswith(reason), end.rcvd.reason


def test_the_key_in_a_socket_path_is_masked_in_the_log(caplog):
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        "",
        0,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5", "/v1/stream?api_key=s3cret&x=1"),
        None,
    )
    assert _HideKeys().filter(record)
    assert record.getMessage() == '127.0.0.1:5 - "WebSocket /v1/stream?api_key=***&x=1" [accepted]'


# End to end: `asr serve` processes with real models, against `asr transcribe`.


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> TinyModel:
    """The serve tests' bidirectional 8 kHz model (it streams by re-decoding)."""
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="module")
def left_to_right(tmp_path_factory) -> Path:
    """A unidirectional 16 kHz model with 2 frames of lookahead (it streams incrementally),
    trained for 30 epochs on the tone corpus at 16 kHz (a few seconds of one core)."""
    root = tmp_path_factory.mktemp("stream-model")
    manifest = make_tone_corpus(root / "tones", sample_rate=16000)
    overrides = [
        *tiny_overrides(manifest),
        # features below 4 kHz only, so 8 kHz audio sounds to it as the 16 kHz corpus does
        *("features.sample_rate=16000", "features.f_max=4000", "features.normalize_level=false"),
        *("model.bidirectional=false", "model.lookahead_frames=2"),
        *("train.epochs=30", "train.spec_augment=false", "train.validate_every_epochs=100"),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--out-dir", str(root / "exp"), *overrides]) == 0
    return root / "exp" / "best.pt"


def served(checkpoint: Path, log: Path, *args: str):
    process = ServeProcess(checkpoint, log, *args).wait_ready()
    yield process
    assert process.terminate() == 0, process.output()


@pytest.fixture(scope="module")
def bidirectional_server(model, tmp_path_factory):
    yield from served(model.checkpoint, tmp_path_factory.mktemp("bi") / "serve.log")


@pytest.fixture(scope="module")
def left_to_right_server(left_to_right, tmp_path_factory):
    yield from served(left_to_right, tmp_path_factory.mktemp("uni") / "serve.log")


def joined_file(path: Path, files: list[Path], pause: float = 0.8) -> Path:
    """The files one after another with `pause` seconds of quiet noise between and after them,
    as 16-bit PCM at the first file's rate."""
    rng = np.random.default_rng(1)
    parts, rate = [], sf.info(files[0]).samplerate
    for f in files:
        wav, file_rate = sf.read(f, dtype="float32")
        assert file_rate == rate
        parts += [wav, 0.003 * rng.standard_normal(int(pause * rate)).astype(np.float32)]
    sf.write(path, np.concatenate(parts), rate, subtype="PCM_16")
    return path


def stream_file(url: str, path: Path, chunk_seconds: float = 0.1) -> list[dict]:
    """A file's 16-bit samples through the socket in lock-step, declaring its rate; the
    replies (the last is the eof's), after checking the close."""
    info = sf.info(path)
    data = sf.read(path, dtype="int16")[0].astype("<i2").tobytes()
    with connect(url.replace("http://", "ws://") + "/v1/stream") as ws:
        ws.send(json.dumps({"config": {"sample_rate": info.samplerate}}))
        replies = stream(ws, data, 2 * int(chunk_seconds * info.samplerate))
        assert closed(ws).rcvd.code == 1000
    return replies


def check_partials_extend(replies: list[dict]) -> str:
    """Each segment's partials only extend each other, and its result extends or replaces
    them; the results' texts joined."""
    texts, partial = [], ""
    for reply in replies:
        if "partial" in reply:
            assert reply["partial"].startswith(partial), (partial, reply["partial"])
            partial = reply["partial"]
        else:
            texts.append(reply["text"])
            partial = ""
    return " ".join(t for t in texts if t)


def test_eight_concurrent_streams_each_equal_asr_transcribe(left_to_right_server, left_to_right):
    """8 sockets at once, each a different file of three utterances with pauses: the finals
    of each, joined, are `asr transcribe`'s text of its file, with word times inside it."""
    tones = left_to_right.parents[1] / "tones"
    files = [
        joined_file(
            tones / f"joined{i}.wav", [tones / f"utt0_{(i + k) % 12}.wav" for k in (0, 3, 7)]
        )
        for i in range(8)
    ]
    expected = [r["text"] for r in offline(left_to_right, files)]
    with ThreadPoolExecutor(8) as pool:
        streamed = list(pool.map(lambda f: stream_file(left_to_right_server.url, f), files))
    for replies, text, path in zip(streamed, expected, files, strict=True):
        assert text and check_partials_extend(replies) == text, path.name
        results = [r for r in replies if "result" in r]
        assert len(results) >= 2  # endpoints at the pauses, not only the eof's
        words = [w for r in results for w in r["result"]]
        assert " ".join(w["word"] for w in words) == text
        assert all(0 <= w["start"] < w["end"] <= sf.info(path).duration for w in words)


def test_a_bidirectional_model_s_finals_are_asr_transcribe_stream_s(bidirectional_server, model):
    """The bidirectional model re-decodes the open segment: the socket's finals are `asr
    transcribe --stream`'s (text and word times), and each is `asr transcribe`'s text of its
    segment's audio."""
    path = joined_file(model.folder / "joined-bi.wav", [model.files[i] for i in (0, 3, 7)])
    replies = stream_file(bidirectional_server.url, path)
    check_partials_extend(replies)
    results = [r for r in replies if r.get("text")]
    out = io.StringIO()
    args = ["transcribe", "--model", str(model.checkpoint), "--device", "cpu", "--stream"]
    with contextlib.redirect_stdout(out):
        assert main([*args, "--format", "json", str(path)]) == 0
    finals = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(results) == len(finals) == 3
    for result, final in zip(results, finals, strict=True):
        assert result["text"] == final["text"]
        assert [w["word"] for w in result["result"]] == [w["word"] for w in final["words"]]
        for ours, theirs in zip(result["result"], final["words"], strict=True):
            assert ours["start"] == pytest.approx(theirs["start"], abs=0.01)
            assert ours["end"] == pytest.approx(theirs["end"], abs=0.01)
    wav, rate = sf.read(path, dtype="float32")
    cuts = []
    for i, final in enumerate(finals):
        cuts.append(model.folder / f"segment{i}.wav")
        segment = wav[round(final["start"] * rate) : round(final["end"] * rate)]
        sf.write(cuts[-1], segment, rate, subtype="FLOAT")
    assert [r["text"] for r in offline(model.checkpoint, cuts)] == [r["text"] for r in results]


def test_8_khz_audio_streams_to_a_16_khz_model_as_asr_transcribe_reads_it(
    left_to_right_server, left_to_right, model
):
    """The left-to-right 16 kHz model hears 8 kHz audio resampled by the server: its partials
    grow while the words are spoken and its finals, joined, are `asr transcribe`'s text of the
    8 kHz file."""
    path = joined_file(model.folder / "joined8k.wav", [model.files[i] for i in (0, 1, 10)])
    assert sf.info(path).samplerate == 8000
    (expected,) = offline(left_to_right, [path])
    replies = stream_file(left_to_right_server.url, path)
    assert expected["text"] and check_partials_extend(replies) == expected["text"]
    first_result = next(i for i, r in enumerate(replies) if "result" in r)
    assert any(r["partial"] for r in replies[:first_result])


def test_the_page_s_live_mode_in_chromium(left_to_right_server, left_to_right, tmp_path):
    """Headless Chromium's fake microphone plays three utterances once into the page's Live
    mode: grey partials show while it plays, and once stopped the final transcript shown is
    `asr transcribe`'s text of the audio the page sent (kept as the player's WAV)."""
    pytest.importorskip("selenium", reason="the page tests need selenium")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_serve_page import CHROMEDRIVER, CHROMIUM, chromium, recorded_wav

    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Chromium and chromedriver are not installed")
    tones = left_to_right.parents[1] / "tones"
    mic = joined_file(tmp_path / "mic.wav", [tones / f"utt0_{i}.wav" for i in (1, 3, 11)])
    driver = chromium(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}%noloop",
    )
    try:
        driver.get(left_to_right_server.url + "/")
        live = driver.find_element(By.ID, "live")
        live.click()
        WebDriverWait(driver, 20).until(lambda d: live.text == "Stop")
        driver.execute_script(
            """window.partials = [];
            new MutationObserver(() => {
                const p = document.getElementById('partial');
                if (p && p.textContent) window.partials.push(p.textContent);
            }).observe(document.getElementById('transcript'),
                       {subtree: true, childList: true, characterData: true});"""
        )
        time.sleep(sf.info(mic).duration + 0.5)  # the file plays once, then silence
        partials = driver.execute_script("return window.partials;")
        live.click()
        WebDriverWait(driver, 30).until(
            lambda d: (
                d.find_element(By.ID, "status").text.startswith("Done:")
                or d.find_element(By.ID, "error").text
            )
        )
        assert driver.find_element(By.ID, "error").text == ""
        assert partials, "no partial was shown while the audio played"
        wav = recorded_wav(driver, tmp_path / "sent.wav")
        assert sf.info(wav).samplerate == 16000 and sf.info(wav).duration > sf.info(mic).duration
        (expected,) = offline(left_to_right, [wav])
        text = driver.find_element(By.ID, "text").text
        assert expected["text"] and text == expected["text"]
        shown = driver.find_elements(By.CSS_SELECTOR, "#transcript .word")
        assert [w.text.split("\n")[0] for w in shown] == text.split()
        color = driver.execute_script(
            "return getComputedStyle(document.getElementById('partial')).color;"
        )
        assert color == "rgb(153, 153, 153)"  # partials are grey
        driver.save_screenshot(str(tmp_path / "live.png"))
    finally:
        driver.quit()


def test_the_latency_benchmark_reports_every_figure(left_to_right, tmp_path):
    """bench/stream_latency.py --small with the left-to-right model, on tone utterances laid
    out as AN4's test set: each level's word lags and finals, the algorithmic latency of the
    incremental mode, and a server that drained and exited 0."""
    speaker = tmp_path / "an4" / "wav" / "an4test_clstk" / "tones"
    speaker.mkdir(parents=True)
    for i in (0, 1, 3):
        shutil.copy(left_to_right.parents[1] / "tones" / f"utt0_{i}.wav", speaker)
    out = tmp_path / "latency.json"
    command = [sys.executable, "bench/stream_latency.py", "--small", "--model", str(left_to_right)]
    command += ["--an4", str(tmp_path / "an4"), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["audio"] == f"AN4 test: 2 utterances of {tmp_path / 'an4'}"
    assert report["server_exit_status"] == 0
    design = report["algorithmic"]
    assert design["mode"] == "incremental" and design["lookahead_s"] > 0
    assert design["word_at_most_s"] == pytest.approx(0.1 + 0.01 + design["lookahead_s"], abs=1e-3)
    assert [row["streams"] for row in report["levels"]] == [1, 2]
    for row in report["levels"]:
        assert row["words_matched"] >= 1 and row["utterances"] == row["streams"]
        assert row["word_lag"]["p95_s"] >= row["word_lag"]["p50_s"]
        assert row["server_cpu_s_per_audio_s"] > 0
    assert "end of speech->final" in run.stdout


@pytest.mark.parametrize("flag", ["--stream-idle-seconds", "--stream-endpoint-seconds"])
def test_serve_refuses_stream_seconds_that_are_not_positive(flag, tmp_path, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(b"")
    assert main(["serve", "--model", str(model), flag, "0"]) != 0
    assert f"{flag} must be more than 0, not 0.0" in capsys.readouterr().err
