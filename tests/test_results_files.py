"""A run directory's results as files: pareto.csv after every trial (equal to the front
computed from trials.csv by brute force), trials.csv's origin and parent columns."""

from __future__ import annotations

import csv
import itertools
import json
import random
import shutil
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import bnn_nas
from bnn_nas.cli import main
from bnn_nas.config import config_from_dict, config_to_dict
from bnn_nas.errors import ConfigError
from bnn_nas.objectives import objectives_from
from bnn_nas.search.derive import best_trial
from bnn_nas.search.engine import SearchRun
from bnn_nas.search.store import SQLiteStore
from bnn_nas.space.search_space import load_search_space
from tests.test_faults import SPACE, FakeExecutor

ROOT = Path(__file__).resolve().parents[1]
SEARCH_CIFAR = ROOT / "docs" / "results" / "search-cifar"  # a store of schema 1

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
    if done and done[0].get("rung") not in (None, ""):  # multi-fidelity: the highest rung
        top = max(int(r["rung"]) for r in done)
        done = [r for r in done if int(r["rung"]) == top]
    return {
        int(r["id"]) for r in done
        if not any(all(a <= b for a, b in zip(turned(s), turned(r), strict=True))
                   and turned(s) != turned(r) for s in done)
    }  # fmt: skip


def search_in(run_dir: Path, objectives: list[dict], budget: int, on_trial,
              executor: FakeExecutor | None = None) -> None:  # fmt: skip
    """A search with made-up scores (no training), its config in the store as `search`
    keeps it."""
    cfg = config_from_dict({
        "seed": 3, "device": "cpu", "search_space": SPACE,
        "search": {"controller": "evolution", "budget": budget, "population": 3,
                   "sample_size": 2, "objectives": objectives},
    })  # fmt: skip
    run_dir.mkdir(exist_ok=True)
    store = SQLiteStore(run_dir / "trials.sqlite")
    try:
        store.set_meta("config", config_to_dict(cfg))
        search = SearchRun(cfg, load_search_space(cfg.search_space), store, lambda g: 1.0,
                           run_dir)  # fmt: skip
        search.prepare()
        search.run(executor or FakeExecutor(), on_trial)
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


def status(*args: str):
    return CliRunner().invoke(main, ["status", *args])


def check_matches_the_store(data: dict, run_dir: Path) -> None:
    store = SQLiteStore(run_dir / "trials.sqlite", read_only=True)
    try:
        records, config = store.trials(), store.get_meta("config") or {}
    finally:
        store.close()
    objectives = objectives_from((config.get("search") or {}).get("objectives"))
    assert data["objectives"] == [
        {"name": o.name, "direction": o.direction, "limit": o.limit} for o in objectives
    ]
    assert data["budget"] == config["search"]["budget"]
    assert len(data["trials"]) == len(records)
    for got, record in zip(data["trials"], records, strict=True):
        assert got["id"] == record.id and got["hash"] == record.hash
        assert got["status"] == record.status.value and got["attempts"] == record.attempts
        assert got["genotype"] == str(record.genotype) and got["origin"] == record.origin
        assert got["kind"] == record.origin.get("kind")
        assert got["parent"] == record.origin.get("parent")
        assert got["result"] == (record.result.metrics if record.result else None)
        assert got["curve"] == ([p.to_dict() for p in record.result.curve]
                                if record.result else [])  # fmt: skip
        assert got["error"] == record.error
        for when in ("created_at", "started_at", "finished_at"):
            assert got[when] == getattr(record, when)
    assert data["counts"] == {s: sum(r.status.value == s for r in records)
                              for s in ("done", "failed", "running", "pending")}  # fmt: skip
    best = best_trial(records, objectives)
    assert data["best"] == (best.id if best else None)


