"""Benchmark: `asr serve` under load, against `asr transcribe`'s batch throughput.

    OMP_NUM_THREADS=2 .venv/bin/python bench/serve.py --model exp/an4/best.pt

Starts `asr serve` in a child process on 127.0.0.1 and measures, with HTTP clients in threads:
1. requests per second and p50/p95 latency of 5-second utterances with 1, 4 and 16 concurrent
   clients, and audio seconds transcribed per wall second (`--requests` each);
2. the same files through the library `asr transcribe` runs (Transcriber.transcribe_files,
   the model loaded and warmed up, in this process), once before the server starts and once
   after it stops, so that a drift in the machine's speed hits both sides: the server's
   throughput at 16 clients over the mean of the two (target: at least 0.8);
3. p95 latency of 2-second requests sent one after another while a `--long-minutes` file is
   being transcribed, against the same requests on the idle server (target: at most 2x).
The utterances are AN4 test utterances (from --an4, default $ASR_DATA/an4 or
../shared/data/an4) joined with 0.3 s pauses and cut to length; without AN4, synthetic tone
bursts. Without --model, an untrained model of the AN4 recipe's architecture (3.8 M
parameters) is built: the speed is the architecture's, the text means nothing. `--small`
shrinks everything (a tiny model, few requests, a 1-minute long file) for a smoke run in
seconds. Prints a table and one JSON line; --out writes the JSON to a file too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import torch

from asr.checkpoint import save_checkpoint
from asr.config import load_config
from asr.model import Recogniser
from asr.tokenizers import CharTokenizer
from asr.transcribe import Transcriber

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
URL = "/v1/audio/transcriptions"


def default_an4() -> Path:
    return Path(os.environ.get("ASR_DATA") or ROOT.parent / "shared" / "data") / "an4"


def untrained_checkpoint(path: Path, small: bool, config: str = "config.yaml") -> Path:
    """An untrained recogniser of AN4's characters: the architecture of the AN4 recipe's
    `config` (a file in recipes/an4/), or (small) that with a one-layer GRU of 16 units."""
    torch.manual_seed(0)
    overrides = []
    if small:
        overrides = ["model.hidden_size=16", "model.num_layers=1", "model.conv_channels=8"]
    cfg = load_config(ROOT / "recipes" / "an4" / config, overrides)
    tokenizer = CharTokenizer.from_texts(["abcdefghijklmnopqrstuvwxyz '"])
    features = replace(cfg.features, sample_rate=RATE)
    model_cfg = replace(cfg.model, n_mels=features.n_mels, vocab_size=tokenizer.vocab_size)
    model = Recogniser(features, model_cfg).eval()
    state = {
        "config": {"features": asdict(features), "model": asdict(model_cfg)},
        "tokenizer": tokenizer.state_dict(),
        "model": model.state_dict(),
    }
    save_checkpoint(path, state)
    return path


def source_utterances(an4: Path, rng: np.random.Generator) -> tuple[list[np.ndarray], str]:
    """(16 kHz float32 utterances, where they came from): AN4's test set, or tone bursts."""
    files = sorted((an4 / "wav" / "an4test_clstk").glob("*/*.wav"))
    if files:
        return [sf.read(f, dtype="float32")[0] for f in files], f"AN4 test ({len(files)} files)"
    utterances = []
    for _ in range(40):
        bursts = []
        for _ in range(rng.integers(3, 8)):
            n = int(rng.uniform(0.1, 0.3) * RATE)
            t = np.arange(n) / RATE
            tone = 0.2 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) * np.hanning(n)
            bursts += [tone, np.zeros(int(0.05 * RATE))]
        wav = np.concatenate(bursts)
        utterances.append((wav + 0.002 * rng.standard_normal(len(wav))).astype(np.float32))
    return utterances, "synthetic tone bursts"


