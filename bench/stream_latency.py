"""Benchmark: how soon live transcription over `asr serve`'s WebSocket shows each word.

    OMP_NUM_THREADS=2 .venv/bin/python bench/stream_latency.py --model exp/an4/best.pt

Starts `asr serve` in a child process on 127.0.0.1 and plays AN4 test utterances (from --an4,
default $ASR_DATA/an4 or ../shared/data/an4; without AN4, synthetic tone bursts) through
/v1/stream at real-time pace: each stream is --utterances utterances, each followed by --pause
seconds of noise at its own noise floor, sent in --chunk-ms blocks, each block when the audio
in it would have been heard. With 1 and 8 streams at once (--streams) it measures:
- word lag: from the end of a word in the audio (its time in the offline transcript,
  `asr transcribe`'s word timing: of the stream's whole audio for a left-to-right model, whose
  streamed log-probs are the offline ones; of each utterance alone for a bidirectional one,
  whose finals decode one segment each) to the reply in which the word first appears
  (partial or result; words matched to the offline ones in order), p50 and p95;
- end of speech to final: from the end of an utterance's speech (its last 10 ms frame within
  30 dB of its loudest) to the first reply after it that carries a result (found in the pause
  that follows, not at the eof), p50 and p95;
- real-time factor: the server's CPU seconds per second of audio streamed, and one stream's
  wall seconds per audio second when sent as fast as the server answers.
Beside them it prints the algorithmic latency: the block, the frame and the model's lookahead
(a left-to-right model; a bidirectional one re-decodes the open segment every half second
instead) for words, plus the endpoint silence for finals. A left-to-right model
(model.bidirectional: false) gives incremental partials; a bidirectional one streams by
re-decoding. Without --model, an untrained model of the AN4 streaming recipe
(recipes/an4/config-streaming.yaml: left-to-right 3 x 512 GRU, 3 lookahead frames, a fixed
level) is built: the timing is the architecture's, its words mean nothing (they are matched
against its own offline output). `--small` is a smoke run in seconds. Prints a table and one
JSON line; --out writes the JSON to a file too.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import inspect
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import websockets
from serve import Server, default_an4, untrained_checkpoint  # bench/serve.py

from asr.audio import to_mono_resampled
from asr.stream import StreamingRecognizer
from asr.stream.encoder import StreamingEncoder
from asr.transcribe import Transcriber

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Session:
    """What one stream plays: utterances joined by pauses, and their words' end times."""

    audio: np.ndarray  # (S,) float32
    rate: int
    words: list[tuple[str, float]]  # (word, end second from the session's start)
    speech: list[tuple[float, float]]  # each utterance's (start, end of speech), seconds

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
        return [w for w, _ in waves], rates.pop(), f"AN4 test: {len(files)} utterances of {an4}"
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


def offline_words(transcriber: Transcriber, wav: np.ndarray, rate: int) -> list:
    """The audio's words as `asr transcribe` times them: [(word, end second)]."""
    x = to_mono_resampled(wav, rate, transcriber.sample_rate)
    (rec,) = transcriber.recognise_batch(x[None], torch.tensor([len(x)]), timestamps=True)
    return [(w.word, w.end) for w in rec.words or []]


