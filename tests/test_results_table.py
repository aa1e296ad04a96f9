"""The end-to-end results table: search time as a union of trial intervals, report rows."""

from __future__ import annotations

import json
import random

import pytest

from benchmarks.results_table import busy_seconds, table
from bnn_nas.search.trials import TrialRecord, TrialStatus
from bnn_nas.space.search_space import load_search_space


def record(i: int, status: TrialStatus, start: float | None, end: float | None) -> TrialRecord:
    genotype = load_search_space("tiny").random_sample(random.Random(i))
    return TrialRecord(i, genotype, status, {}, started_at=start, finished_at=end)


def test_busy_time_counts_overlapping_trials_once():
    records = [
        record(1, TrialStatus.DONE, 0.0, 10.0),
        record(2, TrialStatus.DONE, 5.0, 12.0),  # overlaps the first
        record(3, TrialStatus.FAILED, 6.0, 8.0),  # inside both
        record(4, TrialStatus.DONE, 20.0, 25.0),
        record(5, TrialStatus.RUNNING, 30.0, None),  # not finished: not counted
    ]
    assert busy_seconds(records) == 17.0
    assert busy_seconds([]) == 0.0


def test_table_has_a_row_per_run_with_its_report(tmp_path):
    report = {
        "model": "resnet18", "family": "xnor", "genotype": None, "epochs": 100,
        "test_accuracy": 0.8765, "train_seconds": 150.0, "ops": 1.03e7,
        "binary_params": 10_985_472, "float_params": 17_610, "bytes": 1_443_624.0,
    }  # fmt: skip
    (tmp_path / "r18").mkdir()
    (tmp_path / "r18" / "report.json").write_text(json.dumps(report))
    text = table([tmp_path / "r18"], None, 1)
    row = text.splitlines()[2]
    assert row == "| resnet18 xnor | 100 | 87.65% | 10.3M | 11.0M / 17.6k | 1.44 MB | 2.5 |"


def test_searched_row_adds_the_search_time_from_the_store(tmp_path, monkeypatch):
    from itertools import count

    from bnn_nas.search.store import STORE_FILE, SQLiteStore
    from bnn_nas.search.trials import Proposal
    from tests.test_controllers import fake_result

    clock = count(start=0.0, step=60.0)  # every store timestamp is a minute after the last
    monkeypatch.setattr("bnn_nas.search.store.time.time", lambda: next(clock))
    search = tmp_path / "search"
    search.mkdir()
    store = SQLiteStore(search / STORE_FILE)
    space = load_search_space("tiny")
    ids = store.add([Proposal(space.random_sample(random.Random(i))) for i in range(2)])
    for trial_id in ids:  # one after the other: started at t, finished at t + 60 s
        store.start(trial_id)
        store.finish(trial_id, fake_result(0.5))
    store.close()
    report = {
        "model": "cells", "family": "xnor", "genotype": "Genotype(...)", "epochs": 100,
        "test_accuracy": 0.9, "train_seconds": 300.0, "ops": 9.98e6,
        "binary_params": 3_550_000, "float_params": 22_000, "bytes": 530_000.0,
    }  # fmt: skip
    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "report.json").write_text(json.dumps(report))
    row = table([tmp_path / "final"], search, 1).splitlines()[2]
    # two one-minute trials + 5 minutes of training
    assert row.startswith("| searched (derived genotype) | 100 | 90.00% | 9.98M |")
    assert row.endswith("| 7.0 (2.0 search) |")


def _run(tmp_path, name: str, accuracy: float, seconds: float, lr: float = 0.004, **changes):
    report = {
        "model": "resnet18", "family": "bireal", "genotype": None, "epochs": 143,
        "test_accuracy": accuracy, "train_seconds": seconds, "ops": 1.66e7,
        "binary_params": 10_985_472, "float_params": 192_000, "bytes": 2_140_000.0,
        "device": "NVIDIA H200", **changes,
    }  # fmt: skip
    run_dir = tmp_path / name
    run_dir.mkdir()
    (run_dir / "report.json").write_text(json.dumps(report))
    (run_dir / "config.yaml").write_text(f"seed: 1\nfinal: {{lr: {lr}, checkpoint_every: 1}}\n")
    return str(run_dir)


def test_seeds_of_one_network_make_one_row_with_their_mean_and_range(tmp_path):
    seeds = [(0.8935, 290), (0.8953, 300), (0.8907, 310)]
    runs = [_run(tmp_path, f"s{i}", acc, sec) for i, (acc, sec) in enumerate(seeds)]
    row = table([",".join(runs)], None, 1).splitlines()[2]
    assert row.startswith("| resnet18 bireal | 143 | 89.32% (mean of 3 seeds, 89.07-89.53) |")
    assert row.endswith("| 5.0 |")  # mean training time, 300 s


def test_seed_rows_refuse_another_network_or_schedule(tmp_path):
    base = _run(tmp_path, "base", 0.89, 300)
    other_net = _run(tmp_path, "xnor", 0.87, 300, family="xnor", ops=1.03e7)
    with pytest.raises(SystemExit, match=r"another network than .*base \(family, ops\)"):
        table([f"{base},{other_net}"], None, 1)
    other_lr = _run(tmp_path, "lr", 0.89, 300, lr=0.002)
    with pytest.raises(SystemExit, match="another final schedule"):
        table([f"{base},{other_lr}"], None, 1)
