"""Readable files regenerated from the store: trials.csv, pareto.csv and friends.

``origin`` is how a trial was proposed (random, mutation, ...) and ``parent`` the trial it
came from (empty for a random one).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from bnn_nas.io import write_csv_atomic
from bnn_nas.objectives import DEFAULT_OBJECTIVES, METRICS, Objective
from bnn_nas.rundir import run_dir_in_use
from bnn_nas.search.derive import best_trial, pareto_trials
from bnn_nas.search.trials import TrialRecord, TrialResult
from bnn_nas.space.genotype import Genotype

RESULT_FIELDS = tuple(METRICS)  # known metrics in this order; any others after, by name
HEAD_FIELDS = ("id", "status", "hash", "attempts", "origin", "parent")
CSV_FIELDS = (*HEAD_FIELDS, *RESULT_FIELDS, "error", "genotype")
RUNG_FIELDS = ("rung", "epochs", "train_size")  # a multi-fidelity trial's rung and budget


def parent_of(origin: dict[str, Any]) -> str:
    """The parent trial(s) of an origin as a CSV cell: "3", "3 7" (two parents) or ""."""
    parent = origin.get("parent", origin.get("parents", ""))
    if isinstance(parent, list | tuple):
        return " ".join(str(p) for p in parent)
    return str(parent)


def result_fields(records: list[TrialRecord]) -> tuple[str, ...]:
    """The metric columns: the known ones, then any other metric a trial has."""
    seen = {k for r in records if r.result is not None for k in r.result.metrics}
    return (*RESULT_FIELDS, *sorted(seen - set(RESULT_FIELDS)))


def csv_header(records: list[TrialRecord]) -> tuple[str, ...]:
    """trials.csv's columns for ``records``: a multi-fidelity search's have ``rung``,
    ``epochs`` and ``train_size`` (its budget) after ``parent``; then the metric columns
    (:func:`result_fields`), error, genotype."""
    rung = RUNG_FIELDS if any("rung" in r.origin for r in records) else ()
    return (*HEAD_FIELDS, *rung, *result_fields(records), "error", "genotype")


def trial_row(record: TrialRecord, fields: tuple[str, ...] = RESULT_FIELDS) -> dict[str, object]:
    result = record.result.to_dict() if record.result is not None else {}
    return {
        "id": record.id,
        "status": record.status.value,
        "hash": record.hash,
        "attempts": record.attempts,
        "origin": record.origin.get("kind", ""),
        "parent": parent_of(record.origin),
        **_rung_cells(record.origin),
        **{key: result.get(key, "") for key in fields},
        "error": record.error or "",
        "genotype": str(record.genotype),
    }


def _rung_cells(origin: dict[str, Any]) -> dict[str, object]:
    """rung, epochs, train_size of a multi-fidelity trial (nothing for other trials)."""
    if "rung" not in origin:
        return {}
    budget = origin.get("budget") or {}
    return {"rung": origin["rung"], "epochs": budget.get("epochs", ""),
            "train_size": budget.get("train_size", "")}  # fmt: skip


def write_trials_csv(path: Path, records: list[TrialRecord]) -> None:
    """One row per trial, replaced atomically."""
    fields = result_fields(records)
    write_csv_atomic(path, csv_header(records), (trial_row(r, fields) for r in records))


def write_pareto_csv(
    path: Path, records: list[TrialRecord], objectives: Sequence[Objective] = DEFAULT_OBJECTIVES
) -> None:
    """The Pareto front of the finished trials (within every objective's limit) over the
    search's objectives, in trials.csv's columns, ordered as ``derive --by pareto`` shows
    it (accuracy vs OPs: by ascending OPs), of a multi-fidelity search at the highest rung
    reached; replaced atomically, header only while no trial has finished."""
    front = pareto_trials(records, objectives)
    fields = result_fields(records)
    write_csv_atomic(path, csv_header(records), (trial_row(r, fields) for r in front))


def _plain(value: Any) -> Any:
    """A stored value as JSON data: genotypes as their text, results as their metrics."""
    if isinstance(value, Genotype):
        return str(value)
    if isinstance(value, TrialResult):
        return dict(value.metrics)
    if isinstance(value, enum.Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def trial_data(record: TrialRecord) -> dict[str, Any]:
    """Every field of a trial record as JSON data (``result``: its metrics or None;
    ``origin``: the stored mapping), plus ``hash``, ``kind`` and ``parent`` read from it and
    ``curve``: the result's per-epoch points (empty for trials stored without one)."""
    data = _plain(record)
    origin = record.origin
    parent = origin.get("parent", origin.get("parents"))
    curve = record.result.curve if record.result is not None else ()
    data.update(hash=record.hash, kind=origin.get("kind", ""), parent=parent,
                curve=[p.to_dict() for p in curve])  # fmt: skip
    return data


def run_data(
    run_dir: Path | str,
    records: list[TrialRecord],
    objectives: Sequence[Objective],
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """A search's state as JSON data (``bnn-nas status --format json``): its objectives,
    budget, counts by status, whether it has finished, whether a search runs in it now
    (``active``: else its running trials were interrupted and a resume reruns them), its
    best trial and Pareto front (ids), and every trial (:func:`trial_data`)."""

    budget = (config.get("search") or {}).get("budget")
    counts = {s: sum(r.status.value == s for r in records)
              for s in ("done", "failed", "running", "pending")}  # fmt: skip
    best = best_trial(records, objectives)
    finished = counts["done"] + counts["failed"]
    return {
        "run_dir": str(run_dir),
        "objectives": [_plain(o) for o in objectives],
        "budget": budget,
        "counts": counts,
        "finished": budget is not None and finished >= budget
        and not counts["running"] and not counts["pending"],
        "active": run_dir_in_use(Path(run_dir)),
        "best": best.id if best is not None else None,
        "pareto": [r.id for r in pareto_trials(records, objectives)],
        "trials": [trial_data(r) for r in records],
    }
