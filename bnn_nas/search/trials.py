"""Trial records: the immutable rows that controllers read and the store keeps."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from bnn_nas.space.genotype import Genotype


class TrialStatus(str, enum.Enum):
    """Lifecycle: pending -> running -> done | failed (running -> pending when reclaimed)."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


# the fields of the fixed record a result was before metrics were named (store schema 1)
LEGACY_FIELDS = (
    "accuracy", "loss", "train_loss", "bops", "flops", "ops", "binary_params", "float_params",
    "bytes", "train_seconds",
)  # fmt: skip


@dataclass(frozen=True, init=False)
class TrialResult:
    """What evaluating one candidate measured: named metrics (accuracy on search-valid,
    never test; loss, train_loss, ops, bops, flops, params, bytes, train_seconds, ...).

    ``result["ops"]`` and ``result.ops`` both read a metric; objectives read them by name.
    """

    metrics: dict[str, float]

    def __init__(self, metrics: Mapping[str, float] | float | None = None, *legacy: float,
                 **named: float) -> None:  # fmt: skip
        """``TrialResult({"accuracy": 0.5, "ops": 2e6})``; the record's older forms still
        work: ``TrialResult(accuracy=0.5, ops=2e6, ...)`` and its ten positional fields."""
        if isinstance(metrics, Mapping):
            if legacy:
                raise TypeError("TrialResult takes one dict of named metrics")
            values = dict(metrics)
        elif metrics is None and not legacy:
            values = dict(named.pop("metrics", None) or {})
        else:
            positional = (metrics, *legacy)
            if len(positional) > len(LEGACY_FIELDS):
                raise TypeError(f"TrialResult takes at most {len(LEGACY_FIELDS)} positional values")
            values = dict(zip(LEGACY_FIELDS, positional, strict=False))
        values.update(named)
        object.__setattr__(self, "metrics", values)

    @classmethod
    def of(cls, **metrics: float) -> TrialResult:
        return cls(dict(metrics))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        """Either stored form: ``{"metrics": {...}}`` (schema 2) or the flat metrics (1)."""
        metrics = data["metrics"] if isinstance(data.get("metrics"), dict) else data
        return cls(dict(metrics))

    def __getitem__(self, name: str) -> float:
        return self.metrics[name]

    def __getattr__(self, name: str) -> float:  # result.accuracy, result.ops, ...
        metrics = self.__dict__.get("metrics")
        if metrics is not None and name in metrics:
            return metrics[name]
        raise AttributeError(name)

    def get(self, name: str, default: float | None = None) -> float | None:
        return self.metrics.get(name, default)

    def to_dict(self) -> dict[str, Any]:
        """The flat metrics (CSV rows, worker messages)."""
        return dict(self.metrics)


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


@dataclass(frozen=True)
class CompletedTrial(TrialRecord):
    """A trial that finished successfully: its ``result`` is never None."""

    result: TrialResult = None  # type: ignore[assignment]  # checked below

    def __post_init__(self) -> None:
        if self.status is not TrialStatus.DONE or self.result is None:
            raise ValueError(f"trial {self.id} is {self.status.value}, not done with a result")


def completed(records: Iterable[TrialRecord]) -> list[CompletedTrial]:
    """The done trials of ``records`` (with their results), in the given order."""
    return [
        r if isinstance(r, CompletedTrial)
        else CompletedTrial(**{f.name: getattr(r, f.name) for f in fields(r)})
        for r in records
        if r.done and r.result is not None
    ]  # fmt: skip
