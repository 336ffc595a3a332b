"""The training loop: epochs of fault-tolerant steps, validation, checkpoints, exact resume.

`Trainer` builds everything of one experiment folder (data, tokenizer, model, optimizer) and
`run` trains: epochs of steps (asr.training.step), each followed by the dev-set WER every
train.validate_every_epochs epochs; best.pt keeps the lowest, last.pt the state to resume from,
exactly (every random state included). The schedule and its time budget are in
asr.training.schedule, weight averaging in asr.training.averaging, SIGINT/SIGTERM handling in
asr.training.signals. With several processes (torchrun), rank 0 validates, logs and writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from asr.checkpoint import load_resumable, save_checkpoint
from asr.config import ExperimentConfig, apply_overrides, from_dict, to_dict
from asr.data import BucketBatchSampler, SpeechDataset, collate
from asr.device import configure_backends, pick_device, resolve_precision
from asr.distributed import (
    ShardedBatchSampler,
    all_reduce_sum,
    barrier,
    broadcast_from_main,
    broadcast_tensors,
    data_parallel,
    init_distributed,
    process_device,
)
from asr.evaluate import evaluate_greedy
from asr.features import SpecAugment
from asr.files import atomic_write_text
from asr.metrics import write_report
from asr.model import Recogniser
from asr.progress import progress_bar
from asr.tokenizers import build_tokenizer, tokenizer_from_state
from asr.training.averaging import Snapshots, weights_swapped
from asr.training.schedule import Budget, lr_schedule
from asr.training.signals import StopRequest, TrainingStopped, stop_on_signals
from asr.training.step import StepOutOfMemory, StepResult, ctc_loss_sum, train_step
from asr.training.utterances import DataError, load_normalised, within_max_duration


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what to do."""


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