def joined(utterances: list[np.ndarray], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Random utterances joined by 0.3-1.2 s of quiet noise until `seconds`, cut there."""
    parts, total = [], 0
    while total < seconds * RATE:
        wav = utterances[rng.integers(len(utterances))]
        pause = 0.001 * rng.standard_normal(int(rng.uniform(0.3, 1.2) * RATE))
        parts += [wav, pause.astype(np.float32)]
        total += len(wav) + len(pause)
    return np.concatenate(parts)[: int(seconds * RATE)]


def write_files(folder: Path, utterances, count: int, seconds: float, rng, tag: str) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"{tag}{i}.wav"
        sf.write(path, joined(utterances, seconds, rng), RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def write_long_file(path: Path, utterances, minutes: float, rng) -> Path:
    """A `minutes` long 16-bit file, written a minute at a time."""
    with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        for _ in range(int(np.ceil(minutes))):
            f.write(joined(utterances, min(60.0, minutes * 60), rng))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`asr serve` in a child process; output to LOG."""

    def __init__(self, model: Path, log: Path, extra: list[str]):
        port = str(free_port())
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        command = [sys.executable, "-m", "asr", "serve", "--model", str(model), "--port", port]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, *extra], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        self.log = log
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"asr serve exited:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise SystemExit(f"asr serve was not ready in 120 s:\n{log.read_text()[-2000:]}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(120)


def transcribe(http: httpx.Client, path: Path) -> float:
    """One request; its latency in seconds."""
    body = path.read_bytes()
    start = time.perf_counter()
    response = http.post(URL, files={"file": (path.name, body)}, data={"model": "whisper-1"})
    if response.status_code != 200:
        raise SystemExit(f"{path.name}: {response.status_code} {response.text[:300]}")
    return time.perf_counter() - start


def load_level(url: str, files: list[Path], clients: int, seconds_each: float) -> dict:
    """All `files` sent by `clients` threads at once: rate, latency percentiles, throughput."""
    local = threading.local()

    def send(path: Path) -> float:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=url, timeout=600)
        return transcribe(local.http, path)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(send, files))
    wall = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(files),
        "requests_per_s": round(len(files) / wall, 2),
        "p50_s": round(float(np.percentile(latencies, 50)), 3),
        "p95_s": round(float(np.percentile(latencies, 95)), 3),
        "audio_s_per_s": round(len(files) * seconds_each / wall, 1),
    }


def batch_throughput(transcriber: Transcriber, files: list[Path], seconds_each: float) -> dict:
    """`asr transcribe`'s library path on the same files (the model already loaded)."""
    list(transcriber.transcribe_files(files[:16]))  # warm-up, as the server had its requests
    start = time.perf_counter()
    results = list(transcriber.transcribe_files(files))
    wall = time.perf_counter() - start
    if any(r.error for r in results):
        raise SystemExit(next(r.error for r in results if r.error))
    return {
        "files": len(files),
        "wall_s": round(wall, 2),
        "audio_s_per_s": round(len(files) * seconds_each / wall, 1),
    }


def short_latencies(
    url: str, files: list[Path], until: threading.Event | None = None
) -> list[float]:
    """2-second requests one after another (all of `files`; with `until`, also stopping once
    it is set); their latencies."""
    latencies = []
    with httpx.Client(base_url=url, timeout=600) as http:
        for path in files:
            if until is not None and until.is_set():
                break
            latencies.append(transcribe(http, path))
    return latencies


