"""Training: optimiser and schedule, checkpoints, the fit/evaluate loop."""

from bnn_nas.train.checkpoint import load_checkpoint, save_checkpoint
from bnn_nas.train.trainer import EpochMetrics, TrainingDivergedError, evaluate, fit, resolve_device

__all__ = [
    "EpochMetrics",
    "TrainingDivergedError",
    "evaluate",
    "fit",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
]
