"""Trial records: the immutable rows that controllers read and the store keeps."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from bnn_nas.space.genotype import Genotype


class TrialStatus(str, enum.Enum):
    """Lifecycle: pending -> running -> done | failed (running -> pending when reclaimed)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class TrialResult:
    """What evaluating one candidate measured (accuracy on search-valid, never test)."""

    accuracy: float
    loss: float
    train_loss: float
    bops: int
    flops: int
    ops: float
    binary_params: int
    float_params: int
    bytes: float
    train_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Proposal:
    """A candidate a controller asks to evaluate; ``origin`` says how it was made."""

    genotype: Genotype
    origin: dict[str, Any] = field(default_factory=dict)  # e.g. {"kind": "mutation", "parent": 3}


@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored: its proposal, lifecycle and (when done) its result."""

    id: int
    genotype: Genotype
    status: TrialStatus
    origin: dict[str, Any]
    attempts: int = 0
    result: TrialResult | None = None
    error: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def hash(self) -> str:
        return self.genotype.hash

    @property
    def done(self) -> bool:
        return self.status is TrialStatus.DONE

    @property
    def finished(self) -> bool:
        return self.status in (TrialStatus.DONE, TrialStatus.FAILED)
