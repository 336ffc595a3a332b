"""Benchmark: end-to-end training throughput against the bare model step, side by side.

    .venv/bin/python bench/train_throughput.py --train exp/an4-idle-s0/data/train.jsonl \
        --config recipes/an4/config.yaml

A real `Trainer` (asr/training/trainer.py) is built from the config; validation, checkpoints
and CMVN fitting are left out. Each round takes `--steps` batches of the epoch (default: the whole
epoch) and times them twice, one after the other:
1. bare: forward + CTC + backward + clipping + AdamW of the trainer's model on pre-made
   tensors: the round's batches, built beforehand, log-mel features computed beforehand;
2. end to end: a fresh DataLoader iterator (`Trainer.loader`, the config's workers, its
   waveform augmentation) feeding `Trainer.train_step` (features, SpecAugment, model, CTC
   loss, optimizer, scheduler), as `Trainer.run` does within an epoch.
Both see the same batches (augmentation is seeded by (seed, epoch, index), so the main
process rebuilds exactly what the workers load). Throughput is seconds of (augmented) audio
per wall second. Also: time spent waiting for the loader as a share of the end-to-end wall
time, padded samples as a share of the batches' samples, and (apart, untimed in the rounds)
what loading + augmenting a batch and computing its features cost. One JSON line on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

from asr import gru_scan
from asr.config import load_config
from asr.data import collate
from asr.training.trainer import Trainer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True, help="training manifest")
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=0, help="batches per round (0 = an epoch)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of bare + end to end")
    parser.add_argument("--warmup", type=int, default=3, help="untimed bare steps first")
    parser.add_argument(
        "--nn-gru",
        action="store_true",
        help="train the GRU with nn.GRU on packed batches, not asr/gru_scan.py (for comparison)",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides section.key=value")
    return parser.parse_args()


def bare_step(trainer: Trainer, feats: torch.Tensor, frame_lens: torch.Tensor, batch: dict) -> None:
    """The model's own work on pre-computed features: what no input pipeline can avoid."""
    model = trainer.model
    model.train()
    trainer.optimizer.zero_grad(set_to_none=True)
    log_probs, out_lens = model.acoustic(feats, frame_lens)  # (B, T', V), (B,)
    token_lens = batch["token_lens"]
    losses = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1),  # (T', B, V)
        batch["tokens"],
        out_lens,
        token_lens,
        blank=0,
        reduction="none",
        zero_infinity=True,
    )  # (B,), as the trainer's loss
    (losses / token_lens.clamp(min=1)).mean().backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.cfg.train.grad_clip)
    trainer.optimizer.step()


def audio_seconds(batches: list[dict], sample_rate: int) -> float:
    return sum(int(b["wav_lens"].sum()) for b in batches) / sample_rate


def main() -> None:
    args = parse_args()
    if args.nn_gru:
        gru_scan.usable = lambda rnn, x: False  # AcousticModel then packs the batch for nn.GRU
    cfg = load_config(args.config, args.overrides)
    cfg.data.train_manifest = cfg.data.dev_manifest = args.train
    cfg.train.progress = False
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = Trainer(cfg, out_dir)
    rate = cfg.features.sample_rate
    epoch_batches = trainer.sampler.batches()
    steps = args.steps or len(epoch_batches)
    if steps * args.rounds > len(epoch_batches):
        raise SystemExit(f"{steps} x {args.rounds} batches: the epoch has {len(epoch_batches)}")

    def make_batch(indices: list[int]) -> dict:
        return collate([trainer.dataset[i] for i in indices])

    # Apart: the per-batch costs of the input pipeline, on the first round's batches.
    probe = epoch_batches[: min(steps, 10)]
    start = time.perf_counter()
    probe_batches = [make_batch(b) for b in probe]
    load_ms = 1000 * (time.perf_counter() - start) / len(probe)
    with torch.no_grad():
        start = time.perf_counter()
        for b in probe_batches:
            feats, _ = trainer.model.features(b["wavs"], b["wav_lens"])
            if trainer.spec_augment is not None:
                trainer.spec_augment(feats)
        features_ms = 1000 * (time.perf_counter() - start) / len(probe)
        warm = trainer.model.features(probe_batches[0]["wavs"], probe_batches[0]["wav_lens"])
    for _ in range(args.warmup):
        bare_step(trainer, *warm, probe_batches[0])

    totals = {"bare": 0.0, "e2e": 0.0, "wait": 0.0, "audio": 0.0, "first_batch": 0.0}
    padded = samples = 0
    rounds = []
    for r in range(args.rounds):
        indices = epoch_batches[r * steps : (r + 1) * steps]
        batches = [make_batch(b) for b in indices]
        with torch.no_grad():
            feats = [trainer.model.features(b["wavs"], b["wav_lens"]) for b in batches]
        audio = audio_seconds(batches, rate)
        padded += sum(b["wavs"].numel() for b in batches)
        samples += sum(int(b["wav_lens"].sum()) for b in batches)

        start = time.perf_counter()
        for (f, lens), b in zip(feats, batches, strict=True):
            bare_step(trainer, f, lens, b)
        bare = time.perf_counter() - start

        trainer.sampler.set_epoch(0, start_batch=r * steps)
        trainer.dataset.epoch = 0
        wait = first = 0.0
        start = time.perf_counter()
        loader = iter(trainer.loader(trainer.dataset, trainer.sampler))
        for k in range(steps):
            tick = time.perf_counter()
            batch = next(loader)
            waited = time.perf_counter() - tick
            wait += waited
            if k == 0:
                first = waited
                if not torch.equal(batch["indices"], batches[0]["indices"]):
                    raise RuntimeError("the loader's batches differ from the rebuilt ones")
            trainer.train_step([batch])
        e2e = time.perf_counter() - start
        del loader  # workers stop, as at the end of an epoch

        rounds.append(
            {
                "bare_audio_s_per_s": round(audio / bare, 2),
                "e2e_audio_s_per_s": round(audio / e2e, 2),
                "ratio": round(bare / e2e, 3),
            }
        )
        for key, value in (("bare", bare), ("e2e", e2e), ("wait", wait), ("audio", audio)):
            totals[key] += value
        totals["first_batch"] += first

    out = {
        "benchmark": "train_throughput",
        "manifest": args.train,
        "config": args.config,
        "overrides": args.overrides,
        "gru": "nn.GRU (packed)" if args.nn_gru else "asr/gru_scan.py",
        "parameters": trainer.model.acoustic.num_parameters(),
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "num_workers": cfg.data.num_workers,
        "wave_augment": cfg.train.wave_augment,
        "spec_augment": cfg.train.spec_augment,
        "steps": steps * args.rounds,
        "audio_seconds": round(totals["audio"], 1),
        "bare_audio_s_per_s": round(totals["audio"] / totals["bare"], 2),
        "e2e_audio_s_per_s": round(totals["audio"] / totals["e2e"], 2),
        "e2e_over_bare": round(totals["bare"] / totals["e2e"], 3),
        "bare_ms_per_step": round(1000 * totals["bare"] / (steps * args.rounds), 1),
        "e2e_ms_per_step": round(1000 * totals["e2e"] / (steps * args.rounds), 1),
        "data_wait_share": round(totals["wait"] / totals["e2e"], 4),
        "first_batch_wait_s": round(totals["first_batch"] / args.rounds, 2),
        "padding_share": round(1 - samples / padded, 4),
        "load_augment_ms_per_batch_one_process": round(load_ms, 1),
        "features_specaugment_ms_per_batch": round(features_ms, 1),
        "rounds": rounds,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
