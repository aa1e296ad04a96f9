"""Seconds per search trial and trials per GPU-hour, for several trials per device.

A trial is a bnn_darts candidate (8 cells x 16 channels) trained ``--epochs`` on the
search-train half of CIFAR-10 (25k images) and scored on search-valid. For each K in
``--trials-per-device`` the chosen executor (``streams``: K threads on their own CUDA
streams in this process; ``processes``: K worker processes) runs ``K * --rounds`` trials
on every listed device; the clock runs from the first submission to the last result.

    python -m benchmarks.trial --data-root $DATA [--executor streams|processes]
        [--trials-per-device 1 4 8] [--devices cuda:0] [--rounds 2] [--epochs 5]
        [--reference ".anchors/lean_trial.py --procs 1 --graph --streams 8 --batch 256"]

``--reference``: a script (and its arguments) run after the trials, in the same call, whose
last output line is a JSON object with ``by_procs: {K: {trials_per_gpu_hour: N}}`` (the
lean stand-alone trial of ../shared/anchors does this); its best figure and the ratio of
ours to it join the JSON line. Its output is parsed as JSON data, never run as code.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import time

import torch

from benchmarks.common import emit
from bnn_nas.config import apply_overrides, config_from_dict
from bnn_nas.search.engine import format_error
from bnn_nas.search.evaluator import build_evaluator
from bnn_nas.search.executors import Executor
from bnn_nas.search.processes import ProcessExecutor
from bnn_nas.search.streams import StreamExecutor
from bnn_nas.search.trials import TrialRecord, TrialStatus
from bnn_nas.space.search_space import load_search_space
from bnn_nas.train import resolve_device


def make(kind: str, config, devices: list[str], per_device: int) -> Executor:
    if kind == "processes":
        return ProcessExecutor(config, (), devices, per_device)
    evaluator = build_evaluator(config, torch.device(devices[0]))
    evaluators = [evaluator.on_device(d) for d in devices]
    return StreamExecutor(evaluators, per_device, format_error)


def run(kind: str, config, devices: list[str], per_device: int, trials: int) -> dict:
    space = load_search_space("bnn_darts")
    rng = random.Random(per_device)
    genotypes = [space.random_sample(rng) for _ in range(trials)]
    with make(kind, config, devices, per_device) as executor:
        tic = time.perf_counter()
        queue = list(enumerate(genotypes, start=1))
        seconds = []
        while queue or executor.in_flight():
            while queue and executor.in_flight() < executor.capacity:
                trial_id, g = queue.pop(0)
                executor.submit(TrialRecord(trial_id, g, TrialStatus.RUNNING, {}))
            outcome = executor.next_outcome()
            if outcome.result is None:
                print(f"trial {outcome.trial_id}: {outcome.error}", file=sys.stderr)
            else:
                seconds.append(outcome.result.train_seconds)
        wall = time.perf_counter() - tic
    return {
        "executor": kind,
        "devices": len(devices),
        "trials_per_device": per_device,
        "trials": trials,
        "wall_s": round(wall, 1),
        "mean_trial_s": round(sum(seconds) / max(1, len(seconds)), 2),
        "trials_per_hour": round(len(seconds) * 3600 / wall),
    }


def reference_trials_per_hour(output: str) -> float:
    """The best ``trials_per_gpu_hour`` of a reference's last JSON line (``by_procs``)."""
    for line in reversed(output.strip().splitlines()):
        try:
            figures = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(figures, dict) and isinstance(figures.get("by_procs"), dict):
            rates = [row.get("trials_per_gpu_hour") for row in figures["by_procs"].values()
                     if isinstance(row, dict)]  # fmt: skip
            rates = [float(r) for r in rates if isinstance(r, int | float)]
            if rates:
                return max(rates)
    raise SystemExit("the reference printed no JSON line with by_procs trials_per_gpu_hour")


def run_reference(command: str) -> float:
    """Run the reference script (``python SCRIPT ARGS``) and return its best trials/hour."""
    argv = [sys.executable, *shlex.split(command)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"the reference {command!r} failed (exit {done.returncode}): {tail[0]}")
    return reference_trials_per_hour(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="image-folder CIFAR-10 (default: packaged sample)")
    parser.add_argument("--executor", choices=["streams", "processes"], default="streams")
    parser.add_argument("--trials-per-device", type=int, nargs="+", default=[1])
    parser.add_argument("--devices", nargs="+", default=None)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. train.channels_last=false")  # fmt: skip
    parser.add_argument("--reference", metavar="'SCRIPT ARGS'",
                        help="a reference trial script run in the same call (see above)")
    args = parser.parse_args()
    device = resolve_device("auto")
    devices = args.devices or [str(device)]
    data = (
        {"name": "image_folder", "root": args.data_root, "valid_fraction": 0.5}
        if args.data_root
        else {"name": "cifar10_sample", "valid_fraction": 0.5}
    )
    base = {
        "search_space": "bnn_darts",
        "data": data,
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": 0.002,
                  "eval_batch_size": 1000},
    }  # fmt: skip
    config = config_from_dict(apply_overrides(base, tuple(args.set), "--set"), "benchmarks.trial")
    rows = []
    for k in args.trials_per_device:
        row = run(args.executor, config, devices, k, k * len(devices) * args.rounds)
        print(row, file=sys.stderr)
        rows.append(row)
    best = max(rows, key=lambda r: r["trials_per_hour"])
    reference = {}
    if args.reference:
        rate = run_reference(args.reference)
        ratio = best["trials_per_hour"] / rate
        print(f"reference {rate:.0f} trials/hour; ours {best['trials_per_hour']} "
              f"({ratio:.2f}x)", file=sys.stderr)
        reference = {"reference": args.reference, "reference_trials_per_hour": rate,
                     "over_reference": round(ratio, 3)}  # fmt: skip
    emit("trial", device, epochs=args.epochs, batch_size=args.batch_size, overrides=args.set,
         device_list=devices, rows=rows, best=best, **reference)  # fmt: skip


if __name__ == "__main__":
    main()
