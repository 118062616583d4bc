"""Training: the loop (``train``), losses, lr schedules, EMA, distributed helpers, run directories."""

from .ema import export_ema
from .losses import TrainLoss, label_smoothed_nll
from .schedules import SCHEDULES, build_schedule
from .state import RunDir, read_metrics
from .trainer import TrainResult, enable_activation_checkpointing, train

__all__ = ["train", "TrainResult", "export_ema", "enable_activation_checkpointing", "label_smoothed_nll", "TrainLoss",
           "build_schedule", "SCHEDULES", "RunDir", "read_metrics"]