def head_of_line(url: str, long_file: Path, shorts: list[Path]) -> dict:
    """p95 of 2-second requests on the idle server, then while the long file is served."""
    idle = short_latencies(url, shorts)
    finished = threading.Event()
    long_result: dict = {}

    def serve_long() -> None:
        with httpx.Client(base_url=url, timeout=7200) as http:
            long_result["latency_s"] = transcribe(http, long_file)
        finished.set()

    thread = threading.Thread(target=serve_long)
    thread.start()
    time.sleep(0.2)  # the long file's upload has begun
    busy: list[float] = []
    while not finished.is_set():
        busy += short_latencies(url, shorts, until=finished)
    thread.join()
    p95_idle = float(np.percentile(idle, 95))
    p95_busy = float(np.percentile(busy, 95)) if busy else None
    return {
        "long_file_s": round(sf.info(long_file).duration, 1),
        "long_file_latency_s": round(long_result["latency_s"], 2),
        "short_requests_idle": len(idle),
        "short_requests_during_long": len(busy),
        "p95_idle_s": round(p95_idle, 3),
        "p95_during_long_s": None if p95_busy is None else round(p95_busy, 3),
        "ratio": None if p95_busy is None else round(p95_busy / p95_idle, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, help="checkpoint (default: an untrained AN4-sized one)"
    )
    parser.add_argument(
        "--an4", type=Path, default=default_an4(), help="AN4 folder (wav/an4test_clstk)"
    )
    parser.add_argument("--clients", default="1,4,16", help="concurrency levels (default 1,4,16)")
    parser.add_argument("--requests", type=int, default=256, help="5-second requests per level")
    parser.add_argument("--long-minutes", type=float, default=60.0, help="the long file's length")
    parser.add_argument("--small", action="store_true", help="a smoke run in seconds")
    parser.add_argument(
        "--serve-args", default="", help="more `asr serve` options, e.g. '--lanes 1'"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.small:
        args.requests, args.long_minutes = 8, 1.0
    rng = np.random.default_rng(args.seed)
    levels = [int(c) for c in args.clients.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        model = args.model or untrained_checkpoint(folder / "untrained.pt", args.small)
        utterances, source = source_utterances(args.an4, rng)
        fives = write_files(folder, utterances, args.requests, 5.0, rng, "five")
        twos = write_files(folder, utterances, 8 if args.small else 20, 2.0, rng, "two")
        long_file = write_long_file(folder / "long.wav", utterances, args.long_minutes, rng)
        extra = ["--device", "cpu", *shlex.split(args.serve_args)]
        batch_command = Transcriber.from_checkpoint(model, device="cpu")
        before = batch_throughput(batch_command, fives, 5.0)
        server = Server(model, folder / "serve.log", extra)
        try:
            transcribe(httpx.Client(base_url=server.url, timeout=60), twos[0])  # warm-up
            load = [load_level(server.url, fives, c, 5.0) for c in levels]
            hol = head_of_line(server.url, long_file, twos)
        finally:
            code = server.stop()
        after = batch_throughput(batch_command, fives, 5.0)
    mean = (before["audio_s_per_s"] + after["audio_s_per_s"]) / 2
    batch = {"before_server": before, "after_server": after, "audio_s_per_s": round(mean, 1)}
    top = load[-1]
    report = {
        "model": str(args.model or "untrained AN4-recipe architecture"),
        "audio": source,
        "torch_threads": torch.get_num_threads(),
        "serve_args": args.serve_args,
        "load": load,
        "batch_command": batch,
        "server_over_batch_at_most_clients": round(
            top["audio_s_per_s"] / batch["audio_s_per_s"], 2
        ),
        "head_of_line": hol,
        "server_exit_status": code,
    }
    print(f"audio: {source}; model: {report['model']}")
    print("clients  requests/s  p50 s   p95 s   audio s/s")
    for row in load:
        print(
            f"{row['clients']:>7}  {row['requests_per_s']:>10}  {row['p50_s']:>6}  "
            f"{row['p95_s']:>6}  {row['audio_s_per_s']:>9}"
        )
    print(
        f"asr transcribe (library, same files): {before['audio_s_per_s']} audio s/s before the "
        f"server, {after['audio_s_per_s']} after, mean {batch['audio_s_per_s']}; server at "
        f"{top['clients']} clients / batch = {report['server_over_batch_at_most_clients']}"
    )
    print(
        f"2-s requests, p95: idle {hol['p95_idle_s']} s, during a {hol['long_file_s']} s file "
        f"{hol['p95_during_long_s']} s ({hol['short_requests_during_long']} requests): "
        f"x{hol['ratio']}"
    )
    line = json.dumps(report)
    print(line)
    if args.out:
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