def test_status_json_parses_and_matches_the_store(tmp_path):
    run = tmp_path / "run"
    search_in(run, THREE, 8, None)
    result = status(str(run), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    check_matches_the_store(data, run)
    assert data["finished"] is True and data["counts"]["done"] == 8
    assert data["pareto"] == [int(r["id"]) for r in read_csv(run / "pareto.csv")]


def test_status_json_of_an_old_store(tmp_path):
    copy = tmp_path / "search-cifar"
    shutil.copytree(SEARCH_CIFAR, copy)
    result = status(str(copy), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    check_matches_the_store(data, copy)
    assert len(data["trials"]) == 160 and data["best"] == 153 and data["finished"] is True


def test_status_csv_is_trials_csv(tmp_path):
    run = tmp_path / "run"
    search_in(run, TWO, 6, None)
    result = status(str(run), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.output == (run / "trials.csv").read_text()


def set_budget(run_dir: Path, budget: int) -> None:
    store = SQLiteStore(run_dir / "trials.sqlite")
    config = store.get_meta("config")
    config["search"]["budget"] = budget
    store.set_meta("config", config)
    store.close()


class SlowExecutor(FakeExecutor):
    """Finishes a trial every ``delay`` seconds, so a watcher sees the store change."""

    def __init__(self, delay: float) -> None:
        super().__init__(capacity=1)
        self.delay = delay

    def next_outcome(self):
        time.sleep(self.delay)
        return super().next_outcome()


def test_status_watch_follows_a_running_search_until_it_ends(tmp_path):
    run = tmp_path / "run"
    search_in(run, TWO, 1, None)  # the store exists, one trial done
    set_budget(run, 4)  # the search resumes with a larger budget
    worker = threading.Thread(target=search_in, args=(run, TWO, 4, None, SlowExecutor(0.3)))
    worker.start()
    try:
        result = status(str(run), "--format", "json", "--watch", "--every", "0.1")
    finally:
        worker.join()
    assert result.exit_code == 0, result.output
    looks = [json.loads(line) for line in result.output.splitlines()]
    assert len(looks) >= 2  # shown again as the store changed, once per change
    assert looks[-1]["finished"] is True and looks[-1]["counts"]["done"] == 4
    assert not any(look["finished"] for look in looks[:-1])
    assert all(a != b for a, b in itertools.pairwise(looks))
    check_matches_the_store(looks[-1], run)


def test_status_watch_stops_on_ctrl_c_with_130(tmp_path, monkeypatch):
    run = tmp_path / "run"
    search_in(run, TWO, 2, None)
    set_budget(run, 5)  # more to come: the watch goes on

    def ctrl_c(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", ctrl_c)
    result = status(str(run), "--watch")
    assert result.exit_code == 130
    assert "2 done" in result.output
    assert "interrupted; watch it again with: bnn-nas status" in result.output


def test_a_multi_fidelity_search_has_rungs_in_trials_csv_and_its_top_front_in_pareto_csv(
    tmp_path,
):
    from tests.test_successive_halving import ScriptedExecutor, make_config

    cfg = make_config(13)
    run = tmp_path / "run"
    run.mkdir()
    store = SQLiteStore(run / "trials.sqlite")
    seen = []

    def check(progress) -> None:
        rows = read_csv(run / "trials.csv")
        front = read_csv(run / "pareto.csv")
        assert {int(r["id"]) for r in front} == brute_force_front(rows, TWO)
        seen.append({r["rung"] for r in front})

    try:
        store.set_meta("config", config_to_dict(cfg))
        search = SearchRun(cfg, load_search_space(cfg.search_space), store, lambda g: 1.0,
                           run)  # fmt: skip
        search.prepare()
        search.run(ScriptedExecutor(2), check)
    finally:
        store.close()
    rows = read_csv(run / "trials.csv")
    assert list(rows[0])[:7] == ["id", "status", "hash", "attempts", "origin", "parent", "rung"]
    assert len({r["rung"] for r in rows}) >= 2 and seen[-1] == {max(r["rung"] for r in rows)}
    results = bnn_nas.load_run(run)
    assert [t.id for t in results.pareto()] == [int(r["id"]) for r in read_csv(run / "pareto.csv")]
    assert results.best().id == best_trial(list(results.trials), results.objectives).id
    assert results.derive().id == results.best().id
    everything = results.pareto(rung="all")
    assert {t.id for t in everything} == brute_force_front(
        [{**r, "rung": ""} for r in rows], TWO)  # fmt: skip
    low = results.best(rung=0)
    assert low.origin["rung"] == 0
    with pytest.raises(ConfigError, match="no finished trial at rung 9"):
        results.best(rung=9)
    csv_out = status(str(run), "--format", "csv").output
    assert csv_out == (run / "trials.csv").read_text()


def test_status_shows_a_killed_searchs_running_trial_as_interrupted(tmp_path):
    """A SIGKILL leaves its trial 'running' in the store; with no search holding the run
    directory's lock, status says it was interrupted (a resume reruns it). While a
    process holds the lock, the same row is running."""
    import subprocess
    import sys

    from bnn_nas.search.trials import Proposal

    run = tmp_path / "run"
    search_in(run, TWO, 3, None)
    set_budget(run, 4)
    store = SQLiteStore(run / "trials.sqlite")
    genotype = load_search_space(SPACE).random_sample(random.Random(99))
    (new,) = store.add([Proposal(genotype, {"kind": "random"})])
    store.start(new)  # as the killed search left it
    store.close()
    result = status(str(run))
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.split()[:1] == [str(new)])
    assert row.split()[1] == "stopped"
    assert "3 done, 1 interrupted (a resume reruns them)" in result.output
    assert json.loads(status(str(run), "--format", "json").output)["active"] is False

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bnn_nas.rundir import lock_run_dir; "
         f"lock_run_dir({str(run)!r}); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        result = status(str(run))
        row = next(line for line in result.output.splitlines() if line.split()[:1] == [str(new)])
        assert row.split()[1] == "running" and "3 done, 1 running" in result.output
        assert json.loads(status(str(run), "--format", "json").output)["active"] is True
    finally:
        holder.kill()
        holder.wait()
