"""Training: CTC loss, AdamW with warm-up + cosine decay, AMP on CUDA, exact resume, best-by-WER."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from asr.checkpoint import average_weights, load_checkpoint, load_resumable, save_checkpoint
from asr.config import ExperimentConfig, apply_overrides, from_dict, to_dict
from asr.data import (
    BucketBatchSampler,
    SpeechDataset,
    collate,
)
from asr.device import autocast, configure_backends, pick_device, resolve_precision
from asr.distributed import (
    ShardedBatchSampler,
    all_reduce_sum,
    average_gradients,
    barrier,
    broadcast_from_main,
    broadcast_tensors,
    data_parallel,
    init_distributed,
    process_device,
)
from asr.evaluate import evaluate_utterances
from asr.features import SpecAugment
from asr.files import atomic_write_text
from asr.manifest_index import ManifestIndex
from asr.metrics import write_report
from asr.model import Recogniser
from asr.progress import progress_bar
from asr.tokenizers import build_tokenizer, tokenizer_from_state
from asr.transcribe import Transcriber
from asr.validate import validate_manifest


class DataError(ValueError):
    """Training data with problems; `problems` has one line per bad utterance."""

    def __init__(
        self,
        problems: list[str],
        where: str = "the training data",
        hint: str = "`asr validate` lists them, data.drop_bad_lines=true leaves such lines out",
    ):
        super().__init__(f"{len(problems)} problem(s) in {where}; {hint}:\n" + "\n".join(problems))
        self.problems = problems


@dataclass
class Progress:
    epoch: int = 0  # current epoch (0-based)
    batch: int = 0  # batches already done in the current epoch
    step: int = 0  # optimizer steps done in all
    elapsed: float = 0.0  # training wall time in all, seconds
    best_wer: float = math.inf  # best dev WER so far
    best_step: int = -1
    total_steps: int = 0  # length of the LR schedule (re-planned to fit train.max_minutes)
    bad_steps: int = 0  # steps skipped for a non-finite loss or gradient
    split_steps: int = 0  # steps redone in smaller pieces after running out of memory
    # batches left out: out of memory even one utterance at a time, or no utterance of a
    # process's share could be loaded
    skipped_batches: int = 0
    failed_utterances: int = 0  # utterances whose audio could not be loaded (named in the log)


@dataclass
class TrainResult:
    out_dir: Path
    progress: Progress
    losses: list[float] = field(default_factory=list)  # per step, this invocation only
    history: list[dict] = field(default_factory=list)  # one entry per validation


def load_normalised(manifest: str, role: str, drop_bad_lines: bool = False) -> ManifestIndex:
    """Utterances of one or more comma-separated manifests, checked by `asr validate`'s rules
    (audio headers included), text normalised as each is read: they stay on disk, a few
    numbers per line in memory.

    A manifest with problems raises DataError listing every one, in `asr validate`'s words;
    with `drop_bad_lines` its bad lines are left out instead, with a count.
    """
    if not manifest:
        raise ValueError(
            f"data.{role}_manifest is not set: give --data DIR (where `asr prepare` wrote "
            f"train.jsonl and dev.jsonl) or data.{role}_manifest=FILE"
        )
    parts, problems = [], []
    for path in manifest.split(","):
        validation = validate_manifest(path)
        parts.append(validation.index())
        problems += [str(p) for p in validation.problems]
        if validation.problems and drop_bad_lines:
            for line in problems[-len(validation.problems) :]:
                print(f"warning: {line}")
            print(
                f"{path}: {validation.bad_lines} bad line(s) of {validation.total} left out "
                "(data.drop_bad_lines)"
            )
    if problems and not drop_bad_lines:
        raise DataError(problems, f"data.{role}_manifest")
    utts = ManifestIndex.concat(parts, normalise=True)
    if not len(utts):
        raise DataError(problems, f"data.{role}_manifest")
    return utts


# With a time budget, the schedule is sized after every step once this many steps or this
# share of the budget have passed, at the average pace so far (validations included).
CALIBRATION_STEPS = 10
CALIBRATION_SHARE = 0.02


def planned_steps(full_steps: int, steps_done: int, elapsed_s: float, budget_s: float) -> int:
    """Schedule length that ends when the time budget does, at the pace so far.

    The pace (elapsed_s / steps_done) includes validation and data loading, so the whole
    run fits the budget. Never more than the full schedule, never fewer than the steps done.

    >>> planned_steps(1000, 100, 60.0, 300.0)  # 0.6 s a step: 400 more fit
    500
    >>> planned_steps(1000, 100, 6.0, 300.0)  # fast enough for every epoch
    1000
    """
    if budget_s <= 0 or steps_done <= 0 or elapsed_s <= 0:
        return full_steps
    fit = steps_done + int((budget_s - elapsed_s) * steps_done / elapsed_s)
    return max(steps_done, min(full_steps, fit))


def lr_lambda(step: int, warmup: int, total: int, final_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to `final_ratio` at `total` steps (flat after).

    The warm-up takes at most a quarter of the schedule, so a short one still decays.

    >>> [round(lr_lambda(s, warmup=2, total=10, final_ratio=0.1), 2) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.55, 0.1]
    """
    warmup = min(warmup, total // 4)
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * t))


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


