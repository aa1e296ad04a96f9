"""Training: optimiser and schedule, checkpoints, the fit/evaluate loop and its callbacks.

``bnn_nas.train(config, genotype=...)`` (the API's :func:`bnn_nas.api.train`) is also a
call of this package: ``bnn_nas.train`` is always this package (Python makes a
subpackage its parent's attribute once imported), and calling it calls the API's
function, with that function's signature for ``inspect``/``help``; it pickles by name
(``ProcessPoolExecutor.submit(bnn_nas.train, ...)``). Type checkers see a module here:
``from bnn_nas.api import train`` is the same call, typed.
"""

import importlib
import inspect
import sys
import types

from bnn_nas.train.callbacks import (
    Callback,
    Checkpoint,
    FitRun,
    MetricsCSV,
    OnEpoch,
    OnStart,
    ProgressBar,
    TensorBoard,
)
from bnn_nas.train.checkpoint import load_checkpoint, save_checkpoint
from bnn_nas.train.seeding import seeded_build
from bnn_nas.train.trainer import (
    EpochMetrics,
    StageStart,
    TrainingDivergedError,
    evaluate,
    fit,
    resolve_device,
)

__all__ = [
    "Callback",
    "Checkpoint",
    "EpochMetrics",
    "FitRun",
    "MetricsCSV",
    "OnEpoch",
    "OnStart",
    "ProgressBar",
    "StageStart",
    "TensorBoard",
    "TrainingDivergedError",
    "evaluate",
    "fit",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seeded_build",
]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        """bnn_nas.api.train: train a genotype or baseline to the end; the report."""
        from bnn_nas.api import train

        return train(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        from bnn_nas.api import train

        return inspect.signature(train)

    def __reduce__(self):  # a module does not pickle; this one is found again by name
        return importlib.import_module, (self.__name__,)


sys.modules[__name__].__class__ = _CallablePackage
