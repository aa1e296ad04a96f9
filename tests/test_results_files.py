"""A run directory's results as files: pareto.csv after every trial (equal to the front
computed from trials.csv by brute force), trials.csv's origin and parent columns."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from bnn_nas.config import config_from_dict
from bnn_nas.search.engine import SearchRun
from bnn_nas.search.export import split_origin
from bnn_nas.search.store import SQLiteStore
from bnn_nas.space.search_space import load_search_space
from tests.test_faults import SPACE, FakeExecutor

TWO = [{"name": "accuracy", "direction": "maximize"}, {"name": "ops", "direction": "minimize"}]
THREE = [*TWO, {"name": "bops", "direction": "minimize"}]
LIMITED = [{"name": "accuracy", "direction": "maximize", "limit": 0.3},
           {"name": "ops", "direction": "minimize"}]  # fmt: skip


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def brute_force_front(rows: list[dict[str, str]], objectives: list[dict]) -> set[int]:
    """Ids of the done rows (within every limit) that no other such row dominates."""

    def turned(row):  # smaller is better everywhere
        return [(-1 if o["direction"] == "maximize" else 1) * float(row[o["name"]])
                for o in objectives]  # fmt: skip

    def within(row):
        return all(
            o.get("limit") is None
            or (float(row[o["name"]]) >= o["limit"] if o["direction"] == "maximize"
                else float(row[o["name"]]) <= o["limit"])
            for o in objectives
        )  # fmt: skip

    done = [r for r in rows if r["status"] == "done" and within(r)]
    return {
        int(r["id"]) for r in done
        if not any(all(a <= b for a, b in zip(turned(s), turned(r), strict=True))
                   and turned(s) != turned(r) for s in done)
    }  # fmt: skip


def search_in(run_dir: Path, objectives: list[dict], budget: int, on_trial) -> None:
    cfg = config_from_dict({
        "seed": 3, "device": "cpu", "search_space": SPACE,
        "search": {"controller": "evolution", "budget": budget, "population": 3,
                   "sample_size": 2, "objectives": objectives},
    })  # fmt: skip
    run_dir.mkdir()
    store = SQLiteStore(run_dir / "trials.sqlite")
    try:
        search = SearchRun(cfg, load_search_space(cfg.search_space), store, lambda g: 1.0,
                           run_dir)  # fmt: skip
        search.prepare()
        search.run(FakeExecutor(), on_trial)
    finally:
        store.close()


@pytest.mark.parametrize("objectives", [TWO, THREE, LIMITED], ids=["two", "three", "limit"])
def test_pareto_csv_after_every_trial_is_the_front_of_trials_csv(tmp_path, objectives):
    run = tmp_path / "run"
    seen = []

    def check(progress) -> None:
        rows = read_csv(run / "trials.csv")
        front = read_csv(run / "pareto.csv")
        assert len(rows) >= progress.finished
        ids = [int(r["id"]) for r in front]
        assert len(ids) == len(set(ids))
        assert set(ids) == brute_force_front(rows, objectives)
        by_id = {r["id"]: r for r in rows}
        assert all(r == by_id[r["id"]] for r in front)  # the same row as in trials.csv
        seen.append(len(ids))

    search_in(run, objectives, 12, check)
    assert len(seen) == 12
    rows = read_csv(run / "trials.csv")
    if objectives is LIMITED:  # trials past the limit were left out
        assert any(float(r["accuracy"]) < 0.3 for r in rows)
    else:
        assert max(seen) >= 2  # a front of more than one trial was checked
    if objectives is TWO:  # ordered by ascending OPs
        ops = [float(r["ops"]) for r in read_csv(run / "pareto.csv")]
        assert ops == sorted(ops)


def test_trials_csv_has_origin_kind_and_parent_columns(tmp_path):
    run = tmp_path / "run"
    search_in(run, TWO, 8, None)
    rows = read_csv(run / "trials.csv")
    assert list(rows[0])[:6] == ["id", "status", "hash", "attempts", "origin", "parent"]
    kinds = {r["origin"] for r in rows}
    assert "random" in kinds and kinds <= {"random", "mutation"}
    for row in rows:
        if row["origin"] == "random":
            assert row["parent"] == ""
        else:  # a mutation of an earlier trial
            assert 1 <= int(row["parent"]) < int(row["id"])


def test_split_origin_reads_old_and_new_rows():
    assert split_origin("mutation of 3") == ("mutation", "3")  # trials.csv before the split
    assert split_origin("mutation", "3") == ("mutation", "3")
    assert split_origin("random", "") == ("random", "")
    assert split_origin("random") == ("random", "")
