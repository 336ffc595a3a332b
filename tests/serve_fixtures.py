"""What the tests of `asr serve` share: a tiny model trained once per test process on the tone
corpus (tests/conftest.py), files to send (short utterances and a long file of them joined at
pauses), `asr transcribe`'s own output for them, and a real `asr serve` process on free ports."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from asr.cli import main
from tests.conftest import TEXTS, make_tone_corpus, tiny_overrides, tone_utterance

RATE = 8000  # Hz of the tone corpus and the tiny model
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class TinyModel:
    checkpoint: Path
    files: list[Path]  # short tone utterances (0.3-0.6 s) of conftest.TEXTS, in its order
    folder: Path  # where to write more files


_MODEL: TinyModel | None = None


def tiny_model(tmp_path_factory) -> TinyModel:
    """A 2-layer BiGRU trained for 30 epochs on the tone corpus (about 10 s of one core),
    trained once per test process and shared by the serve test modules."""
    global _MODEL
    if _MODEL is None:
        root = tmp_path_factory.mktemp("serve-model")
        manifest = make_tone_corpus(root / "tones")
        overrides = [*tiny_overrides(manifest), "train.epochs=30", "train.spec_augment=false"]
        overrides.append("train.validate_every_epochs=100")
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["train", "--out-dir", str(root / "exp"), *overrides]) == 0
        files = [root / "tones" / f"utt0_{i}.wav" for i in range(len(TEXTS))]
        _MODEL = TinyModel(root / "exp" / "best.pt", files, root)
    return _MODEL


def long_tone_file(path: Path, seconds: float, seed: int = 0) -> Path:
    """A 16-bit WAV of tone utterances joined by 0.6-1.5 s pauses, `seconds` long or a little
    more: long enough that `asr transcribe` cuts it at pauses into segments."""
    rng = np.random.default_rng(seed)
    pieces, total = [], 0
    while total < seconds * RATE:
        wav = tone_utterance(TEXTS[rng.integers(len(TEXTS))], RATE, rng)
        pause = (0.003 * rng.standard_normal(int(rng.uniform(0.6, 1.5) * RATE))).astype(np.float32)
        pieces += [wav, pause]
        total += len(wav) + len(pause)
    sf.write(path, np.concatenate(pieces), RATE, subtype="PCM_16")
    return path


def offline(checkpoint: Path, files: list[Path], fmt: str = "json") -> list:
    """`asr transcribe --format FMT` of the files: JSON records (json), texts (text), or the
    subtitle text of one file (srt, vtt)."""
    out = io.StringIO()
    args = ["transcribe", "--model", str(checkpoint), "--device", "cpu", "--format", fmt]
    with contextlib.redirect_stdout(out):
        assert main([*args, *map(str, files)]) == 0
    if fmt == "json":
        return [json.loads(line) for line in out.getvalue().splitlines()]
    if fmt == "text":
        return [line.split("\t", 1)[1] for line in out.getvalue().splitlines()]
    return [out.getvalue()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """`asr serve --model CHECKPOINT ARGS` in a child process on free ports; its output goes
    to LOG. `url` is the HTTP base, `wyoming` the Wyoming URI (when started with it)."""

    def __init__(self, checkpoint: Path, log: Path, *args: str, wyoming: bool = False):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.wyoming_port = free_port() if wyoming else None
        command = [sys.executable, "-m", "asr", "serve", "--model", str(checkpoint)]
        command += ["--device", "cpu", "--port", str(self.port), *args]
        if wyoming:
            command += ["--wyoming", f"tcp://127.0.0.1:{self.wyoming_port}"]
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("ASR_API_KEY", None)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env
            )

    def wait_ready(self, timeout: float = 60.0) -> ServeProcess:
        """Wait until GET /health says 200 (the model is loaded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"asr serve exited {self.process.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"asr serve was not ready in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_mb(self) -> float:
        """The server's resident memory (MB), from /proc."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit status once it has drained."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
