"""Benchmark: how soon live transcription over `asr serve`'s WebSocket shows each word.

    OMP_NUM_THREADS=2 .venv/bin/python bench/stream_latency.py --model exp/an4/best.pt

Starts `asr serve` in a child process on 127.0.0.1 and plays AN4 test utterances (from --an4,
default $ASR_DATA/an4 or ../shared/data/an4; without AN4, synthetic tone bursts) through
/v1/stream at real-time pace: each stream is --utterances utterances with --pause seconds of
quiet between them, sent in --chunk-ms blocks, each block when the audio in it would have been
heard. With 1 and 8 streams at once (--streams) it measures:
- word lag: from the end of a word in the audio (its time in the offline transcript of its
  utterance, `asr transcribe`'s word timing) to the reply in which the word first appears
  (partial or result; words matched to the offline ones in order), p50 and p95;
- end of speech to final: from the end of a result's last word to the reply carrying the
  result (results found at the pauses, not at the eof), p50 and p95;
- real-time factor: the server's CPU seconds per second of audio streamed, and one stream's
  wall seconds per audio second when sent as fast as the server answers.
Beside them it prints the algorithmic latency: the block, the frame and the model's lookahead
(a left-to-right model; a bidirectional one re-decodes the open segment every half second
instead) for words, plus the endpoint silence for finals. A left-to-right model
(model.bidirectional: false) gives incremental partials; a bidirectional one streams by
re-decoding. `--small` is a smoke run in seconds. Prints a table and one JSON line; --out
writes the JSON to a file too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import difflib
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import torch
import websockets

from asr.audio import to_mono_resampled
from asr.model import Recogniser
from asr.stream import StreamingRecognizer
from asr.stream.encoder import StreamingEncoder
from asr.transcribe import Transcriber

ROOT = Path(__file__).resolve().parents[1]


def default_an4() -> Path:
    return Path(os.environ.get("ASR_DATA") or ROOT.parent / "shared" / "data") / "an4"


@dataclass
class Utterance:
    audio: np.ndarray  # (S,) float32 at `rate`
    rate: int
    words: list[tuple[str, float]]  # offline transcript: (word, end second)


@dataclass
class Session:
    """What one stream plays: utterances joined by pauses, and their words' end times."""

    audio: np.ndarray  # (S,) float32
    rate: int
    words: list[tuple[str, float]]  # (word, end second from the session's start)

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.rate


def source_audio(an4: Path, count: int, rng: np.random.Generator) -> tuple[list, int, str]:
    """(`count` float32 utterances, their rate, where they came from): AN4's test set in order,
    or synthetic tone bursts at 16 kHz."""
    files = sorted((an4 / "wav" / "an4test_clstk").glob("*/*.wav"))[:count]
    if files:
        waves = [sf.read(f, dtype="float32") for f in files]
        rates = {rate for _, rate in waves}
        if len(rates) != 1:
            raise SystemExit(f"{an4}: test utterances at several rates {sorted(rates)}")
        return [w for w, _ in waves], rates.pop(), f"AN4 test ({len(files)} utterances)"
    rate, utterances = 16000, []
    for _ in range(count):
        bursts = [np.zeros(int(0.2 * rate), np.float32)]
        for _ in range(rng.integers(3, 7)):
            n = int(rng.uniform(0.1, 0.3) * rate)
            t = np.arange(n) / rate
            tone = 0.2 * np.sin(2 * np.pi * rng.uniform(300, 1500) * t) * np.hanning(n)
            bursts += [tone.astype(np.float32), np.zeros(int(0.08 * rate), np.float32)]
        wav = np.concatenate(bursts)
        utterances.append((wav + 0.002 * rng.standard_normal(len(wav))).astype(np.float32))
    return utterances, rate, "synthetic tone bursts"


def offline_words(transcriber: Transcriber, audio: list[np.ndarray], rate: int) -> list:
    """Each utterance's words as `asr transcribe` times them: [(word, end second)]."""
    out = []
    for wav in audio:
        x = to_mono_resampled(wav, rate, transcriber.sample_rate)
        (rec,) = transcriber.recognise_batch(x[None], torch.tensor([len(x)]), timestamps=True)
        out.append([(w.word, w.end) for w in rec.words or []])
    return out


def sessions(utterances: list[Utterance], streams: int, each: int, pause: float, rng) -> list:
    """`streams` sessions of `each` utterances (taken in turn), each followed by `pause`
    seconds of quiet noise."""
    out = []
    for s in range(streams):
        parts, words, offset = [], [], 0.0
        for k in range(each):
            utt = utterances[(s * each + k) % len(utterances)]
            quiet = 0.001 * rng.standard_normal(int(pause * utt.rate))
            parts += [utt.audio, quiet.astype(np.float32)]
            words += [(w, end + offset) for w, end in utt.words]
            offset += (len(utt.audio) + len(quiet)) / utt.rate
        out.append(Session(np.concatenate(parts), utterances[0].rate, words))
    return out