def frame_power(wav: np.ndarray, rate: int) -> np.ndarray:
    """Mean square of each 10 ms frame."""
    hop = rate // 100
    return (wav[: len(wav) // hop * hop].reshape(-1, hop).astype(np.float64) ** 2).mean(axis=1)


def speech_end(wav: np.ndarray, rate: int) -> float:
    """Seconds to the end of the last 10 ms frame within 30 dB of the loudest one.

    >>> speech_end(np.r_[np.ones(800), np.zeros(1600)].astype(np.float32), 8000)
    0.1
    """
    power = frame_power(wav, rate)
    loud = np.flatnonzero(power >= power.max() * 1e-3)
    return float((loud[-1] + 1) * rate // 100 / rate) if len(loud) else 0.0


def noise_floor(wav: np.ndarray, rate: int) -> float:
    """RMS of the recording's quiet: its quietest tenth of 10 ms frames."""
    return float(np.sqrt(np.percentile(frame_power(wav, rate), 10)))


def sessions(
    transcriber: Transcriber,
    audio: list[np.ndarray],
    rate: int,
    streams: int,
    each: int,
    pause: float,
    rng: np.random.Generator,
    whole: bool,
) -> list[Session]:
    """`streams` sessions of `each` utterances (taken in turn), each followed by `pause`
    seconds of noise at the utterance's own noise floor, with the offline words of the `whole`
    session or of each utterance alone."""
    out = []
    for s in range(streams):
        parts, words, speech, offset = [], [], [], 0.0
        for k in range(each):
            utterance = audio[(s * each + k) % len(audio)]
            level = max(noise_floor(utterance, rate), 1e-4)
            quiet = (level * rng.standard_normal(int(pause * rate))).astype(np.float32)
            parts += [utterance, quiet]
            speech.append((offset, offset + speech_end(utterance, rate)))
            if not whole:
                words += [
                    (w, end + offset) for w, end in offline_words(transcriber, utterance, rate)
                ]
            offset += (len(utterance) + len(quiet)) / rate
        wav = np.concatenate(parts)
        reference = offline_words(transcriber, wav, rate) if whole else words
        out.append(Session(wav, rate, reference, speech))
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
    result_times: list[float] = []  # replies with a result, before the eof
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
                if j < len(blocks) and reply["text"]:
                    result_times.append(now)
            # only words that have been heard (a short word also said later must not match)
            heard = min(len(blocks), j + 1) * step / 2 / session.rate
            spoken = sum(end <= heard + 0.3 for _, end in session.words)
            for i in first_seen(reference[:spoken], hypothesis):
                seen.setdefault(i, now)
        await sender
        wall = loop.time() - start
    final_lags = []
    for k, (_, end) in enumerate(session.speech):
        before = session.speech[k + 1][0] if k + 1 < len(session.speech) else session.seconds
        after = [t for t in result_times if end < t <= before]  # in the pause after it
        if after:
            final_lags.append(after[0] - end)
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
        "utterances": sum(len(s.speech) for s in plays),
        "finals_at_pauses": sum(len(r["final_lags"]) for r in runs),
        "speech_end_to_final": percentiles([x for r in runs for x in r["final_lags"]]),
        "server_cpu_s_per_audio_s": round(cpu / audio, 3),
    }


def algorithmic(transcriber: Transcriber, chunk_s: float, endpoint_s: float) -> dict:
    """The latency the design adds before a word or a final can be known (seconds)."""
    redecode = inspect.signature(StreamingRecognizer).parameters["redecode_interval"].default
    if StreamingRecognizer.for_transcriber(transcriber).mode == "incremental":
        encoder = StreamingEncoder(transcriber.model)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, help="checkpoint (default: an untrained AN4 streaming-recipe one)"
    )
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
    extra = ["--device", "cpu", "--max-streams", str(max(levels))]
    extra += ["--stream-endpoint-seconds", str(args.endpoint_seconds)]
    if args.lm:
        extra += ["--lm", str(args.lm)]
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        model = args.model or untrained_checkpoint(
            Path(tmp) / "untrained.pt", args.small, "config-streaming.yaml"
        )
        transcriber = Transcriber.from_checkpoint(model, device="cpu", lm=args.lm)
        design = algorithmic(transcriber, chunk_s, args.endpoint_seconds)
        whole = design["mode"] == "incremental"
        plays = {
            n: sessions(transcriber, audio, rate, n, args.utterances, args.pause, rng, whole)
            for n in {1, *levels}
        }
        server = Server(model, Path(tmp) / "serve.log", extra)
        try:
            pid = server.process.pid
            first = plays[1][0]
            fast = asyncio.run(play(server.ws_url, first, chunk_s, paced=False))  # also a warm-up
            results = [asyncio.run(level(server.ws_url, pid, plays[n], chunk_s)) for n in levels]
        finally:
            code = server.stop()
    name = str(args.model or "untrained, recipes/an4/config-streaming.yaml")
    report = {
        "model": name,
        "audio": source,
        "chunk_ms": args.chunk_ms,
        "algorithmic": design,
        "levels": results,
        "one_stream_unpaced_wall_s_per_audio_s": round(fast["wall_s"] / first.seconds, 3),
        "server_exit_status": code,
    }
    print(f"audio: {source}; model: {name} ({design['mode']})")
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
