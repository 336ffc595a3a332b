"""`asr train` in which process 1 runs out of memory (injected); run by torchrun from
tests/test_distributed.py.

    python tests/oom_worker.py split|skip TRAIN_ARGS...

split: process 1 fails on any piece of more than one utterance in steps 3 to 5, so those steps
are redone in pieces; skip: it fails on everything of the first batch of step 3, so that batch
is left out (and step 3 made of the next one).
"""

from __future__ import annotations

import os
import sys

import torch

from asr.cli import main
from asr.train import Trainer

_real_loss_sum = Trainer._loss_sum


def _flaky_loss_sum(self: Trainer, batch: dict):
    step = self.progress.step + 1  # the step being made
    mode = sys.argv[1]
    if int(os.environ["RANK"]) == 1 and (
        (mode == "split" and 3 <= step <= 5 and len(batch["wav_lens"]) > 1)
        or (mode == "skip" and step == 3 and self.progress.skipped_batches == 0)
    ):
        raise torch.OutOfMemoryError("CUDA out of memory (injected)")
    return _real_loss_sum(self, batch)


if __name__ == "__main__":
    Trainer._loss_sum = _flaky_loss_sum
    sys.exit(main(["train", *sys.argv[2:]]))
