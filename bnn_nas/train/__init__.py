"""Training: optimiser and schedule, checkpoints, the fit/evaluate loop.

``bnn_nas.train(config, genotype=...)`` (the API's :func:`bnn_nas.api.train`) is also a
call of this package: importing it makes it the ``train`` attribute of ``bnn_nas``.
"""

import sys
import types

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


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """bnn_nas.api.train: train a genotype or baseline to the end; the report."""
        from bnn_nas.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
