"""Benchmark: padding waste of the batch sampler, training and inference speed.

    python bench/throughput.py --manifest exp/fsdd/data/train.jsonl \
        --config recipes/fsdd/config.yaml

1. Padding: share of padded (wasted) audio in the batches of BucketBatchSampler versus
   fixed-size random batches of the same mean size, over the manifest's durations.
2. Training: seconds of audio per second of wall time for full training steps
   (features, forward, CTC, backward, AdamW) on real batches of the manifest.
3. Inference: real-time factor (wall time / audio time) of batched greedy transcription.
Figures go to stdout as one JSON object; the README quotes them with this command.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace

import torch

from asr.config import load_config
from asr.data import BucketBatchSampler, SpeechDataset, collate, read_manifest
from asr.features import SpecAugment
from asr.model import Recogniser
from asr.text import CharTokenizer, normalize_text
from asr.transcribe import Transcriber


def padding_waste(durations: list[float], batches: list[list[int]]) -> float:
    padded = sum(len(b) * max(durations[i] for i in b) for b in batches)
    return 1 - sum(durations) / padded


def random_batches(n: int, size: int, seed: int = 0) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i : i + size] for i in range(0, n, size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    utts = read_manifest(args.manifest)
    utts = [replace(u, text=normalize_text(u.text)) for u in utts]
    durations = [u.duration for u in utts]
    sampler = BucketBatchSampler(durations, cfg.data.batch_seconds, seed=0)
    buckets = sampler.batches()
    mean_size = round(len(utts) / len(buckets))
    out = {
        "utterances": len(utts),
        "audio_minutes": round(sum(durations) / 60, 2),
        "batch_seconds": cfg.data.batch_seconds,
        "padding_waste_bucketed": round(padding_waste(durations, buckets), 4),
        "padding_waste_random": round(
            padding_waste(durations, random_batches(len(utts), mean_size)), 4
        ),
        "mean_batch_size": mean_size,
        "torch_threads": torch.get_num_threads(),
    }

    tokenizer = CharTokenizer.from_texts(u.text for u in utts)
    cfg.model.n_mels, cfg.model.vocab_size = cfg.features.n_mels, tokenizer.vocab_size
    torch.manual_seed(0)
    model = Recogniser(cfg.features, cfg.model)
    dataset = SpeechDataset(utts, tokenizer, cfg.features.sample_rate)
    batches = [collate([dataset[i] for i in b]) for b in buckets[: args.steps + 2]]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ctc = torch.nn.CTCLoss(zero_infinity=True)
    spec_augment = SpecAugment(cfg.spec_augment)
    model.train()

    def step(batch: dict) -> None:
        log_probs, lens = model(batch["wavs"], batch["wav_lens"], spec_augment)
        loss = ctc(log_probs.transpose(0, 1), batch["tokens"], lens, batch["token_lens"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for batch in batches[:2]:  # warm-up
        step(batch)
    timed = batches[2:]
    start = time.perf_counter()
    for batch in timed:
        step(batch)
    wall = time.perf_counter() - start
    audio = sum(float(b["wav_lens"].sum()) for b in timed) / cfg.features.sample_rate
    out["train_audio_seconds_per_second"] = round(audio / wall, 1)
    out["train_ms_per_step"] = round(1000 * wall / len(timed), 1)

    transcriber = Transcriber(model, tokenizer, "cpu")
    files = [u.audio_filepath for u in utts[:600]]
    start = time.perf_counter()
    results = list(transcriber.transcribe_files(files))
    wall = time.perf_counter() - start
    out["inference_files"] = len(results)
    out["inference_rtf"] = round(wall / sum(durations[:600]), 5)
    out["parameters"] = model.acoustic.num_parameters()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
