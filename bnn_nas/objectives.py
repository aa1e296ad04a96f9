"""Objectives as data: what a search optimises, read from trial metrics by name.

A trial's result is a dict of named metrics (accuracy, loss, ops, bops, flops, params,
bytes, train seconds, ...). ``search.objectives`` lists what to optimise, each
``{name, direction: maximize|minimize, limit}``; the first is the primary one (the
fitness of single-objective controllers, "most accurate" in derive). A limit is the worst
value a trial may have and still count: at least ``limit`` when maximising, at most when
minimising. Pareto sorting, derive, plot, progress and status read objectives from here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bnn_nas import units
from bnn_nas.errors import ConfigError

DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class Metric:
    """How a metric is shown: ``label value`` in progress lines, a column in status."""

    label: str  # progress lines and the best-so-far bar: "acc", "OPs"
    header: str  # status column: "accuracy", "OPs (M)"
    word: str  # status summary line: "accuracy", "OPs"
    scale: float = 1.0  # shown divided by this
    unit: str = ""  # suffix after a scaled value ("M")
    digits: int = 4  # progress lines
    status_digits: int = 4  # status table
    log: bool = False  # spans orders of magnitude: log axis in plots and the knee
    cost: bool = False  # known before training (counted on the built network)
    # how a value is written in lines (bnn_nas/units.py): "count" (2.05M, 98.3k),
    # "size" (43.4 kB), "" (plain, ``digits`` decimals)
    style: str = ""


METRICS: dict[str, Metric] = {
    "accuracy": Metric("acc", "accuracy", "accuracy"),
    "loss": Metric("loss", "loss", "loss"),
    "train_loss": Metric("train_loss", "train loss", "train_loss"),
    "bops": Metric("BOPs", "BOPs (M)", "BOPs", 1e6, "M", 2, 3, log=True, cost=True,
                   style="count"),
    "flops": Metric("FLOPs", "FLOPs (M)", "FLOPs", 1e6, "M", 2, 3, log=True, cost=True,
                    style="count"),
    "ops": Metric("OPs", "OPs (M)", "OPs", 1e6, "M", 2, 3, log=True, cost=True, style="count"),
    "binary_params": Metric(
        "bin_params", "bin params", "binary_params", 1e3, "k", 1, 1, log=True, cost=True,
        style="count",
    ),
    "float_params": Metric(
        "float_params", "float params", "float_params", 1e3, "k", 1, 1, log=True, cost=True,
        style="count",
    ),
    "params": Metric("params", "params (k)", "params", 1e3, "k", 1, 1, log=True, cost=True,
                     style="count"),
    "bytes": Metric("bytes", "kB", "bytes", 1e3, "kB", 1, 1, log=True, cost=True, style="size"),
    "train_seconds": Metric("s", "seconds", "seconds", 1.0, "", 1, 1, log=True),
}
COST_METRICS = tuple(name for name, m in METRICS.items() if m.cost)


def metric(name: str) -> Metric:
    """The display of a metric; a metric bnn-nas does not know is shown plainly."""
    return METRICS.get(name) or Metric(name, name, name, digits=4, status_digits=4)


@dataclass(frozen=True)
class Objective:
    """One objective: a metric name, which way is better, and an optional limit."""

    name: str = ""
    direction: str = "maximize"
    limit: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("an objective needs a name (a trial metric, e.g. accuracy or ops)")
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                f"objective {self.name}: direction {self.direction!r} is not one of "
                f"{', '.join(DIRECTIONS)}"
            )

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def value(self, metrics: Mapping[str, float]) -> float:
        try:
            return float(metrics[self.name])
        except KeyError:
            close = difflib.get_close_matches(self.name, list(metrics), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"objective {self.name!r} is not a metric of the trials; {hint}"
                f"they have: {', '.join(metrics)}"
            ) from None

    def loss(self, metrics: Mapping[str, float]) -> float:
        """The value turned so that smaller is better (maximised ones negated)."""
        v = self.value(metrics)
        return -v if self.maximize else v

    def within(self, metrics: Mapping[str, float]) -> bool:
        if self.limit is None:
            return True
        v = self.value(metrics)
        return v >= self.limit if self.maximize else v <= self.limit


DEFAULT_OBJECTIVES: tuple[Objective, ...] = (
    Objective("accuracy", "maximize"),
    Objective("ops", "minimize"),
)


def check_objectives(objectives: Sequence[Objective]) -> None:
    """At least one, each metric once; unknown metric names suggest known ones."""
    if not objectives:
        raise ConfigError("search.objectives is empty; name at least one, e.g. accuracy")
    seen: set[str] = set()
    for o in objectives:
        if o.name in seen:
            raise ConfigError(f"search.objectives names {o.name} twice")
        seen.add(o.name)
        if o.name not in METRICS:
            close = difflib.get_close_matches(o.name, list(METRICS), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"search.objectives: unknown metric {o.name!r}; {hint}"
                f"known: {', '.join(METRICS)}"
            )


def objectives_from(data: Any) -> tuple[Objective, ...]:
    """Objectives from their stored form (a list of mappings); the default when absent."""
    if not data:
        return DEFAULT_OBJECTIVES
    return tuple(Objective(**dict(item)) for item in data)


def with_limit(
    objectives: Sequence[Objective], name: str, limit: float | None
) -> tuple[Objective, ...]:
    """The objectives with ``name``'s limit set to ``limit`` (when not None); an objective
    that is not listed is added as a pure constraint (minimised, after the others)."""
    if limit is None:
        return tuple(objectives)
    out, found = [], False
    for o in objectives:
        if o.name == name:
            out.append(Objective(o.name, o.direction, limit))
            found = True
        else:
            out.append(o)
    if not found:
        out.append(Objective(name, "minimize", limit))
    return tuple(out)


def points(
    results: Sequence[Mapping[str, float]], objectives: Sequence[Objective]
) -> list[tuple[float, ...]]:
    """Each result's objective values, in objective order (raw, not turned)."""
    return [tuple(o.value(r) for o in objectives) for r in results]


