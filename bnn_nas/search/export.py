"""Readable files regenerated from the store: trials.csv, pareto.csv and friends.

``origin`` is how a trial was proposed (random, mutation, ...) and ``parent`` the trial it
came from (empty for a random one); trials.csv files written before the split hold both in
``origin`` ("mutation of 3"): :func:`split_origin` reads either form.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bnn_nas.io import write_csv_atomic
from bnn_nas.objectives import DEFAULT_OBJECTIVES, METRICS, Objective
from bnn_nas.search.trials import TrialRecord

RESULT_FIELDS = tuple(METRICS)  # known metrics in this order; any others after, by name
HEAD_FIELDS = ("id", "status", "hash", "attempts", "origin", "parent")
CSV_FIELDS = (*HEAD_FIELDS, *RESULT_FIELDS, "error", "genotype")


def parent_of(origin: dict[str, Any]) -> str:
    """The parent trial(s) of an origin as a CSV cell: "3", "3 7" (two parents) or ""."""
    parent = origin.get("parent", origin.get("parents", ""))
    if isinstance(parent, list | tuple):
        return " ".join(str(p) for p in parent)
    return str(parent)


def split_origin(origin: str, parent: str | None = None) -> tuple[str, str]:
    """(kind, parent) of a trials.csv row: today's two columns, or the one packed column
    of files written before ("mutation of 3" -> ("mutation", "3"))."""
    if parent is None and " of " in origin:
        kind, _, packed = origin.partition(" of ")
        return kind, packed
    return origin, parent or ""


def result_fields(records: list[TrialRecord]) -> tuple[str, ...]:
    """The metric columns: the known ones, then any other metric a trial has."""
    seen = {k for r in records if r.result is not None for k in r.result.metrics}
    return (*RESULT_FIELDS, *sorted(seen - set(RESULT_FIELDS)))


def trial_row(record: TrialRecord, fields: tuple[str, ...] = RESULT_FIELDS) -> dict[str, object]:
    result = record.result.to_dict() if record.result is not None else {}
    return {
        "id": record.id,
        "status": record.status.value,
        "hash": record.hash,
        "attempts": record.attempts,
        "origin": record.origin.get("kind", ""),
        "parent": parent_of(record.origin),
        **{key: result.get(key, "") for key in fields},
        "error": record.error or "",
        "genotype": str(record.genotype),
    }


def write_trials_csv(path: Path, records: list[TrialRecord]) -> None:
    """One row per trial, replaced atomically."""
    fields = result_fields(records)
    header = (*HEAD_FIELDS, *fields, "error", "genotype")
    write_csv_atomic(path, header, (trial_row(r, fields) for r in records))


def write_pareto_csv(
    path: Path, records: list[TrialRecord], objectives: Sequence[Objective] = DEFAULT_OBJECTIVES
) -> None:
    """The Pareto front of the finished trials (within every objective's limit) over the
    search's objectives, in trials.csv's columns, ordered as ``derive --by pareto`` shows
    it (accuracy vs OPs: by ascending OPs); replaced atomically, header only while no
    trial has finished."""
    from bnn_nas.search.derive import pareto_trials

    front = pareto_trials(records, objectives)
    fields = result_fields(records)
    header = (*HEAD_FIELDS, *fields, "error", "genotype")
    write_csv_atomic(path, header, (trial_row(r, fields) for r in front))
