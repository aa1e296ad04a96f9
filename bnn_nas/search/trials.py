"""Trial records: the immutable rows that controllers read and the store keeps."""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
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


@dataclass(frozen=True)
class CurvePoint:
    """One epoch of a trial's training (its learning curve): train loss and accuracy,
    search-valid loss and accuracy where that epoch was evaluated (None otherwise), the
    learning rate at the epoch's start and its seconds. ``epoch`` is 0-based."""

    epoch: int
    train_loss: float
    train_acc: float
    eval_loss: float | None
    eval_acc: float | None
    lr: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite_or_none(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CurvePoint:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


CURVE_FIELDS = tuple(f.name for f in fields(CurvePoint))


def _finite_or_none(value: Any) -> Any:
    # JSON has no NaN: a diverged epoch's loss is stored as null
    return None if isinstance(value, float) and not math.isfinite(value) else value


@dataclass(frozen=True, init=False)
class TrialResult:
    """What evaluating one candidate measured: named metrics (accuracy on search-valid,
    never test; loss, train_loss, ops, bops, flops, params, bytes, train_seconds, ...).

    ``result["ops"]`` and ``result.ops`` both read a metric; objectives read them by name.
    ``curve``: the per-epoch metrics of the training that measured them (empty for results
    stored before curves were kept, store schemas 1 and 2).
    """

    metrics: dict[str, float]
    curve: tuple[CurvePoint, ...] = field(default=(), repr=False)

    def __init__(self, metrics: Mapping[str, float] | float | None = None, *legacy: float,
                 curve: Iterable[CurvePoint | Mapping[str, Any]] = (),
                 **named: float) -> None:  # fmt: skip
        """``TrialResult({"accuracy": 0.5, "ops": 2e6})``; the record's older forms still
        work: ``TrialResult(accuracy=0.5, ops=2e6, ...)`` and its ten positional fields.
        ``curve``: :class:`CurvePoint` objects or their dicts."""
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
        points = tuple(p if isinstance(p, CurvePoint) else CurvePoint.from_dict(p) for p in curve)
        object.__setattr__(self, "curve", points)

    @classmethod
    def of(cls, **metrics: float) -> TrialResult:
        return cls(dict(metrics))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialResult:
        """Either form: ``{"metrics": {...}, "curve": [...]}`` (:meth:`to_message`) or the
        flat metrics (:meth:`to_dict`, the store's ``result`` column)."""
        if isinstance(data.get("metrics"), dict):
            return cls(dict(data["metrics"]), curve=data.get("curve") or ())
        return cls(dict(data))

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
        """The flat metrics (CSV rows, the store's ``result`` column)."""
        return dict(self.metrics)

    def to_message(self) -> dict[str, Any]:
        """Metrics and curve, JSON-able (a worker's message; :meth:`from_dict` reads it)."""
        return {"metrics": dict(self.metrics), "curve": [p.to_dict() for p in self.curve]}


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
    # run inside the search process when last started (the `local` and `streams`
    # executors): the search process dying while it runs counts one of its attempts
    in_process: bool = False
    process_deaths: int = 0  # times the search process died while this trial ran in it

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
