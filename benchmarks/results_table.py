"""The README's end-to-end table from run directories: searched network vs baselines.

Reads each training run's ``report.json`` (from ``bnn-nas train``) and, with
``--search``, the search's ``trials.sqlite``; prints one markdown table: test accuracy,
OPs, params (binary / float), deployed bytes and GPU-minutes. The searched network's
GPU-minutes include its search: the union of its trials' [start, end] intervals (trials
run side by side on one GPU) times ``--search-gpus``.

    python -m benchmarks.results_table runs/final-searched runs/final-r18-xnor \\
        runs/final-r18-bireal --search runs/cifar
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bnn_nas.search.derive import open_results
from bnn_nas.search.trials import TrialRecord


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


def table(run_dirs: list[Path], search: Path | None, search_gpus: int) -> str:
    search_minutes = 0.0
    if search is not None:
        search_minutes = busy_seconds(open_results(search)) * search_gpus / 60
    lines = [
        "| network | epochs | test acc | OPs | params (binary / float) | bytes | GPU-min |",
        "|---|---|---|---|---|---|---|",
    ]
    for run_dir in run_dirs:
        report = json.loads((run_dir / "report.json").read_text())
        train_minutes = report["train_seconds"] / 60
        if report.get("genotype") and search is not None:
            gpu = f"{search_minutes + train_minutes:.1f} ({search_minutes:.1f} search)"
        else:
            gpu = f"{train_minutes:.1f}"
        lines.append(
            f"| {network_name(report)} | {report['epochs']} | "
            f"{100 * report['test_accuracy']:.2f}% | {report['ops']:.3g} | "
            f"{report['binary_params'] / 1e6:.2f}M / {report['float_params'] / 1e3:.0f}K | "
            f"{report['bytes'] / 1e6:.2f} MB | {gpu} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bnn-nas train run directories")
    parser.add_argument("--search", type=Path, help="the search run directory")
    parser.add_argument("--search-gpus", type=int, default=1)
    args = parser.parse_args()
    print(table(args.runs, args.search, args.search_gpus))


if __name__ == "__main__":
    main()
