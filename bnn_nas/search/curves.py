"""Learning curves of a search's trials, out of the store: curves.csv and TensorBoard.

Every done trial's per-epoch metrics live in the store (``TrialResult.curve``, store
schema 3); the files here are regenerated from it as trials finish, so a resumed search
keeps them and a kill loses nothing the store had:

- ``RUN/curves.csv``: one row per (trial, epoch): ``trial`` and the
  :data:`~bnn_nas.search.trials.CURVE_FIELDS` (eval columns empty where an epoch was not
  evaluated), replaced atomically after every trial;
- with ``train.tensorboard`` (``bnn-nas search --tensorboard``): ``RUN/tensorboard/trial-N``
  per done trial, scalars ``train/loss``, ``train/acc``, ``eval/loss``, ``eval/acc``,
  ``lr`` and ``seconds`` at step = the epoch (0-based), for
  ``tensorboard --logdir RUN/tensorboard``. A trial's folder is written once, whole,
  when the trial is done (from the store, whichever process or machine trained it); a
  done trial without its folder (one that finished before ``--tensorboard`` was given, or
  a kill between the store and the files) gets it at the next trial's end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from bnn_nas.io import write_csv_atomic
from bnn_nas.search.trials import CURVE_FIELDS, TrialRecord

CURVES_CSV = "curves.csv"
TENSORBOARD = "tensorboard"  # the folder, as final training's (train/tensorboard_log.py)
CSV_FIELDS = ("trial", *CURVE_FIELDS)
# TensorBoard tag of each curve field (epoch is the step)
TAGS = {
    "train_loss": "train/loss", "train_acc": "train/acc", "eval_loss": "eval/loss",
    "eval_acc": "eval/acc", "lr": "lr", "seconds": "seconds",
}  # fmt: skip


def curve_rows(records: Iterable[TrialRecord]) -> list[dict[str, object]]:
    """The rows of curves.csv: every epoch of every trial that has a curve, by trial id."""
    rows = []
    for record in records:
        if record.result is None:
            continue
        for point in record.result.curve:
            values = point.to_dict()
            rows.append({"trial": record.id,
                         **{k: "" if values[k] is None else values[k] for k in CURVE_FIELDS}})
    return rows


def write_curves_csv(path: Path, records: Iterable[TrialRecord]) -> None:
    write_csv_atomic(path, CSV_FIELDS, curve_rows(records))


def trial_folder(run_dir: Path, trial_id: int) -> Path:
    return Path(run_dir) / TENSORBOARD / f"trial-{trial_id}"


def write_trial_board(run_dir: Path, record: TrialRecord) -> Path:
    """One trial's scalars into RUN/tensorboard/trial-N, written beside and renamed into
    place (a kill leaves no half folder that would pass for the trial's)."""
    from bnn_nas.train.tensorboard_log import summary_writer_class

    assert record.result is not None
    target = trial_folder(run_dir, record.id)
    staging = target.with_name(f".{target.name}.{os.getpid()}.part")
    shutil.rmtree(staging, ignore_errors=True)
    writer = summary_writer_class("train.tensorboard")(str(staging))
    try:
        for point in record.result.curve:
            values = point.to_dict()
            for name, tag in TAGS.items():
                if values[name] is not None:
                    writer.add_scalar(tag, values[name], point.epoch)
    finally:
        writer.close()
    staging.replace(target)
    return target


def write_missing_boards(run_dir: Path, records: Iterable[TrialRecord]) -> list[Path]:
    """TensorBoard folders for the done trials that have a curve and no folder yet (and
    away with the staging folders a kill left: one search writes a run directory)."""
    for stale in (Path(run_dir) / TENSORBOARD).glob(".trial-*.part"):
        shutil.rmtree(stale, ignore_errors=True)
    written = []
    for record in records:
        has_curve = record.done and record.result is not None and record.result.curve
        if has_curve and not trial_folder(run_dir, record.id).is_dir():
            written.append(write_trial_board(run_dir, record))
    return written


def write_curve_files(run_dir: Path, records: list[TrialRecord], *, tensorboard: bool) -> None:
    """curves.csv, and the missing trials' TensorBoard folders with ``tensorboard``."""
    write_curves_csv(Path(run_dir) / CURVES_CSV, records)
    if tensorboard:
        write_missing_boards(run_dir, records)
