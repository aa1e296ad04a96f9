"""What one epoch of training measured, and the CSV form of a history of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from bnn_nas.io import write_csv_atomic


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch measured; ``eval_*`` is None on epochs without evaluation."""

    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    eval_loss: float | None
    eval_acc: float | None
    seconds: float
    images_per_s: float
    stage: int = 0  # staged training (final.stages): the stage this epoch belongs to

    def to_dict(self) -> dict:
        return asdict(self)


def write_metrics_csv(path: Path, history: list[EpochMetrics]) -> None:
    """``history``, one row per epoch, to ``path`` (written atomically)."""
    names = [f.name for f in fields(EpochMetrics)]
    write_csv_atomic(path, names, (m.to_dict() for m in history))
