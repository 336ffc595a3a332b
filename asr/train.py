"""Training: the public names of asr.training, where each part lives in its own module."""

from asr.training.averaging import Snapshots, average_weights, weights_swapped
from asr.training.schedule import (
    CALIBRATION_SHARE,
    CALIBRATION_STEPS,
    Budget,
    lr_lambda,
    lr_schedule,
    planned_steps,
)
from asr.training.signals import StopRequest, TrainingStopped, stop_on_signals
from asr.training.step import (
    StepOutOfMemory,
    StepResult,
    ctc_loss_sum,
    is_out_of_memory,
    split_batch,
    train_step,
)
from asr.training.trainer import Progress, Trainer, TrainingError, TrainResult, train
from asr.training.utterances import DataError, load_normalised, within_max_duration

__all__ = [
    "CALIBRATION_SHARE",
    "CALIBRATION_STEPS",
    "Budget",
    "DataError",
    "Progress",
    "Snapshots",
    "StepOutOfMemory",
    "StepResult",
    "StopRequest",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "TrainingStopped",
    "average_weights",
    "ctc_loss_sum",
    "is_out_of_memory",
    "load_normalised",
    "lr_lambda",
    "lr_schedule",
    "planned_steps",
    "split_batch",
    "stop_on_signals",
    "train",
    "train_step",
    "weights_swapped",
    "within_max_duration",
]