class Trainer:
    """The data, model, optimizer and progress of one experiment folder."""

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
        self.train_utts = within_max_duration(
            load_normalised(cfg.data.train_manifest, "train", drop),
            cfg.data.max_duration,
            cfg.data.train_manifest,
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
        # Every process starts from rank 0's weights; gradients are averaged every step, and
        # buffers (BatchNorm statistics) follow rank 0's each step (asr.training.step).
        broadcast_tensors([*self.model.parameters(), *self.model.buffers()], self.dist)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self.budget = Budget(tc.epochs, self.steps_per_epoch, tc.max_steps, tc.max_minutes)
        self.progress = Progress(total_steps=self.budget.full_steps)
        self.scheduler = lr_schedule(
            self.optimizer, tc.warmup_steps, tc.final_lr_ratio, lambda: self.progress.total_steps
        )
        # Loss scaling only matters for fp16; bf16 has fp32's exponent range.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.snapshots = Snapshots(self.out_dir / "snapshots", tc.average_last)
        self.stop = StopRequest()  # run() sets the one of its stop_on_signals()
        self.writer: SummaryWriter | None = None  # open during run(), on rank 0
        self.bad_in_row = 0  # steps skipped in a row for a non-finite loss or gradient
        self._tick = time.perf_counter()  # when progress.elapsed was last brought up to date

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.sampler.batches()) / self.cfg.train.accumulate)

    def _report_dev_oov(self) -> None:
        unknown: set[str] = set()
        for u in self.dev_utts:
            unknown |= self.tokenizer.unknown(u.text)
        if unknown:
            print(
                f"warning: {self.cfg.data.dev_manifest}: {self.cfg.data.units} units not in the "
                f"training text, never recognised: {' '.join(sorted(unknown))!r}"
            )

    # ---- state ---------------------------------------------------------------------------
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
        self.progress = Progress(**{"total_steps": self.budget.full_steps, **state["progress"]})
        self._plan()  # a resume may bring another budget or epoch count

    def save(self, name: str) -> Path:
        path = self.out_dir / name
        # last.pt keeps the one it replaces (last.prev.pt): --resume falls back to it
        save_checkpoint(path, self.state_dict(), keep_previous=name == "last.pt")
        return path

    def save_on_main(self, name: str) -> None:
        """Checkpoint on rank 0; the others wait, so all go on with it written."""
        if self.dist.is_main:
            self.save(name)
        barrier(self.dist)

    # ---- data ----------------------------------------------------------------------------
    def fit_cmvn(self) -> None:
        """Global CMVN from (a seeded sample of) the training set, without augmentation."""
        rng = random.Random(self.cfg.train.seed)
        utts = self.train_utts
        if len(utts) > self.cfg.data.cmvn_max_utts:  # (the same sample as of a list)
            utts = utts.select(rng.sample(range(len(utts)), self.cfg.data.cmvn_max_utts))
        dataset = SpeechDataset(utts, None, self.cfg.features.sample_rate)
        sampler = BucketBatchSampler(utts.duration, 600.0, shuffle=False)
        loader = self.loader(dataset, sampler)
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

    def loader(self, dataset: SpeechDataset, sampler) -> DataLoader:
        """Collated batches of `dataset` in the order of `sampler` (lists of indices)."""
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self._workers(),
            pin_memory=self.device.type == "cuda",
            # A private generator keeps the global RNG (dropout, masks) untouched by loaders.
            generator=torch.Generator().manual_seed(self.cfg.train.seed),
        )

    # ---- one step ------------------------------------------------------------------------
    def loss_sum(self, batch: dict) -> torch.Tensor:
        """Sum over the batch's utterances of CTC loss / target length, with SpecAugment."""
        return ctc_loss_sum(self.net, batch, self.device, self.dtype, self.spec_augment)

    def train_step(self, batches: list[dict]) -> float | None:
        """One optimizer step over `train.accumulate` global batches (this process's shares):
        asr.training.step.train_step, its outcome counted in `progress` and the log.

        Returns the mean loss over all processes (the step counted and the LR schedule
        advanced); NaN when the loss or gradient was not finite (the step skipped; too many
        in a row raise TrainingError); None when every batch was left out.
        """
        p = self.progress
        try:
            out = train_step(
                self.model,
                self.optimizer,
                self.scaler,
                self.dist,
                self.device,
                batches,
                self.loss_sum,
                self.cfg.train.grad_clip,
                ddp=self.net if self.net is not self.model else None,
            )
        except StepOutOfMemory as err:
            raise TrainingError(
                f"{err} at epoch {p.epoch + 1}, batch {p.batch}: with several processes in "
                "DistributedDataParallel (train.ddp=true) a step cannot be redone in pieces; "
                "lower data.batch_seconds, set data.max_duration, or set train.ddp=false to "
                "have all processes redo such steps in pieces"
            ) from None
        self._count(out)
        if out.stepped:
            self.scheduler.step()
        if out.loss is not None and not math.isnan(out.loss):
            p.step += 1
        return out.loss

    def _count(self, out: StepResult) -> None:
        """Add a step's faults to `progress` and say what was left out."""
        p, main, epoch = self.progress, self.dist.is_main, self.progress.epoch + 1
        for error in out.load_errors:  # each process names the files it failed to load
            print(f"warning: utterance skipped at epoch {epoch}: {error}")
        p.failed_utterances += out.failed_utterances
        p.split_steps += out.splits
        if out.unloadable_batches:
            p.skipped_batches += out.unloadable_batches
            if main:
                print(
                    f"warning: {out.unloadable_batches} batch(es) left out at epoch {epoch}: no "
                    f"utterance of a share could be loaded ({p.skipped_batches} skipped in all)"
                )
        if out.out_of_memory_batches:
            p.skipped_batches += out.out_of_memory_batches
            if main:
                print(
                    f"warning: out of memory even one utterance at a time: batch(es) left "
                    f"out at epoch {epoch} ({p.skipped_batches} in all); consider "
                    "data.max_duration"
                )
        if out.loss is None:
            return
        if not math.isnan(out.loss):
            self.bad_in_row = 0
            return
        self.bad_in_row += 1
        p.bad_steps += 1
        self._log("train/bad_steps", p.bad_steps)
        where = f"epoch {epoch}, batch {p.batch}"
        if main:
            print(
                f"warning: step skipped at {where}: non-finite loss or gradient "
                f"({self.bad_in_row} in a row, {p.bad_steps} in all)"
            )
        if self.bad_in_row >= self.cfg.train.max_bad_steps:
            raise TrainingError(
                f"{self.bad_in_row} steps in a row with a non-finite loss or gradient (up to "
                f"{where}): lower train.lr or check the training data; "
                f"{self.out_dir / 'last.pt'} holds the last saved state"
            )

    # ---- validation ----------------------------------------------------------------------
    def validate(self) -> float:
        """Greedy dev-set WER; writes errs-dev.txt next to the checkpoints."""
        result = evaluate_greedy(
            self.model, self.tokenizer, self.dev_utts, self.device, self.cfg.train.precision
        )
        if result.failures:
            raise DataError(result.failures, "the dev set", "fix or remove these files")
        write_report(
            self.out_dir, "dev", result.utterances, result.score, {"step": self.progress.step}
        )
        return result.score.wer

    def _validate_and_keep(self, result: TrainResult) -> None:
        """Dev WER on rank 0: logged, best.pt when the lowest so far, the weights kept for
        averaging (train.average_last); then the schedule re-planned, on every process."""
        p, main = self.progress, self.dist.is_main
        wer = self.validate() if main else math.nan
        if main:
            self._add_history({"epoch": p.epoch, "step": p.step, "dev_wer": wer}, result)
            if wer < p.best_wer:
                p.best_wer, p.best_step = wer, p.step
                self.save("best.pt")
            if self.cfg.train.average_last > 1:
                self.snapshots.add(p.step, self.model.state_dict())
        barrier(self.dist)
        self._clock()  # validation counts against a time budget
        self._plan()
        if main:
            print(
                f"epoch {p.epoch} step {p.step}/{p.total_steps}: dev WER "
                f"{100 * wer:.2f}% (best {100 * p.best_wer:.2f}%), {p.elapsed / 60:.1f} min"
            )

    def _score_average(self, result: TrainResult) -> None:
        """The mean of the kept snapshots' weights, scored on dev: best.pt if its dev WER is
        lower, or whatever its dev WER with train.keep_average (rank 0 only)."""
        keep, p = self.cfg.train.keep_average, self.progress
        paths = self.snapshots.paths()
        if len(paths) < (1 if keep else 2):
            return
        with weights_swapped(self.model, self.snapshots.mean()):
            wer = self.validate()
            self._add_history({"step": p.step, "averaged": len(paths), "dev_wer": wer}, result)
            kept = " (kept as best.pt: train.keep_average)" if keep else ""
            print(
                f"mean of the last {len(paths)} validations' weights: dev WER "
                f"{100 * wer:.2f}%{kept}"
            )
            if keep or wer < p.best_wer:
                p.best_wer, p.best_step = wer, p.step
                self.save("best.pt")
        # last.pt and further training go on from the trained weights

    def _average_at_the_end(self, result: TrainResult) -> None:
        """Once the schedule is done, score the mean of the last validations' weights
        (train.average_last); before, say that train.keep_average could not apply."""
        p, tc = self.progress, self.cfg.train
        if self._schedule_done() and tc.average_last > 1:
            self._score_average(result)
        elif tc.keep_average:
            print(
                f"warning: stopped at step {p.step} of {p.total_steps}, before the schedule "
                "ended: best.pt is the checkpoint with the best dev WER, not the mean of the "
                "last validations' weights (train.keep_average); resume to finish"
            )

    def _add_history(self, entry: dict, result: TrainResult) -> None:
        """One validation: TensorBoard, `result.history` and history.jsonl."""
        tag = "dev/wer_averaged" if "averaged" in entry else "dev/wer"
        self._log(tag, entry["dev_wer"])
        if "averaged" not in entry:
            entry["elapsed"] = round(self.progress.elapsed, 1)
        result.history.append(entry)
        with (self.out_dir / "history.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")

    # ---- the loop ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tensorboard(self) -> Iterator[None]:
        """`self.writer` open for the block on rank 0 (None elsewhere, and after)."""
        main = self.dist.is_main
        self.writer = SummaryWriter(str(self.out_dir / "tensorboard")) if main else None
        try:
            yield
        finally:
            if self.writer is not None:
                self.writer.close()
            self.writer = None

    def _log(self, tag: str, value: float) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, self.progress.step)

    def _clock(self) -> None:
        """Add the wall time since the last call to progress.elapsed."""
        now = time.perf_counter()
        self.progress.elapsed += now - self._tick
        self._tick = now

    def _plan(self) -> None:
        """Size the LR schedule to the budget (asr.training.schedule.Budget)."""
        p = self.progress
        p.total_steps = self.budget.schedule_steps(p.step, p.elapsed, p.total_steps)

    def _schedule_done(self) -> bool:
        return self.progress.step >= self.progress.total_steps

    def _should_stop(self) -> bool:
        """Rank 0's schedule length and stop decision, on every process; True = stop now.

        A SIGINT/SIGTERM that reached any process stops all of them here: last.pt is written
        and TrainingStopped raised.
        """
        p = self.progress
        stop = self._schedule_done() or self.budget.spent(p.step, p.elapsed)
        p.total_steps, stop = broadcast_from_main(
            [p.total_steps, int(stop)], self.dist, self.device
        )
        (signalled,) = all_reduce_sum([float(self.stop.signal)], self.dist, self.device)
        if signalled:
            number = self.stop.signal or signal.SIGTERM
            self.save_on_main("last.pt")
            raise TrainingStopped(
                number,
                f"stopped by {signal.Signals(number).name} after step {p.step}: saved "
                f"{self.out_dir / 'last.pt'}; continue with: asr train --out-dir {self.out_dir} "
                "--resume",
            )
        return bool(stop)

    def _train_epoch(self, loader: DataLoader, sampler, result: TrainResult) -> bool:
        """Steps over the rest of the current epoch (train.accumulate global batches each);
        True when a stop was decided before its end."""
        p, tc = self.progress, self.cfg.train
        sampler.set_epoch(p.epoch, start_batch=p.batch)
        self.dataset.epoch = p.epoch
        epoch_batches = len(self.sampler.batches())
        whole_epoch, steps_before = p.batch == 0, p.step
        bar = progress_bar(
            loader,
            desc=f"epoch {p.epoch + 1}/{tc.epochs}",
            disable=not (tc.progress and self.dist.is_main),
            leave=False,
        )
        self._tick = time.perf_counter()
        group: list[dict] = []
        stopped = False
        for batch in bar:
            group.append(batch)
            p.batch += 1
            if len(group) < tc.accumulate and p.batch < epoch_batches:
                continue
            loss = self.train_step(group)
            group = []
            self._clock()
            if loss is not None and not math.isnan(loss):
                result.losses.append(loss)
                lr = self.scheduler.get_last_lr()[0]
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                self._log("train/loss", loss)
                self._log("train/lr", lr)
                self._plan()
                if tc.checkpoint_every_steps and p.step % tc.checkpoint_every_steps == 0:
                    self.save_on_main("last.pt")
            if self._should_stop():
                stopped = True
                break
        bar.close()
        if p.batch == epoch_batches:
            if whole_epoch and p.step == steps_before:
                self.save_on_main("last.pt")
                raise TrainingError(
                    f"epoch {p.epoch + 1}: every batch was left out (out of memory, or no "
                    "utterance could be loaded; see the warnings above): nothing to train on; "
                    "lower data.batch_seconds, set data.max_duration or fix the files"
                )
            p.epoch += 1
            p.batch = 0
        return stopped

    def run(self) -> TrainResult:
        """Train until the epochs or the budget run out: epochs of steps, each followed (every
        train.validate_every_epochs, and when stopped) by validation and last.pt. Resumable
        from last.pt at any point; SIGINT/SIGTERM stop at the end of a step, saved."""
        tc, main, p = self.cfg.train, self.dist.is_main, self.progress
        result = TrainResult(self.out_dir, p)
        sampler = self.sampler
        if self.dist.enabled:
            sampler = ShardedBatchSampler(self.sampler, self.dist.rank, self.dist.world_size)
            if tc.ddp:
                self.net = data_parallel(self.model, self.device)
        loader = self.loader(self.dataset, sampler)
        with self._tensorboard(), stop_on_signals(announce=main) as self.stop:
            try:
                while not self._should_stop():
                    stopped = self._train_epoch(loader, sampler, result)
                    if stopped or p.epoch % tc.validate_every_epochs == 0:
                        self._validate_and_keep(result)
                    self.save_on_main("last.pt")
                    if stopped:
                        break
                if main:
                    self._average_at_the_end(result)
            except KeyboardInterrupt:
                self.save_on_main("last.pt")
                if main:
                    print(
                        f"interrupted mid-step: saved {self.out_dir / 'last.pt'}; continue "
                        "with --resume (from the start of the epoch's next batch)"
                    )
                raise
        if main:
            self._write_summary()
        barrier(self.dist)
        return result

    def _write_summary(self) -> None:
        """Say why training stopped; train_summary.json holds that and `progress`."""
        p = self.progress
        reason = self.budget.stop_reason(p.step, p.total_steps, p.elapsed)
        print(f"training stopped: {reason}")
        summary = {
            **asdict(p),
            "stop_reason": reason,
            "device": str(self.device),
            "processes": self.dist.world_size,
            "full_schedule_steps": self.budget.full_steps,
        }
        atomic_write_text(self.out_dir / "train_summary.json", json.dumps(summary, indent=2) + "\n")


def train(
    cfg: ExperimentConfig | None,
    out_dir: str | Path,
    resume: bool = False,
    overrides: Sequence[str] = (),
) -> TrainResult:
    """Train from scratch, or continue from out_dir/last.pt with `resume` (then `cfg` is the
    checkpoint's, with `overrides` applied: a longer budget, say)."""
    out_dir = Path(out_dir)
    last = out_dir / "last.pt"
    if resume:
        state, path = load_resumable(last)
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
