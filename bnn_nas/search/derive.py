"""Choosing the final genotype from a finished (or running) search."""

from __future__ import annotations

import math
from pathlib import Path

from bnn_nas.errors import CheckpointError, ConfigError
from bnn_nas.search.pareto import pareto_front
from bnn_nas.search.store import STORE_FILE, SQLiteStore
from bnn_nas.search.trials import TrialRecord


def open_results(run_dir: Path) -> list[TrialRecord]:
    """Every trial of a run directory's store (read only)."""
    path = Path(run_dir) / STORE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"no search results in {run_dir} ({STORE_FILE} missing); run bnn-nas search first"
        )
    store = SQLiteStore(path, read_only=True)
    try:
        return store.trials()
    finally:
        store.close()


def candidates(records: list[TrialRecord], max_ops: float | None) -> list[TrialRecord]:
    done = [r for r in records if r.done and r.result is not None]
    if not done:
        raise ConfigError("the search has no finished trial yet; let it run longer")
    within = [r for r in done if max_ops is None or r.result.ops <= max_ops]  # type: ignore[union-attr]
    if not within:
        cheapest = min(r.result.ops for r in done)  # type: ignore[union-attr]
        raise ConfigError(
            f"no finished trial has OPs <= {max_ops:.4g}; the cheapest has {cheapest:.4g}"
        )
    return within


def rank_by_accuracy(records: list[TrialRecord]) -> list[TrialRecord]:
    """Most accurate first; ties go to fewer OPs, then the earlier trial."""
    return sorted(records, key=lambda r: (-r.result.accuracy, r.result.ops, r.id))  # type: ignore[union-attr]


def front(records: list[TrialRecord]) -> list[TrialRecord]:
    """The accuracy-vs-OPs Pareto front, by ascending OPs."""
    points = [(r.result.accuracy, r.result.ops) for r in records]  # type: ignore[union-attr]
    return [records[i] for i in pareto_front(points)]


def knee(front_records: list[TrialRecord]) -> TrialRecord:
    """The front point farthest from the chord between its two ends.

    Axes are accuracy and log10(OPs), each scaled to [0, 1] over the front: the point
    where buying more accuracy starts to cost disproportionately many OPs.
    """
    if len(front_records) <= 2:
        return max(front_records, key=lambda r: (r.result.accuracy, -r.id))  # type: ignore[union-attr]
    xs = [math.log10(max(r.result.ops, 1.0)) for r in front_records]  # type: ignore[union-attr]
    ys = [r.result.accuracy for r in front_records]  # type: ignore[union-attr]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    pts = [((x - x0) / sx, (y - y0) / sy) for x, y in zip(xs, ys, strict=True)]
    (ax, ay), (bx, by) = pts[0], pts[-1]
    norm = math.hypot(bx - ax, by - ay) or 1.0

    def distance(p: tuple[float, float]) -> float:
        return abs((bx - ax) * (ay - p[1]) - (ax - p[0]) * (by - ay)) / norm

    best = max(range(len(pts)), key=lambda i: (distance(pts[i]), ys[i]))
    return front_records[best]


def choose(
    records: list[TrialRecord], by: str, max_ops: float | None
) -> tuple[TrialRecord, list[TrialRecord]]:
    """(chosen trial, ranking shown to the user) for ``by`` in {accuracy, pareto}."""
    pool = candidates(records, max_ops)
    if by == "accuracy":
        ranking = rank_by_accuracy(pool)
        return ranking[0], ranking
    if by == "pareto":
        ranking = front(pool)
        return knee(ranking), ranking
    raise ConfigError(f"--by {by!r} is not one of accuracy, pareto")
