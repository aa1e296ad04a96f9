"""The README's end-to-end table from run directories: searched network vs baselines.

Reads each training run's ``report.json`` (from ``bnn-nas train``) and, with
``--search``, the search's ``trials.sqlite``; prints one markdown table: test accuracy,
OPs, params (binary / float), deployed bytes and GPU-minutes. The searched network's
GPU-minutes include its search: the union of its trials' [start, end] intervals (trials
run side by side on one GPU) times ``--search-gpus``. Runs of one network with other
seeds, joined by commas, make one row: mean accuracy, its range and the seed count, and
the mean training time.

    python -m benchmarks.results_table runs/final-searched runs/final-r18-xnor \\
        runs/r18-bireal-s0,runs/r18-bireal-s1,runs/r18-bireal-s2 --search runs/cifar
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from bnn_nas.search.derive import open_results
from bnn_nas.search.trials import TrialRecord
from bnn_nas.train.run import changed_settings, saved_run_config


def busy_seconds(records: list[TrialRecord]) -> float:
    """Length of the union of the finished trials' [started_at, finished_at] intervals."""
    spans = sorted(
        (r.started_at, r.finished_at)
        for r in records
        if r.finished and r.started_at is not None and r.finished_at is not None
    )
    total, end = 0.0, float("-inf")
    for start, finish in spans:
        if finish <= end:
            continue
        total += finish - max(start, end)
        end = finish
    return total


def network_name(report: dict) -> str:
    if report.get("genotype"):
        return "searched (derived genotype)"
    return f"{report['model']} {report.get('family') or ''}".strip()


def seed_runs(reports: list[dict], names: list[str]) -> dict:
    """One report for runs of one network and schedule that differ only in seed: the
    mean accuracy and training time, and ``accuracies`` for the row to show their spread
    (settings that do not change what a run computes may differ: changed_settings)."""
    first, first_config = reports[0], saved_run_config(Path(names[0]))
    same = ("model", "family", "genotype", "epochs", "ops", "binary_params", "float_params")
    for report, name in zip(reports[1:], names[1:], strict=True):
        differs = [key for key in same if report.get(key) != first.get(key)]
        if differs:
            raise SystemExit(f"{name} is another network than {names[0]} ({', '.join(differs)})")
        config = saved_run_config(Path(name))
        if first_config is not None and config is not None:
            schedule = [k for k in changed_settings(first_config, config) if k.startswith("final.")]
            if schedule:
                raise SystemExit(
                    f"{name} trained with another final schedule than {names[0]} "
                    f"({', '.join(schedule)})"
                )
    accuracies = [r["test_accuracy"] for r in reports]
    return {
        **first,
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


def table(runs: list[str | Path], search: Path | None, search_gpus: int) -> str:
    search_minutes = 0.0
    if search is not None:
        search_minutes = busy_seconds(open_results(search)) * search_gpus / 60
    lines = [
        "| network | epochs | test acc | OPs | params (binary / float) | bytes | GPU-min |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        names = str(run).split(",")
        reports = [json.loads((Path(name) / "report.json").read_text()) for name in names]
        report = seed_runs(reports, names)
        train_minutes = report["train_seconds"] / 60
        if report.get("genotype") and search is not None:
            gpu = f"{search_minutes + train_minutes:.1f} ({search_minutes:.1f} search)"
        else:
            gpu = f"{train_minutes:.1f}"
        lines.append(
            f"| {network_name(report)} | {report['epochs']} | {accuracy_cell(report)} | "
            f"{report['ops']:.3g} | "
            f"{report['binary_params'] / 1e6:.2f}M / {report['float_params'] / 1e3:.0f}K | "
            f"{report['bytes'] / 1e6:.2f} MB | {gpu} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="+", help="bnn-nas train run directories (DIR,DIR,...: seeds of one network)"
    )
    parser.add_argument("--search", type=Path, help="the search run directory")
    parser.add_argument("--search-gpus", type=int, default=1)
    args = parser.parse_args()
    print(table(args.runs, args.search, args.search_gpus))


if __name__ == "__main__":
    main()
