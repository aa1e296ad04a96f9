"""Readable files regenerated from the store: trials.csv and friends."""

from __future__ import annotations

from pathlib import Path

from bnn_nas.io import write_csv_atomic
from bnn_nas.search.trials import TrialRecord, TrialResult

RESULT_FIELDS = tuple(TrialResult.__dataclass_fields__)
CSV_FIELDS = ("id", "status", "hash", "attempts", "origin", *RESULT_FIELDS, "error", "genotype")


def trial_row(record: TrialRecord) -> dict[str, object]:
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
        **{key: result.get(key, "") for key in RESULT_FIELDS},
        "error": record.error or "",
        "genotype": str(record.genotype),
    }


def write_trials_csv(path: Path, records: list[TrialRecord]) -> None:
    """One row per trial, replaced atomically."""
    write_csv_atomic(path, CSV_FIELDS, (trial_row(r) for r in records))
