"""`bnn-nas compare`: training runs side by side (the README's end-to-end table).

Reads each training run's ``report.json`` (from ``bnn-nas train``) and, with a search
run directory, its ``trials.sqlite``: test accuracy, OPs, params (binary / float),
deployed bytes and device-minutes per network. The searched network's minutes include
its search: the union of its trials' [start, end] intervals (trials side by side on one
GPU count once) times the search's GPU count. Runs of one network with other seeds,
joined by commas (``RUN,RUN,...``), make one row: the mean accuracy, its range and the
seed count, and the mean training time.

The minutes column names the device the runs trained on (report.json's ``device``):
``GPU-min`` or ``CPU-min`` when every row agrees, else ``minutes`` with each cell's device
after it (none where a report does not say). A row of seeds names every device its
runs trained on (``NVIDIA H200, NVIDIA A100``) and claims a kind only when each run's
report says the same one; seeds on a CPU and on a GPU are refused (their mean minutes
would be neither's).
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bnn_nas.errors import CheckpointError, ConfigError
from bnn_nas.units import count, size

COLUMNS = ("network", "epochs", "test acc", "OPs", "params (binary / float)", "bytes", "GPU-min")
# what bnn_nas.train.run.device_name records for the CPU: platform.processor() or .machine()
# (x86_64, aarch64, arm, i386; Windows: "Intel64 Family 6 Model 85 ..."), else "cpu"; a GPU
# is its CUDA name (NVIDIA H200)
_CPU_NAMES = re.compile(
    r"x86_64|amd64|x64|i[3-6]86|aarch64|arm\w*|ppc\w*|s390x?|riscv\w*|mips\w*|cpu"
    r"|\w+ Family \d+ Model .*", re.IGNORECASE,
)  # fmt: skip
# what a row reads of a report.json (and "model" for a baseline, one without a genotype)
REPORT_KEYS = ("test_accuracy", "train_seconds", "epochs", "ops", "binary_params",
               "float_params", "bytes")  # fmt: skip


def read_report(run_dir: Path | str) -> dict[str, Any]:
    """A training run's report.json; a one-line error when it has none."""
    path = Path(run_dir) / "report.json"
    if not path.is_file():
        raise CheckpointError(
            f"no report.json in {run_dir}; compare takes `bnn-nas train` run directories "
            "(a search's goes after --search)"
        )
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not a training report ({err})") from None
    if not isinstance(report, dict):
        raise CheckpointError(f"{path} is not a training report (not a JSON object)")
    needed = (*REPORT_KEYS, *(() if report.get("genotype") else ("model",)))
    missing = [key for key in needed if key not in report]
    if missing:
        raise CheckpointError(f"{path} is not a training report (no {', '.join(missing)})")
    return report


def network_name(report: dict) -> str:
    if report.get("genotype"):
        return "searched (derived genotype)"
    return f"{report['model']} {report.get('family') or ''}".strip()


def device_kind(report: dict) -> str | None:
    """``CPU`` or ``GPU``: what a training run's report says it trained on (None: it does
    not say)."""
    name = report.get("device")
    if not isinstance(name, str) or not name.strip():
        return None
    return "CPU" if _CPU_NAMES.fullmatch(name.strip()) else "GPU"


def seed_runs(reports: list[dict], names: list[str]) -> dict:
    """One report for runs of one network and schedule that differ only in seed: the
    mean accuracy and training time, and ``accuracies`` for the row to show their spread
    (settings that do not change what a run computes may differ: changed_settings)."""
    from bnn_nas.train.final_network import saved_run_config
    from bnn_nas.train.settings_diff import changed_settings

    first, first_config = reports[0], saved_run_config(Path(names[0]))
    same = ("model", "family", "genotype", "epochs", "ops", "binary_params", "float_params")
    for report, name in zip(reports[1:], names[1:], strict=True):
        differs = [key for key in same if report.get(key) != first.get(key)]
        if differs:
            raise ConfigError(f"{name} is another network than {names[0]} ({', '.join(differs)})")
        config = saved_run_config(Path(name))
        if first_config is not None and config is not None:
            schedule = [k for k in changed_settings(first_config, config) if k.startswith("final.")]
            if schedule:
                raise ConfigError(
                    f"{name} trained with another final schedule than {names[0]} "
                    f"({', '.join(schedule)})"
                )
    kinds = {device_kind(r) for r in reports} - {None}
    if len(kinds) > 1:  # a mean of CPU and GPU minutes is no figure of either
        cpu = next(n for r, n in zip(reports, names, strict=True) if device_kind(r) == "CPU")
        gpu = next(n for r, n in zip(reports, names, strict=True) if device_kind(r) == "GPU")
        raise ConfigError(
            f"{cpu} trained on a CPU and {gpu} on a GPU; seeds of one row train on one kind "
            "of device (give them as separate rows)"
        )
    devices = list(dict.fromkeys(r.get("device") or "unknown device" for r in reports))
    accuracies = [r["test_accuracy"] for r in reports]
    return {
        **first,
        # every device the seeds trained on (one name when they agree)
        "device": ", ".join(devices) if len(devices) > 1 else first.get("device"),
        "device_kinds": [device_kind(r) for r in reports],
        "test_accuracy": statistics.mean(accuracies),
        "train_seconds": statistics.mean(r["train_seconds"] for r in reports),
        "accuracies": accuracies,
    }


