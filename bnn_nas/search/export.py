"""Readable files regenerated from the store: trials.csv and friends."""

from __future__ import annotations

from pathlib import Path

from bnn_nas.io import write_csv_atomic
from bnn_nas.objectives import METRICS
from bnn_nas.search.trials import TrialRecord

RESULT_FIELDS = tuple(METRICS)  # known metrics in this order; any others after, by name
CSV_FIELDS = ("id", "status", "hash", "attempts", "origin", *RESULT_FIELDS, "error", "genotype")


def result_fields(records: list[TrialRecord]) -> tuple[str, ...]:
    """The metric columns: the known ones, then any other metric a trial has."""
    seen = {k for r in records if r.result is not None for k in r.result.metrics}
    return (*RESULT_FIELDS, *sorted(seen - set(RESULT_FIELDS)))


def trial_row(record: TrialRecord, fields: tuple[str, ...] = RESULT_FIELDS) -> dict[str, object]:
    result = record.result.to_dict() if record.result is not None else {}
    origin = record.origin.get("kind", "")
    if "parent" in record.origin:
        origin += f" of {record.origin['parent']}"
    return {
        "id": record.id,
        "status": record.status.value,
        "hash": record.hash,
        "attempts": record.attempts,
        "origin": origin,
        **{key: result.get(key, "") for key in fields},
        "error": record.error or "",
        "genotype": str(record.genotype),
    }


def write_trials_csv(path: Path, records: list[TrialRecord]) -> None:
    """One row per trial, replaced atomically."""
    fields = result_fields(records)
    header = ("id", "status", "hash", "attempts", "origin", *fields, "error", "genotype")
    write_csv_atomic(path, header, (trial_row(r, fields) for r in records))
