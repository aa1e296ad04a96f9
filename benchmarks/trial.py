"""Seconds per search trial and trials per GPU-hour, for several trials per device.

A trial is a bnn_darts candidate (8 cells x 16 channels) trained ``--epochs`` on the
search-train half of CIFAR-10 (25k images) and scored on search-valid. For each K in
``--trials-per-device`` the chosen executor (``streams``: K threads on their own CUDA
streams in this process; ``processes``: K worker processes) runs ``K * --rounds`` trials
on every listed device; the clock runs from the first submission to the last result.

    python -m benchmarks.trial --data-root $DATA [--executor streams|processes]
        [--trials-per-device 1 4 8] [--devices cuda:0] [--rounds 2] [--epochs 5]
"""

from __future__ import annotations

import argparse
import random
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
    emit("trial", device, epochs=args.epochs, batch_size=args.batch_size, overrides=args.set,
         device_list=devices, rows=rows, best=best)  # fmt: skip


if __name__ == "__main__":
    main()