def accuracy_cell(report: dict) -> str:
    mean = f"{100 * report['test_accuracy']:.2f}%"
    accuracies = report.get("accuracies", [])
    if len(accuracies) < 2:
        return mean
    low, high = 100 * min(accuracies), 100 * max(accuracies)
    return f"{mean} (mean of {len(accuracies)} seeds, {low:.2f}-{high:.2f})"


def search_minutes(search: Path | str | None, search_gpus: int = 1) -> float:
    """GPU-minutes of a search: the union of its trials' run times times its GPUs."""
    if search is None:
        return 0.0
    from bnn_nas.search.derive import open_results
    from bnn_nas.search.progress import busy_seconds

    return busy_seconds(open_results(Path(search))) * search_gpus / 60


def compare_rows(
    runs: Sequence[str | Path], search: Path | str | None = None, search_gpus: int = 1
) -> list[dict[str, Any]]:
    """One row per network (``"DIR,DIR"``: seeds of one network): its name, epochs, mean
    test accuracy (and each seed's), cost, training and search minutes, run directories."""
    searched = search_minutes(search, search_gpus)
    rows = []
    for run in runs:
        names = str(run).split(",")
        report = seed_runs([read_report(name) for name in names], names)
        train_minutes = report["train_seconds"] / 60
        with_search = bool(report.get("genotype")) and search is not None
        minutes = searched if with_search else 0.0
        rows.append({
            "network": network_name(report),
            "runs": names,
            "epochs": report["epochs"],
            "test_accuracy": report["test_accuracy"],
            "accuracies": report["accuracies"],
            "ops": report["ops"],
            "binary_params": report["binary_params"],
            "float_params": report["float_params"],
            "bytes": report["bytes"],
            "device": report.get("device"),
            # CPU | GPU | None: what the minutes ran on (None when a seed's report does not say)
            "device_kind": _row_kind(report),
            "train_minutes": train_minutes,
            "search_minutes": minutes,
            "gpu_minutes": train_minutes + minutes,
            "with_search": with_search,  # the searched network's minutes include its search
        })  # fmt: skip
    return rows


def _row_kind(report: dict) -> str | None:
    """The one kind of device every seed of a row trained on, else None."""
    kinds = set(report.get("device_kinds") or [device_kind(report)])
    return kinds.pop() if len(kinds) == 1 else None


def minutes_header(rows: Sequence[dict[str, Any]]) -> str:
    """``GPU-min`` / ``CPU-min`` when every row ran on that kind of device, else ``minutes``."""
    kinds = {row.get("device_kind") for row in rows}
    kind = kinds.pop() if len(kinds) == 1 else None
    return f"{kind}-min" if kind else "minutes"


def _cells(row: dict[str, Any], tagged: bool = False) -> list[str]:
    minutes = f"{row['train_minutes']:.1f}"
    if row["with_search"]:
        minutes = f"{row['gpu_minutes']:.1f} ({row['search_minutes']:.1f} search)"
    if tagged and row.get("device_kind"):  # rows on different devices: each names its own
        minutes += f" {row['device_kind']}"
    return [
        row["network"], str(row["epochs"]), accuracy_cell(row), count(row["ops"]),
        f"{count(row['binary_params'])} / {count(row['float_params'])}",
        size(row["bytes"]), minutes,
    ]  # fmt: skip  # counts and sizes as every command writes them (bnn_nas/units.py)


def table(runs: Sequence[str | Path], search: Path | str | None = None, search_gpus: int = 1,
          rows: list[dict[str, Any]] | None = None) -> str:  # fmt: skip
    """The markdown table of the README's end-to-end results."""
    rows = compare_rows(runs, search, search_gpus) if rows is None else rows
    header = minutes_header(rows)
    columns = (*COLUMNS[:-1], header)
    lines = [f"| {' | '.join(columns)} |", "|" + "---|" * len(columns)]
    lines += [f"| {' | '.join(_cells(row, header == 'minutes'))} |" for row in rows]
    return "\n".join(lines)
