"""Choosing the final genotype from a finished (or running) search.

Everything reads the search's objectives by name (``search.objectives`` of the stored
config; accuracy up and OPs down for searches that predate them): "most accurate" is the
best trial by the primary objective, "pareto" the knee of the non-dominated front, and
limits (an objective's ``limit``, ``--max-ops``) drop trials before either. A
multi-fidelity search's trials of different rungs trained under different budgets: the
choice is made among the highest rung reached (``rung="all"``: every trial; a number: that
rung).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bnn_nas.errors import CheckpointError, ConfigError
from bnn_nas.objectives import (
    DEFAULT_OBJECTIVES,
    Objective,
    axis_value,
    directions,
    objectives_from,
    points,
    ranking_key,
    with_limit,
    written_apart,
)
from bnn_nas.search.budget import rung_of, top_rung
from bnn_nas.search.pareto import pareto_front
from bnn_nas.search.store import STORE_FILE, SQLiteStore
from bnn_nas.search.trials import CompletedTrial, TrialRecord, completed


def open_results(run_dir: Path) -> list[TrialRecord]:
    """Every trial of a run directory's store (read only)."""
    return open_run(run_dir)[0]


def open_run(run_dir: Path) -> tuple[list[TrialRecord], tuple[Objective, ...]]:
    """Every trial of a run directory's store and the search's objectives (read only)."""
    records, objectives, _ = open_run_config(run_dir)
    return records, objectives


def open_run_config(
    run_dir: Path,
) -> tuple[list[TrialRecord], tuple[Objective, ...], dict[str, Any]]:
    """:func:`open_run` and the search's stored config (a mapping; empty when it has none)."""
    path = Path(run_dir) / STORE_FILE
    if not path.is_file():
        raise CheckpointError(
            f"no search results in {run_dir} ({STORE_FILE} missing); run bnn-nas search first"
        )
    store = SQLiteStore(path, read_only=True)
    try:
        config = store.get_meta("config") or {}
        objectives = objectives_from((config.get("search") or {}).get("objectives"))
        return store.trials(), objectives, config
    finally:
        store.close()


def best_trial(
    records: list[TrialRecord], objectives: Sequence[Objective] = DEFAULT_OBJECTIVES
) -> TrialRecord | None:
    """The best finished trial by the primary objective, ties by the others, then the
    earlier trial (of a multi-fidelity search: at the highest rung reached)."""
    done = top_rung(completed(records))
    return min(
        done, key=lambda r: (*ranking_key(r.result.metrics, objectives), r.id), default=None
    )


def candidates(
    records: list[TrialRecord],
    max_ops: float | None,
    objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
    rung: int | str | None = None,
) -> list[CompletedTrial]:
    """Finished trials within every limit (``max_ops`` is a limit on ops); of a
    multi-fidelity search, those at the highest rung reached among them (``rung``: None or
    ``"top"`` that, ``"all"`` every rung, a number that rung)."""
    done = completed(records)
    if not done:
        raise ConfigError("the search has no finished trial yet; let it run longer")
    limited = [o for o in with_limit(objectives, "ops", max_ops) if o.limit is not None]
    within = [r for r in done if all(o.within(r.result.metrics) for o in limited)]
    if not within:
        o = next(o for o in limited if not all(o.within(r.result.metrics) for r in done))
        values = [o.value(r.result.metrics) for r in done]
        best = max(values) if o.maximize else min(values)
        limit_text, best_text = written_apart(o.name, o.limit, best)
        if o.name == "ops" and not o.maximize:
            raise ConfigError(
                f"no finished trial has OPs <= {limit_text}; the cheapest has {best_text}"
            )
        relation = ">=" if o.maximize else "<="
        raise ConfigError(
            f"no finished trial has {o.name} {relation} {limit_text}; the best has {best_text}"
        )
    return at_rung(within, rung)


def at_rung(records: list[CompletedTrial], rung: int | str | None) -> list[CompletedTrial]:
    """``records`` at the highest rung among them (``rung`` None or ``"top"``), every one
    (``"all"``) or those at rung N (a one-line error when none is)."""
    if rung is None or rung == "top":
        return top_rung(records)
    if rung == "all":
        return records
    chosen = [r for r in records if rung_of(r) == int(rung)]
    if not chosen and records:
        reached = sorted({x for x in map(rung_of, records) if x is not None})
        raise ConfigError(
            f"no finished trial at rung {rung}; "
            + (f"rungs reached: {', '.join(map(str, reached))}" if reached
               else "this search has no rungs (it is not multi-fidelity)")
        )  # fmt: skip
    return chosen


def rank_by_accuracy(
    records: Sequence[CompletedTrial], objectives: Sequence[Objective] = DEFAULT_OBJECTIVES
) -> list[CompletedTrial]:
    """Best first by the primary objective (accuracy); ties go to the next objectives
    (fewer OPs), then the earlier trial."""
    return sorted(records, key=lambda r: (*ranking_key(r.result.metrics, objectives), r.id))


def front(
    records: Sequence[CompletedTrial], objectives: Sequence[Objective] = DEFAULT_OBJECTIVES
) -> list[CompletedTrial]:
    """The non-dominated trials, ordered by the second objective (accuracy vs OPs: by
    ascending OPs)."""
    values = points([r.result.metrics for r in records], objectives)
    return [records[i] for i in pareto_front(values, directions(objectives))]


def pareto_trials(
    records: list[TrialRecord],
    objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
    rung: int | str | None = None,
) -> list[CompletedTrial]:
    """The front of the finished trials that keep every objective's limit (empty while
    none has finished or none keeps them), of a multi-fidelity search at the highest rung
    reached (``rung``: as for :func:`candidates`): what pareto.csv holds."""
    within = [r for r in completed(records)
              if all(o.within(r.result.metrics) for o in objectives)]  # fmt: skip
    pool = at_rung(within, rung)
    return front(pool, objectives) if pool else []