class TrainingStopped(Exception):
    """SIGINT or SIGTERM: last.pt was written at the end of a step; `signal` is its number."""

    def __init__(self, signal_number: int, message: str):
        super().__init__(message)
        self.signal = signal_number


def split_batch(batch: dict, pieces: int) -> list[dict]:
    """A collated batch -> up to `pieces` smaller batches (padding trimmed to each).

    >>> b = {"wavs": torch.zeros(3, 9), "wav_lens": torch.tensor([9, 4, 2]),
    ...      "tokens": torch.zeros(3, 5, dtype=torch.long), "token_lens": torch.tensor([5, 2, 1]),
    ...      "indices": torch.tensor([7, 8, 9])}
    >>> [(p["wavs"].shape[1], p["tokens"].shape[1], p["indices"].tolist())
    ...  for p in split_batch(b, 2)]
    [(9, 5, [7, 8]), (2, 1, [9])]
    """
    out = []
    for rows in torch.arange(len(batch["wav_lens"])).tensor_split(pieces):
        if len(rows) == 0:
            continue
        wav_lens, token_lens = batch["wav_lens"][rows], batch["token_lens"][rows]
        out.append(
            {
                "wavs": batch["wavs"][rows, : int(wav_lens.max())],
                "wav_lens": wav_lens,
                "tokens": batch["tokens"][rows, : max(int(token_lens.max()), 1)],
                "token_lens": token_lens,
                "indices": batch["indices"][rows],
            }
        )
    return out


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU allocator's failure (a RuntimeError or MemoryError)."""
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


