"""Training in which process 1 runs out of memory (injected); run by torchrun from
tests/test_distributed.py.

    python tests/oom_worker.py split|skip --config FILE --out-dir DIR [section.key=value ...]

split: process 1 fails on any piece of more than one utterance in steps 3 to 5, so those steps
are redone in pieces; skip: it fails on everything of the first batch of step 3, so that batch
is left out (and step 3 made of the next one). A TrainingError ends the process with status 1
and the line `asr train` would print.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from asr.config import load_config
from asr.training.trainer import Trainer, TrainingError


class FlakyTrainer(Trainer):
    mode = "split"

    def loss_sum(self, batch: dict) -> torch.Tensor:
        step = self.progress.step + 1  # the step being made
        if int(os.environ["RANK"]) == 1 and (
            (self.mode == "split" and 3 <= step <= 5 and len(batch["wav_lens"]) > 1)
            or (self.mode == "skip" and step == 3 and self.progress.skipped_batches == 0)
        ):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return super().loss_sum(batch)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("overrides", nargs="*")
    FlakyTrainer.mode, args = argv[0], parser.parse_args(argv[1:])
    trainer = FlakyTrainer(load_config(args.config, args.overrides), args.out_dir)
    trainer.fit_cmvn()
    try:
        trainer.run()
    except TrainingError as err:
        print(f"asr: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
