"""Readable files regenerated from the store: trials.csv and friends."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for record in records:
            writer.writerow(trial_row(record))
    Path(tmp).replace(path)