class Trainer:
    """Owns the model, optimiser and data of one experiment folder."""

    def __init__(self, cfg: ExperimentConfig, out_dir: str | Path):
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tc = cfg.train
        if tc.accumulate < 1:
            raise ValueError("train.accumulate must be 1 or more")
        if tc.keep_average and tc.average_last < 2:
            raise ValueError("train.keep_average needs train.average_last of 2 or more")
        self.dist = init_distributed(pick_device(tc.device))
        self.device = process_device(pick_device(tc.device), self.dist)
        configure_backends(self.device)
        self.dtype = resolve_precision(tc.precision, self.device)
        drop = cfg.data.drop_bad_lines
        self.train_utts = self._within_max_duration(
            load_normalised(cfg.data.train_manifest, "train", drop)
        )
        self.dev_utts = list(load_normalised(cfg.data.dev_manifest, "dev", drop))  # small
        self.tokenizer = build_tokenizer(
            cfg.data.units,
            (u.text for u in self.train_utts),
            cfg.data.bpe_vocab_size,
            cfg.data.bpe_model,
        )
        self._report_dev_oov()
        cfg.model.n_mels = cfg.features.n_mels
        cfg.model.vocab_size = self.tokenizer.vocab_size
        torch.manual_seed(tc.seed)
        self.model = Recogniser(cfg.features, cfg.model).to(self.device)
        # What the training forward passes run: the model, or (several processes, train.ddp)
        # the model in DistributedDataParallel, made by run() once the weights are loaded.
        self.net: torch.nn.Module = self.model
        if self.dist.enabled:
            torch.manual_seed(tc.seed + 1_000_003 * self.dist.rank)  # dropout, masks per process
        self.spec_augment = SpecAugment(cfg.spec_augment) if tc.spec_augment else None
        self.dataset = SpeechDataset(
            self.train_utts,
            self.tokenizer,
            cfg.features.sample_rate,
            cfg.wave_augment if tc.wave_augment else None,
            seed=tc.seed,
        )
        self.sampler = BucketBatchSampler(
            self.train_utts.duration,
            cfg.data.batch_seconds,
            shuffle=True,
            seed=tc.seed,
            min_batch_size=self.dist.world_size,  # a share of every batch for each process
            speeds=self.dataset.speeds,  # batches grouped by speed-perturbed length
        )
        # Every process starts from rank 0's weights; gradients are averaged every step (by
        # DistributedDataParallel, or `average_gradients`), and buffers (BatchNorm statistics)
        # follow rank 0's each step.
        broadcast_tensors([*self.model.parameters(), *self.model.buffers()], self.dist)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self.full_steps = tc.epochs * self.steps_per_epoch
        self.progress = Progress(total_steps=self.full_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_lambda(s, tc.warmup_steps, self.progress.total_steps, tc.final_lr_ratio),
        )
        # Loss scaling only matters for fp16; bf16 has fp32's exponent range.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        # Per utterance, so that a loss can be averaged over a batch split among processes.
        self.ctc = torch.nn.CTCLoss(blank=0, reduction="none", zero_infinity=True)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.sampler.batches()) / self.cfg.train.accumulate)

    def _within_max_duration(self, utts: ManifestIndex) -> ManifestIndex:
        """Training utterances no longer than data.max_duration; says how many were left out."""
        limit = self.cfg.data.max_duration
        if limit <= 0:
            return utts
        kept = utts.select(np.flatnonzero(utts.duration <= limit))
        if not len(kept):
            raise ValueError(
                f"{self.cfg.data.train_manifest}: every utterance is over "
                f"data.max_duration={limit:g} s"
            )
        if len(kept) < len(utts):
            print(
                f"{self.cfg.data.train_manifest}: {len(utts) - len(kept)} utterance(s) longer "
                f"than data.max_duration={limit:g} s left out"
            )
        return kept

    def _report_dev_oov(self) -> None:
        unknown: set[str] = set()
        for u in self.dev_utts:
            unknown |= self.tokenizer.unknown(u.text)
        if unknown:
            print(
                f"warning: {self.cfg.data.dev_manifest}: {self.cfg.data.units} units not in the "
                f"training text, never recognised: {' '.join(sorted(unknown))!r}"
            )

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "config": to_dict(self.cfg),
            "tokenizer": self.tokenizer.state_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "progress": asdict(self.progress),
        }

    def load_state_dict(self, state: dict) -> None:
        saved = tokenizer_from_state(state["tokenizer"])
        if type(saved) is not type(self.tokenizer) or saved.tokens != self.tokenizer.tokens:
            raise ValueError("the training text gives a different vocabulary than the checkpoint's")
        self.tokenizer = saved  # (a BPE model retrained on resume may differ in its bytes)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.progress = Progress(**{"total_steps": self.full_steps, **state["progress"]})
        self._plan()  # a resume may bring another budget or epoch count

    def save(self, name: str) -> Path:
        path = self.out_dir / name
        # last.pt keeps the one it replaces (last.prev.pt): --resume falls back to it
        save_checkpoint(path, self.state_dict(), keep_previous=name == "last.pt")
        return path

    # ---- steps -------------------------------------------------------------------------
    def fit_cmvn(self) -> None:
        """Global CMVN from (a seeded sample of) the training set, without augmentation."""
        rng = random.Random(self.cfg.train.seed)
        utts = self.train_utts
        if len(utts) > self.cfg.data.cmvn_max_utts:  # (the same sample as of a list)
            utts = utts.select(rng.sample(range(len(utts)), self.cfg.data.cmvn_max_utts))
        dataset = SpeechDataset(utts, None, self.cfg.features.sample_rate)
        sampler = BucketBatchSampler(utts.duration, 600.0, shuffle=False)
        loader = self._loader(dataset, sampler)
        batches = (b for b in loader if len(b["wav_lens"]))  # (failed loads are left out)
        self.model.features.fit_cmvn((b["wavs"], b["wav_lens"]) for b in batches)

    def _workers(self) -> int:
        """data.num_workers, but on the CPU no more than the cores torch's threads leave free:
        loader processes on the cores torch computes on stall its threads (measured by
        bench/train_throughput.py: docs/benchmarks.md, "Training throughput")."""
        workers = self.cfg.data.num_workers
        if self.device.type == "cpu":
            free = (os.cpu_count() or 1) - torch.get_num_threads()
            workers = min(workers, max(0, free))
        return workers

    def _loader(self, dataset, sampler) -> DataLoader:
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self._workers(),
            pin_memory=self.device.type == "cuda",
            # A private generator keeps the global RNG (dropout, masks) untouched by loaders.
            generator=torch.Generator().manual_seed(self.cfg.train.seed),
        )

    def _loss_sum(self, batch: dict) -> tuple[torch.Tensor, int]:
        """Sum over this process's utterances of CTC loss / target length, and their count."""
        wavs = batch["wavs"].to(self.device, non_blocking=True)
        wav_lens = batch["wav_lens"].to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            log_probs, out_lens = self.net(wavs, wav_lens, self.spec_augment)  # (B, T', V), (B,)
        token_lens = batch["token_lens"].to(self.device)
        tokens = batch["tokens"].to(self.device)
        # CTC in fp32 on (T', B, V) log-probs -> (B,) losses
        losses = self.ctc(log_probs.float().transpose(0, 1), tokens, out_lens, token_lens)
        # each loss divided by its target length, as reduction="mean" does
        return (losses / token_lens.clamp(min=1)).sum(), len(wav_lens)

    def train_step(self, batches: list[dict]) -> float | None:
        """One optimizer step over `train.accumulate` global batches (this process's shares).

        Each global batch's loss is the mean over its utterances, on whichever process they
        are: a process scales its sum by world size / global count, and the gradient mean over
        processes (in DistributedDataParallel or `average_gradients`) makes that the global
        mean. The batches of one step weigh the same. Returns the mean loss over all processes;
        NaN when the loss or gradient is not finite (the step is skipped: weights and optimizer
        state untouched); None when out of memory even one utterance at a time (skipped). When
        any process runs out of memory, every process redoes the step in halves, quarters...
        (with one process, or several and `train.ddp=false`; in DistributedDataParallel it
        stops the run).
        """
        self.model.train()
        usable = self._usable(batches)
        if not usable:
            return None
        broadcast_tensors(list(self.model.buffers()), self.dist)
        if self.net is not self.model:
            total = self._accumulate_in_ddp(usable)
        else:
            total = self._accumulate_in_pieces(usable)
            if total is None:
                return None
            average_gradients(list(self.model.parameters()), self.dist)
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        (total,) = all_reduce_sum([total], self.dist, self.device)
        if not self.scaler.is_enabled() and not (math.isfinite(total) and torch.isfinite(norm)):
            # (with fp16 the scaler skips such steps itself, and lowers its scale)
            self.optimizer.zero_grad(set_to_none=True)
            return math.nan
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else 0.0
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # fp16: a lowered scale means the scaler found an inf/NaN gradient and skipped the
        # optimizer's step; the learning-rate schedule then waits too.
        if not self.scaler.is_enabled() or self.scaler.get_scale() >= scale:
            self.scheduler.step()
        return total

    def _accumulate_in_ddp(self, usable: list[tuple[dict, float]]) -> float:
        """This process's share of the step in DistributedDataParallel; out of memory stops
        the run (the other processes are already waiting in the backward pass's all-reduce)."""
        total = self._accumulate_or_none(usable, 1)
        if total is not None:
            return total
        raise TrainingError(
            f"out of memory on process {self.dist.rank} at epoch {self.progress.epoch + 1}, "
            f"batch {self.progress.batch}: with several processes in DistributedDataParallel "
            "(train.ddp=true) a step cannot be redone in pieces; lower data.batch_seconds, set "
            "data.max_duration, or set train.ddp=false to have all processes redo such steps "
            "in pieces"
        )

    def _accumulate_in_pieces(self, usable: list[tuple[dict, float]]) -> float | None:
        """This process's gradients of the step (not yet averaged over processes), redone by
        every process in halves, quarters... while any runs out of memory; None when one
        cannot cut its share any finer (the step is left out by all)."""
        largest = max(len(b["wav_lens"]) for b, _ in usable)
        pieces = 1
        while True:
            total = self._accumulate_or_none(usable, pieces)
            # Every process learns whether any ran out of memory, and whether one of those
            # cannot cut its share any finer: all then redo the step in smaller pieces (the
            # same gradient), or all leave it out, making the same collective calls.
            failed, stuck = all_reduce_sum(
                [float(total is None), float(total is None and pieces >= largest)],
                self.dist,
                self.device,
            )
            if not failed:
                break
            self.optimizer.zero_grad(set_to_none=True)
            if stuck:
                self.progress.skipped_batches += len(usable)
                if self.dist.is_main:
                    print(
                        f"warning: out of memory even one utterance at a time: batch(es) left "
                        f"out at epoch {self.progress.epoch + 1} ({self.progress.skipped_batches}"
                        " in all); consider data.max_duration"
                    )
                return None
            pieces *= 2
            self.progress.split_steps += 1
        return total

    def _usable(self, batches: list[dict]) -> list[tuple[dict, float]]:
        """The step's batches that every process can train on, each with its global count.

        Utterances that failed to load (collate left them out) are named here, by the process
        that loaded them, and counted over all processes. A batch of which some process has
        nothing left is left out on every process (one all_reduce decides it for all, so all
        make the same collective calls), and counted as skipped.
        """
        p = self.progress
        for batch in batches:
            for error in batch.get("errors", []):
                print(f"warning: utterance skipped at epoch {p.epoch + 1}: {error}")
        n = len(batches)
        counts = [float(len(b["wav_lens"])) for b in batches]
        empty = [float(c == 0) for c in counts]
        failed = float(sum(len(b.get("errors", [])) for b in batches))
        reduced = all_reduce_sum(counts + empty + [failed], self.dist, self.device)
        p.failed_utterances += round(reduced[-1])
        usable = [(b, reduced[j]) for j, b in enumerate(batches) if reduced[n + j] == 0]
        if len(usable) < n:
            p.skipped_batches += n - len(usable)
            if self.dist.is_main:
                print(
                    f"warning: {n - len(usable)} batch(es) left out at epoch {p.epoch + 1}: no "
                    f"utterance of a share could be loaded ({p.skipped_batches} skipped in all)"
                )
        return usable

    def _accumulate_or_none(self, batches: list[tuple[dict, float]], pieces: int) -> float | None:
        """This process's gradients of the step's (batch, global count)s, each cut into
        `pieces`; returns the summed loss, or None when out of memory (gradients zeroed)."""
        try:
            return self._accumulate(batches, pieces)
        except (RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return None

    def _accumulate(self, batches: list[tuple[dict, float]], pieces: int) -> float:
        """Gradients of the step's (batch, global count)s, each cut into `pieces`; returns the
        summed loss. In DistributedDataParallel only the last backward pass all-reduces."""
        self.optimizer.zero_grad(set_to_none=True)
        world = self.dist.world_size
        total = 0.0
        chunks = [
            (chunk, world / global_count / len(batches))
            for batch, global_count in batches
            for chunk in (split_batch(batch, pieces) if pieces > 1 else [batch])
        ]
        for i, (chunk, weight) in enumerate(chunks):
            quiet = self.net is not self.model and i < len(chunks) - 1  # DDP: no all-reduce yet
            with self.net.no_sync() if quiet else contextlib.nullcontext():
                loss_sum, _ = self._loss_sum(chunk)
                loss = loss_sum * weight
                self.scaler.scale(loss).backward()
            total += float(loss.detach()) / world
        return total

    def validate(self) -> float:
        """Greedy dev-set WER; writes errs-dev.txt next to the checkpoints."""
        transcriber = Transcriber(self.model, self.tokenizer, self.device, self.cfg.train.precision)
        result = evaluate_utterances(transcriber, self.dev_utts)
        if result.failures:
            raise DataError(result.failures, "the dev set", "fix or remove these files")
        write_report(
            self.out_dir, "dev", result.utterances, result.score, {"step": self.progress.step}
        )
        return result.score.wer

    def _budget_spent(self) -> bool:
        tc = self.cfg.train
        if tc.max_steps and self.progress.step >= tc.max_steps:
            return True
        return bool(tc.max_minutes) and self.progress.elapsed >= 60 * tc.max_minutes

    def _plan(self) -> None:
        """Size the LR schedule so that it completes within train.max_minutes."""
        p, budget = self.progress, 60 * self.cfg.train.max_minutes
        if not budget:
            p.total_steps = self.full_steps
        elif p.step >= CALIBRATION_STEPS or p.elapsed >= CALIBRATION_SHARE * budget:
            p.total_steps = planned_steps(self.full_steps, p.step, p.elapsed, budget)

    def _schedule_done(self) -> bool:
        return self.progress.step >= self.progress.total_steps

    def stop_reason(self) -> str:
        """Why training ended (other than by a signal or an error), in words for the log."""
        p, tc = self.progress, self.cfg.train
        took = f"{p.elapsed / 60:.1f} min"
        if tc.max_steps and p.step >= tc.max_steps:
            return f"train.max_steps={tc.max_steps} reached, at step {p.step} ({took})"
        budget = f"train.max_minutes={tc.max_minutes:g}"
        if self._schedule_done() and p.total_steps >= self.full_steps:
            before = f", before the time budget ({budget})" if tc.max_minutes else ""
            return f"all {tc.epochs} epochs done: {p.step} steps in {took}{before}"
        epochs = p.step / max(1, self.steps_per_epoch)
        if self._schedule_done():
            return (
                f"time budget reached ({budget}): the schedule was sized to fit it, {p.step} "
                f"of the {self.full_steps} steps of {tc.epochs} epochs ({epochs:.1f} epochs) "
                f"in {took}"
            )
        return f"time budget reached ({budget}) at step {p.step} of {p.total_steps} ({took})"

    def _after_validation(self, wer: float, writer: SummaryWriter, result: TrainResult) -> None:
        p = self.progress
        writer.add_scalar("dev/wer", wer, p.step)
        entry = {"epoch": p.epoch, "step": p.step, "dev_wer": wer, "elapsed": round(p.elapsed, 1)}
        result.history.append(entry)
        with (self.out_dir / "history.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        if wer < p.best_wer:
            p.best_wer, p.best_step = wer, p.step
            self.save("best.pt")
        if self.cfg.train.average_last > 1:
            self._keep_snapshot()

    def _keep_snapshot(self) -> None:
        """Model weights at this validation, for averaging; only the last N are kept."""
        folder = self.out_dir / "snapshots"
        save_checkpoint(
            folder / f"step-{self.progress.step:08d}.pt", {"model": self.model.state_dict()}
        )
        for old in sorted(folder.glob("step-*.pt"))[: -self.cfg.train.average_last]:
            old.unlink()

    def _try_average(self, writer: SummaryWriter, result: TrainResult) -> None:
        """Score the mean of the kept snapshots; it becomes best.pt if its dev WER is lower,
        or whatever its dev WER with `train.keep_average`."""
        keep = self.cfg.train.keep_average
        paths = sorted((self.out_dir / "snapshots").glob("step-*.pt"))
        if len(paths) < (1 if keep else 2):
            return
        trained = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(average_weights([load_checkpoint(p)["model"] for p in paths]))
        wer, p = self.validate(), self.progress
        writer.add_scalar("dev/wer_averaged", wer, p.step)
        entry = {"step": p.step, "averaged": len(paths), "dev_wer": wer}
        result.history.append(entry)
        with (self.out_dir / "history.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        kept = " (kept as best.pt: train.keep_average)" if keep else ""
        print(f"mean of the last {len(paths)} validations' weights: dev WER {100 * wer:.2f}%{kept}")
        if keep or wer < p.best_wer:
            p.best_wer, p.best_step = wer, p.step
            self.save("best.pt")
        self.model.load_state_dict(trained)  # last.pt and further training go on from here

    def _agree(self) -> bool:
        """Rank 0's schedule length and stop decision, on every process; True = stop now.

        A SIGINT/SIGTERM that reached any process stops all of them here: last.pt is written
        and TrainingStopped raised.
        """
        p = self.progress
        stop = self._schedule_done() or self._budget_spent()
        p.total_steps, stop = broadcast_from_main(
            [p.total_steps, int(stop)], self.dist, self.device
        )
        (signalled,) = all_reduce_sum([float(self._signal)], self.dist, self.device)
        if signalled:
            number = self._signal or signal.SIGTERM
            self._save_main("last.pt")
            raise TrainingStopped(
                number,
                f"stopped by {signal.Signals(number).name} after step {p.step}: saved "
                f"{self.out_dir / 'last.pt'}; continue with: asr train --out-dir {self.out_dir} "
                "--resume",
            )
        return bool(stop)

    def _on_signal(self, number: int, frame) -> None:
        if self._signal:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self._signal = number
        if self.dist.is_main:
            name = signal.Signals(number).name
            print(f"{name}: stopping at the end of this step (again to stop at once)", flush=True)

    def _catch_signals(self) -> dict:
        """SIGINT and SIGTERM set a flag read after each step; returns the old handlers."""
        self._signal = 0
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _log(self, writer: SummaryWriter | None, tag: str, value: float) -> None:
        if writer is not None:
            writer.add_scalar(tag, value, self.progress.step)

    def run(self) -> TrainResult:
        """Train until the epochs or the budget run out; resumable from last.pt at any point.

        With several processes, rank 0 validates, logs and writes checkpoints.
        """
        tc, main = self.cfg.train, self.dist.is_main
        result = TrainResult(self.out_dir, self.progress)
        writer = SummaryWriter(str(self.out_dir / "tensorboard")) if main else None
        sampler = self.sampler
        if self.dist.enabled:
            sampler = ShardedBatchSampler(self.sampler, self.dist.rank, self.dist.world_size)
            if tc.ddp:
                self.net = data_parallel(self.model, self.device)
        loader = self._loader(self.dataset, sampler)
        p = self.progress
        stopped = False
        bad_in_row = 0
        old_handlers = self._catch_signals()
        try:
            while not self._agree():
                sampler.set_epoch(p.epoch, start_batch=p.batch)
                self.dataset.epoch = p.epoch
                epoch_batches = len(self.sampler.batches())
                whole_epoch, steps_before = p.batch == 0, p.step
                bar = progress_bar(
                    loader,
                    desc=f"epoch {p.epoch + 1}/{tc.epochs}",
                    disable=not (tc.progress and main),
                    leave=False,
                )
                tick = time.perf_counter()
                group: list[dict] = []
                for batch in bar:
                    group.append(batch)
                    p.batch += 1
                    if len(group) < tc.accumulate and p.batch < epoch_batches:
                        continue
                    loss = self.train_step(group)
                    group = []
                    now = time.perf_counter()
                    p.elapsed += now - tick
                    tick = now
                    if loss is None or math.isnan(loss):  # skipped (out of memory / non-finite)
                        if loss is not None:
                            bad_in_row += 1
                            self._bad_step(bad_in_row, writer)
                        if self._agree():
                            stopped = True
                            break
                        continue
                    bad_in_row = 0
                    p.step += 1
                    result.losses.append(loss)
                    lr = self.scheduler.get_last_lr()[0]
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                    self._log(writer, "train/loss", loss)
                    self._log(writer, "train/lr", lr)
                    self._plan()
                    if tc.checkpoint_every_steps and p.step % tc.checkpoint_every_steps == 0:
                        self._save_main("last.pt")
                    if self._agree():
                        stopped = True
                        break
                bar.close()
                if p.batch == epoch_batches:
                    if whole_epoch and p.step == steps_before:
                        self._save_main("last.pt")
                        raise TrainingError(
                            f"epoch {p.epoch + 1}: every batch was left out (out of memory, or "
                            "no utterance could be loaded; see the warnings above): nothing to "
                            "train on; lower data.batch_seconds, set data.max_duration or fix "
                            "the files"
                        )
                    p.epoch += 1
                    p.batch = 0
                if stopped or p.epoch % tc.validate_every_epochs == 0:
                    if main:
                        self._after_validation(self.validate(), writer, result)
                    barrier(self.dist)
                    p.elapsed += time.perf_counter() - tick  # validation counts against a budget
                    self._plan()
                    if main:
                        wer = result.history[-1]["dev_wer"]
                        print(
                            f"epoch {p.epoch} step {p.step}/{p.total_steps}: dev WER "
                            f"{100 * wer:.2f}% (best {100 * p.best_wer:.2f}%), "
                            f"{p.elapsed / 60:.1f} min"
                        )
                self._save_main("last.pt")
                if stopped:
                    break
            if self._schedule_done() and self.cfg.train.average_last > 1 and main:
                self._try_average(writer, result)
            elif tc.keep_average and main:
                print(
                    f"warning: stopped at step {p.step} of {p.total_steps}, before the schedule "
                    "ended: best.pt is the checkpoint with the best dev WER, not the mean of the "
                    "last validations' weights (train.keep_average); resume to finish"
                )
        except KeyboardInterrupt:
            self._save_main("last.pt")
            if main:
                print(
                    f"interrupted mid-step: saved {self.out_dir / 'last.pt'}; continue with "
                    "--resume (from the start of the epoch's next batch)"
                )
            raise
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if writer is not None:
                writer.close()
        if main:
            reason = self.stop_reason()
            print(f"training stopped: {reason}")
            summary = {
                **asdict(p),
                "stop_reason": reason,
                "device": str(self.device),
                "processes": self.dist.world_size,
                "full_schedule_steps": self.full_steps,
            }
            text = json.dumps(summary, indent=2) + "\n"
            atomic_write_text(self.out_dir / "train_summary.json", text)
        barrier(self.dist)
        return result

    def _bad_step(self, in_row: int, writer: SummaryWriter | None) -> None:
        """Count a step skipped for a non-finite loss or gradient; stop after too many."""
        p = self.progress
        p.bad_steps += 1
        self._log(writer, "train/bad_steps", p.bad_steps)
        where = f"epoch {p.epoch + 1}, batch {p.batch}"
        if self.dist.is_main:
            print(
                f"warning: step skipped at {where}: non-finite loss or gradient "
                f"({in_row} in a row, {p.bad_steps} in all)"
            )
        if in_row >= self.cfg.train.max_bad_steps:
            raise TrainingError(
                f"{in_row} steps in a row with a non-finite loss or gradient (up to {where}): "
                "lower train.lr or check the training data; "
                f"{self.out_dir / 'last.pt'} holds the last saved state"
            )

    def _save_main(self, name: str) -> None:
        """Checkpoint on rank 0; the others wait, so all go on with it written."""
        if self.dist.is_main:
            self.save(name)
        barrier(self.dist)


def train(
    cfg: ExperimentConfig, out_dir: str | Path, resume: bool = False, overrides: list[str] = ()
) -> TrainResult:
    """Train from scratch, or continue from out_dir/last.pt with `resume`."""
    out_dir = Path(out_dir)
    last = out_dir / "last.pt"
    if resume:
        state, path = load_resumable(last)
        # Overrides given on resume (a longer budget, say) apply on top of the saved config.
        cfg = apply_overrides(from_dict(state["config"], str(path)), overrides)
        trainer = Trainer(cfg, out_dir)
        trainer.load_state_dict(state)
    else:
        if last.exists():
            raise FileExistsError(
                f"{last} exists: pass --resume to continue, or use a new --out-dir"
            )
        trainer = Trainer(cfg, out_dir)
        trainer.fit_cmvn()
    return trainer.run()