def knee(
    front_records: Sequence[CompletedTrial], objectives: Sequence[Objective] = DEFAULT_OBJECTIVES
) -> CompletedTrial:
    """The front point farthest from the chord (two objectives) or the hyperplane (more)
    through the front's extremes.

    Each objective is scaled to [0, 1] over the front, on a log10 axis for the metrics that
    span orders of magnitude (OPs, params, bytes, ...): for accuracy vs OPs, the point where
    buying more accuracy starts to cost disproportionately many OPs. Ties go to the better
    primary objective.
    """
    objectives = tuple(objectives)
    primary = objectives[0]

    def best_primary(records: Sequence[CompletedTrial]) -> CompletedTrial:
        return min(records, key=lambda r: (primary.loss(r.result.metrics), r.id))

    if len(front_records) <= 2 or len(objectives) == 1:
        return best_primary(front_records)
    axes = [
        [axis_value(o.name, o.value(r.result.metrics)) for o in objectives]
        for r in front_records
    ]
    ys = [a[0] for a in axes]
    if len(objectives) == 2:
        xs = [a[1] for a in axes]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        sx, sy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
        pts = [((x - x0) / sx, (y - y0) / sy) for x, y in zip(xs, ys, strict=True)]
        (ax, ay), (bx, by) = pts[0], pts[-1]
        norm = math.hypot(bx - ax, by - ay) or 1.0

        def distance(i: int) -> float:
            p = pts[i]
            return abs((bx - ax) * (ay - p[1]) - (ax - p[0]) * (by - ay)) / norm

    else:
        distance = _hyperplane_distance(axes, objectives)
    best = max(range(len(front_records)), key=lambda i: (distance(i), -primary.loss(
        front_records[i].result.metrics)))  # fmt: skip
    return front_records[best]


def _hyperplane_distance(axes: list[list[float]], objectives: Sequence[Objective]):
    """Distance to the hyperplane through each objective's best point, in the scaled
    "larger is better" space; when those points do not span one, distance to the ideal
    point, negated (nearest wins)."""
    import numpy as np

    a = np.asarray(axes, dtype=float)
    a = np.where([o.maximize for o in objectives], a, -a)  # larger is better everywhere
    low, high = a.min(axis=0), a.max(axis=0)
    scaled = (a - low) / np.where(high > low, high - low, 1.0)
    extremes = scaled[np.argmax(scaled, axis=0)]  # one row per objective
    ones = np.ones(len(objectives))
    try:
        normal = np.linalg.solve(extremes, ones)  # the plane normal . x = 1 through them
    except np.linalg.LinAlgError:
        normal = None
    if normal is None or not np.all(np.isfinite(normal)) or not np.linalg.norm(normal):
        ideal = np.ones(len(objectives))
        return lambda i: -float(np.linalg.norm(scaled[i] - ideal))
    norm = float(np.linalg.norm(normal))
    return lambda i: float(abs(scaled[i] @ normal - 1.0) / norm)


def choose(
    records: list[TrialRecord],
    by: str,
    max_ops: float | None,
    objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
    rung: int | str | None = None,
) -> tuple[CompletedTrial, list[CompletedTrial]]:
    """(chosen trial, ranking shown to the user) for ``by`` in {accuracy, pareto}, among
    the highest rung reached unless ``rung`` says otherwise (see :func:`candidates`)."""
    pool = candidates(records, max_ops, objectives, rung)
    if by == "accuracy":
        ranking = rank_by_accuracy(pool, objectives)
        return ranking[0], ranking
    if by == "pareto":
        ranking = front(pool, objectives)
        return knee(ranking, objectives), ranking
    raise ConfigError(f"--by {by!r} is not one of accuracy, pareto")


def write_derived(
    chosen: CompletedTrial,
    target: Path,
    by: str,
    max_ops: float | None = None,
    objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
) -> Any:
    """Write a derived genotype as `bnn-nas derive` does: ``target`` (YAML: the genotype,
    its hash, trial, how it was chosen, its search metrics and objectives, the cells), the
    DARTS text beside it (``.txt``) and a drawing (``.png``, or DOT without a drawer).
    Returns the drawing (its ``path`` and ``note``)."""
    from bnn_nas.io import dump_yaml, write_text_atomic
    from bnn_nas.space.drawing import render

    target = Path(target)
    m = chosen.result.metrics
    document = {
        "genotype": str(chosen.genotype),
        "hash": chosen.hash,
        "trial": chosen.id,
        "derived_by": by if max_ops is None else f"{by}, max_ops={max_ops:g}",
        # a multi-fidelity search's pick: the rung it was scored at, and that rung's budget
        **({"rung": chosen.origin["rung"], "budget": chosen.origin.get("budget")}
           if "rung" in chosen.origin else {}),
        "search_valid_accuracy": m.get("accuracy"),
        "ops": m.get("ops"),
        "bops": m.get("bops"),
        "flops": m.get("flops"),
        "params": m.get("params", m.get("binary_params", 0) + m.get("float_params", 0)),
        "bytes": m.get("bytes"),
        "objectives": [
            {"name": o.name, "direction": o.direction, "value": o.value(m)} for o in objectives
        ],
        "cells": chosen.genotype.to_dict(),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, dump_yaml(document))
    write_text_atomic(target.with_suffix(".txt"), str(chosen.genotype) + "\n")
    return render(chosen.genotype, target.with_suffix(".png"))