def directions(objectives: Sequence[Objective]) -> tuple[str, ...]:
    return tuple(o.direction for o in objectives)


def ranking_key(metrics: Mapping[str, float], objectives: Sequence[Objective]) -> tuple:
    """Best first when sorted ascending: the primary objective, then the others in order."""
    return tuple(o.loss(metrics) for o in objectives)


def written(name: str, value: float, digits: int | None = None) -> str:
    """``value`` as every line writes it: counts and sizes by bnn_nas.units ("2.13M",
    "98.3k", "43.4 kB"; ``digits``: significant digits, default 3), others with
    ``digits`` decimals (default the metric's)."""
    m = metric(name)
    if m.style == "count":
        return units.count(value, 3 if digits is None else digits)
    if m.style == "size":
        return units.size(value, 3 if digits is None else digits)
    return f"{value / m.scale:.{m.digits if digits is None else digits}f}{m.unit}"


def written_apart(name: str, first: float, second: float) -> tuple[str, str]:
    """Two values of one metric written so that different values read differently: a
    limit of 2,050,000 OPs and a best trial of 2,054,000 are "2.050M" and "2.054M", not
    "2.05M" twice (each gets more digits only where the usual ones would tie)."""
    pair = written(name, first), written(name, second)
    if first == second or pair[0] != pair[1]:
        return pair
    base = 3 if metric(name).style in ("count", "size") else metric(name).digits
    for digits in range(base + 1, base + 10):
        pair = written(name, first, digits), written(name, second, digits)
        if pair[0] != pair[1]:
            break
    return pair


def short(name: str, value: float) -> str:
    """``value`` as progress lines show it, without the label ("2.13M", "0.2460")."""
    return written(name, value)


def labelled(name: str, value: float) -> str:
    """``label value`` as progress lines show it ("acc 0.2460", "OPs 2.13M")."""
    return f"{metric(name).label} {short(name, value)}"


def column(name: str, value: float) -> str:
    """A status table cell (scaled, no unit)."""
    m = metric(name)
    return f"{value / m.scale:.{m.status_digits}f}"


def summary(name: str, value: float) -> str:
    """``word value`` as the status summary line shows it ("accuracy 0.2970", "OPs 2.20M")."""
    m = metric(name)
    return f"{m.word} {written(name, value, m.status_digits)}"


def axis_value(name: str, value: float) -> float:
    """Where a value sits on its axis for the knee: log10 for wide-ranging metrics."""
    return math.log10(max(value, 1.0)) if metric(name).log else value
