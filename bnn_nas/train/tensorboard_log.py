"""TensorBoard curves of a final training (``final.tensorboard``, ``--tensorboard``).

Per epoch, into RUN/tensorboard/ with ``torch.utils.tensorboard``: ``train/loss``,
``train/acc``, ``eval/loss``, ``eval/acc`` (epochs with evaluation), ``lr`` and ``stage``,
at step = the epoch as metrics.csv numbers it (0-based, counted across stages). The
``tensorboard`` package is the optional extra ``bnn-nas[tensorboard]``.

A resumed run writes a new event file beside the old ones and purges, from the old, the
steps it trains again (SummaryWriter's ``purge_step``): epochs a killed run finished after
its last checkpoint show once, with the values of the run that completed them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnn_nas.errors import ConfigError
from bnn_nas.train.metrics import EpochMetrics

FOLDER = "tensorboard"


def summary_writer_class(setting: str = "final.tensorboard") -> Any:
    """torch's SummaryWriter; a one-line error naming ``setting`` when the tensorboard
    package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            f"{setting} (--tensorboard) needs the tensorboard package: "
            "pip install 'bnn-nas[tensorboard]' (or pip install tensorboard)"
        ) from None
    return SummaryWriter


class TensorBoardCurves:
    """Writes each new epoch's scalars; opened at the first epoch this process trains."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self._writer_class = summary_writer_class()
        self._writer: Any = None

    def add(self, metrics: EpochMetrics) -> None:
        if self._writer is None:  # the first epoch of this session: drop what it replaces
            self._writer = self._writer_class(str(self.log_dir), purge_step=metrics.epoch)
        step = metrics.epoch
        scalars = {
            "train/loss": metrics.train_loss,
            "train/acc": metrics.train_acc,
            "eval/loss": metrics.eval_loss,
            "eval/acc": metrics.eval_acc,
            "lr": metrics.lr,
            "stage": metrics.stage,
        }
        for tag, value in scalars.items():
            if value is not None:
                self._writer.add_scalar(tag, value, step)
        self._writer.flush()  # a live TensorBoard sees every epoch as it ends

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