def pcm16(wav: np.ndarray) -> bytes:
    return (np.clip(wav, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()


def first_seen(reference: list[str], hypothesis: list[str]) -> list[int]:
    """Indices of the reference words that `hypothesis` contains, matched in order.

    >>> first_seen(["a", "b", "c"], ["a", "x", "c"])
    [0, 2]
    """
    matcher = difflib.SequenceMatcher(None, reference, hypothesis, autojunk=False)
    return [b.a + i for b in matcher.get_matching_blocks() for i in range(b.size)]


async def play(url: str, session: Session, chunk_s: float, paced: bool = True) -> dict:
    """One stream: the session's blocks (at real-time pace when `paced`), then the eof.
    Returns its word lags, end-of-speech-to-final lags, wall time and reply count."""
    data = pcm16(session.audio)
    step = 2 * max(1, round(chunk_s * session.rate))
    blocks = [data[i : i + step] for i in range(0, len(data), step)]
    reference = [w for w, _ in session.words]
    seen: dict[int, float] = {}
    final_lags: list[float] = []
    confirmed: list[str] = []
    loop = asyncio.get_running_loop()
    async with websockets.connect(url + "/v1/stream", max_size=None) as ws:
        await ws.send(json.dumps({"config": {"sample_rate": session.rate}}))
        start = loop.time()

        async def send() -> None:
            for j, block in enumerate(blocks):
                if paced:  # the block is sent once all of its audio would have been heard
                    heard = start + (j * step + len(block)) / 2 / session.rate
                    await asyncio.sleep(max(0.0, heard - loop.time()))
                await ws.send(block)
            await ws.send('{"eof" : 1}')

        sender = asyncio.create_task(send())
        for j in range(len(blocks) + 1):
            reply = json.loads(await ws.recv())
            now = loop.time() - start
            if "partial" in reply:
                hypothesis = confirmed + reply["partial"].split()
            else:
                confirmed += reply["text"].split()
                hypothesis = confirmed
                if j < len(blocks) and reply.get("result"):
                    final_lags.append(now - reply["result"][-1]["end"])
            # only words that have been heard (a short word also said later must not match)
            heard = min(len(blocks), j + 1) * step / 2 / session.rate
            spoken = sum(end <= heard + 0.3 for _, end in session.words)
            for i in first_seen(reference[:spoken], hypothesis):
                seen.setdefault(i, now)
        await sender
        wall = loop.time() - start
    return {
        "word_lags": [t - session.words[i][1] for i, t in seen.items()],
        "words": len(reference),
        "final_lags": final_lags,
        "wall_s": wall,
        "replies": len(blocks) + 1,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50_s": None, "p95_s": None}
    return {
        "p50_s": round(float(np.percentile(values, 50)), 3),
        "p95_s": round(float(np.percentile(values, 95)), 3),
    }


async def level(url: str, pid: int, plays: list[Session], chunk_s: float) -> dict:
    """All `plays` at once, at real-time pace."""
    cpu = cpu_seconds(pid)
    runs = await asyncio.gather(*(play(url, s, chunk_s) for s in plays))
    cpu = cpu_seconds(pid) - cpu
    audio = sum(s.seconds for s in plays)
    lags = [lag for r in runs for lag in r["word_lags"]]
    return {
        "streams": len(plays),
        "audio_s": round(audio, 1),
        "words": sum(r["words"] for r in runs),
        "words_matched": len(lags),
        "word_lag": percentiles(lags),
        "finals_at_pauses": sum(len(r["final_lags"]) for r in runs),
        "speech_end_to_final": percentiles([x for r in runs for x in r["final_lags"]]),
        "server_cpu_s_per_audio_s": round(cpu / audio, 3),
    }


def algorithmic(transcriber: Transcriber, chunk_s: float, endpoint_s: float) -> dict:
    """The latency the design adds before a word or a final can be known (seconds)."""
    model = transcriber.model
    redecode = inspect.signature(StreamingRecognizer).parameters["redecode_interval"].default
    if isinstance(model, Recogniser) and not model.acoustic.cfg.bidirectional:
        encoder = StreamingEncoder(model)
        mode, lookahead, frame = "incremental", encoder.lookahead_seconds, encoder.frame_seconds
        word = chunk_s + frame + lookahead
    else:
        mode, lookahead, frame = "redecode", 0.0, transcriber.frame_seconds
        word = chunk_s + redecode
    return {
        "mode": mode,
        "chunk_s": chunk_s,
        "frame_s": round(frame, 4),
        "lookahead_s": round(lookahead, 4),
        "redecode_interval_s": redecode if mode == "redecode" else None,
        "endpoint_silence_s": endpoint_s,
        "word_at_most_s": round(word, 3),
        "final_after_speech_s": round(endpoint_s + chunk_s + lookahead, 3),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`asr serve` in a child process; output to LOG."""

    def __init__(self, model: Path, log: Path, extra: list[str]):
        port = str(free_port())
        self.url = f"ws://127.0.0.1:{port}"
        command = [sys.executable, "-m", "asr", "serve", "--model", str(model), "--port", port]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, *extra], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"asr serve exited:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                if health.status_code == 200:
                    return
            time.sleep(0.2)
        raise SystemExit(f"asr serve was not ready in 120 s:\n{log.read_text()[-2000:]}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="checkpoint to serve")
    parser.add_argument("--lm", type=Path, help="LM for the finals (beam search)")
    parser.add_argument(
        "--an4", type=Path, default=default_an4(), help="AN4 folder (wav/an4test_clstk)"
    )
    parser.add_argument("--streams", default="1,8", help="streams at once (default 1,8)")
    parser.add_argument("--utterances", type=int, default=4, help="utterances per stream")
    parser.add_argument("--pause", type=float, default=1.5, help="seconds of quiet after each")
    parser.add_argument("--chunk-ms", type=float, default=100.0, help="block length (ms)")
    parser.add_argument("--endpoint-seconds", type=float, default=0.5, help="endpoint silence")
    parser.add_argument("--small", action="store_true", help="a smoke run in seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    levels = [int(s) for s in args.streams.split(",")]
    if args.small:
        args.utterances, args.pause, levels = 1, 1.0, [1, 2]
    rng = np.random.default_rng(args.seed)
    chunk_s = args.chunk_ms / 1000
    count = max(levels) * args.utterances
    audio, rate, source = source_audio(args.an4, count, rng)
    transcriber = Transcriber.from_checkpoint(args.model, device="cpu", lm=args.lm)
    utterances = [
        Utterance(wav, rate, words)
        for wav, words in zip(audio, offline_words(transcriber, audio, rate), strict=True)
    ]
    design = algorithmic(transcriber, chunk_s, args.endpoint_seconds)
    extra = ["--device", "cpu", "--max-streams", str(max(levels))]
    extra += ["--stream-endpoint-seconds", str(args.endpoint_seconds)]
    if args.lm:
        extra += ["--lm", str(args.lm)]
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        server = Server(args.model, Path(tmp) / "serve.log", extra)
        try:
            pid = server.process.pid
            first = sessions(utterances, 1, args.utterances, args.pause, rng)[0]
            fast = asyncio.run(play(server.url, first, chunk_s, paced=False))  # also a warm-up
            results = [
                asyncio.run(
                    level(
                        server.url,
                        pid,
                        sessions(utterances, n, args.utterances, args.pause, rng),
                        chunk_s,
                    )
                )
                for n in levels
            ]
        finally:
            code = server.stop()
    report = {
        "model": str(args.model),
        "audio": source,
        "chunk_ms": args.chunk_ms,
        "algorithmic": design,
        "levels": results,
        "one_stream_unpaced_wall_s_per_audio_s": round(fast["wall_s"] / first.seconds, 3),
        "server_exit_status": code,
    }
    print(f"audio: {source}; model: {args.model} ({design['mode']})")
    redecode = design["redecode_interval_s"]
    print(
        f"algorithmic: a word within {design['word_at_most_s']} s of its end (block "
        f"{chunk_s} s + frame {design['frame_s']} s + lookahead {design['lookahead_s']} s"
        + (f" + re-decode every {redecode} s" if redecode else "")
        + f"); a final {design['final_after_speech_s']} s after speech (endpoint silence "
        f"{args.endpoint_seconds} s + block + lookahead)"
    )
    print("streams  words (matched)  word lag p50/p95 s  end of speech->final p50/p95 s  CPU/audio")
    for row in results:
        lag, final = row["word_lag"], row["speech_end_to_final"]
        print(
            f"{row['streams']:>7}  {row['words']:>5} ({row['words_matched']:>5})  "
            f"{lag['p50_s']!s:>8} / {lag['p95_s']!s:<8}  "
            f"{final['p50_s']!s:>12} / {final['p95_s']!s:<12}  "
            f"{row['server_cpu_s_per_audio_s']}"
        )
    print(
        f"one stream sent unpaced: {report['one_stream_unpaced_wall_s_per_audio_s']} wall s "
        "per audio s"
    )
    line = json.dumps(report)
    print(line)
    if args.out:
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    main()
