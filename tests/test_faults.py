"""Faults: a search killed anywhere (once, twice in one trial, at start-up), two searches
on one directory, a disk that fills: the end state equals an uninterrupted run.

The fast part kills the search engine in this process at every store write and executor
call it makes (``Killed`` is a BaseException, so no ``except Exception`` runs, as after a
SIGKILL; the SQLite file is then reopened as a new process would). The slow part
(``-m slow``) SIGKILLs real ``bnn-nas search`` processes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from bnn_nas.config import config_from_dict
from bnn_nas.search import loop  # the search loop (SearchRun) writes trials.csv
from bnn_nas.search.curves import write_curves_csv
from bnn_nas.search.engine import SearchRun
from bnn_nas.search.executors import Executor, Outcome, OutcomeKind
from bnn_nas.search.export import write_pareto_csv, write_trials_csv
from bnn_nas.search.store import SQLiteStore
from bnn_nas.search.trials import CurvePoint, TrialRecord, TrialResult
from bnn_nas.space.search_space import load_search_space

SPACE = {"steps": 2, "ops": ["skip_connect", "max_pool_3x3", "xnor_conv_3x3",
                             "bireal_conv_3x3_skip_connect"]}  # fmt: skip
BUDGET = 8
FAULTS = Counter()  # what each test injected, for the README's count


class Killed(BaseException):
    """The search process dies here: like SIGKILL, nothing catches it."""


def fake_result(record: TrialRecord) -> TrialResult:
    """A deterministic score from the genotype alone (no training: this is about the
    engine and the store, not the candidates)."""
    h = int(record.hash[:8], 16)
    curve = [CurvePoint(0, 1.5, (h % 89) / 89, None, None, 0.01, 0.05),
             CurvePoint(1, 1.0, (h % 97) / 97, 1.0, (h % 997) / 997, 0.005, 0.05)]  # fmt: skip
    return TrialResult(accuracy=(h % 997) / 997, loss=1.0, train_loss=1.0, bops=h % 5000,
                       flops=100, ops=1e5 + h % 9973, binary_params=10, float_params=5,
                       bytes=50.0, train_seconds=0.1, curve=curve)  # fmt: skip


class FakeExecutor(Executor):
    """``capacity`` trials in flight, finished in submission order; ``lose`` names trial
    ids whose worker dies (once per listing) instead of finishing."""

    def __init__(self, capacity: int = 2, lose: list[int] | None = None) -> None:
        self.capacity = capacity
        self.queue: list[TrialRecord] = []
        self.lose = list(lose or [])

    def submit(self, trial: TrialRecord) -> None:
        self.queue.append(trial)

    def in_flight(self) -> int:
        return len(self.queue)

    def next_outcome(self) -> Outcome:
        trial = self.queue.pop(0)
        if trial.id in self.lose:
            self.lose.remove(trial.id)
            return Outcome(trial.id, OutcomeKind.LOST, error="worker 0 died (exit code -9)")
        return Outcome(trial.id, OutcomeKind.DONE, result=fake_result(trial))


def config(controller: str = "evolution", max_attempts: int = 2):
    return config_from_dict({
        "seed": 3, "device": "cpu", "search_space": SPACE,
        "search": {"controller": controller, "budget": BUDGET, "population": 3, "sample_size": 2},
        "executor": {"max_attempts": max_attempts},
    })  # fmt: skip


def run_search(path: Path, cfg, executor: Executor) -> None:
    """One search process's life on the store at ``path``: reclaim, rebuild, run."""
    store = SQLiteStore(path)
    try:
        search = SearchRun(cfg, load_search_space(cfg.search_space), store, lambda g: 1.0,
                           path.parent)  # fmt: skip
        search.prepare()
        search.run(executor)
    finally:
        store.close()


def end_state(path: Path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT id, hash, status, origin, attempts, result, error, curve FROM trials "
            "ORDER BY id"
        ).fetchall()
    finally:
        db.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    path = tmp_path_factory.mktemp("straight") / "trials.sqlite"
    run_search(path, config(), FakeExecutor())
    state = end_state(path)
    assert len(state) == BUDGET and {r[2] for r in state} == {"done"}
    return state


POINTS = ["start", "finish", "add", "_update", "set_meta", "next_outcome", "csv", "curves"]


class Injector:
    """Counts calls at the kill points; raises Killed at the ``at``-th call of ``point``."""

    def __init__(self, monkeypatch, point: str, at: int) -> None:
        self.point, self.at, self.calls = point, at, 0
        if point == "next_outcome":
            original = FakeExecutor.next_outcome
            monkeypatch.setattr(FakeExecutor, "next_outcome",
                                lambda s: (self._tick(), original(s))[1])  # fmt: skip
        elif point == "csv":
            original_csv = loop.write_trials_csv
            monkeypatch.setattr(loop, "write_trials_csv",
                                lambda *a: (self._tick(), original_csv(*a))[1])  # fmt: skip
        elif point == "curves":
            original_curves = loop.write_curve_files
            monkeypatch.setattr(loop, "write_curve_files",
                                lambda *a, **k: (self._tick(), original_curves(*a, **k))[1])
        else:
            original_method = getattr(SQLiteStore, point)

            def wrapped(store, *args, **kwargs):
                self._tick()
                return original_method(store, *args, **kwargs)

            monkeypatch.setattr(SQLiteStore, point, wrapped)

    def _tick(self) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise Killed(f"{self.point} #{self.at}")


def kill_then_resume(tmp_path, monkeypatch, kills: list[tuple[str, int]]) -> list[tuple]:
    """Each ``(point, n)``: a search process dies at the n-th call of ``point`` (unless it
    finished first); then one undisturbed resume. Returns the end state."""
    path = tmp_path / "trials.sqlite"
    killed = 0
    for point, at in kills:
        with monkeypatch.context() as patch:
            Injector(patch, point, at)
            try:
                run_search(path, config(), FakeExecutor())
            except Killed:
                killed += 1
    FAULTS["in-process kills"] += killed
    assert killed >= min(len(kills), 8), f"only {killed} of {len(kills)} kills happened"
    run_search(path, config(), FakeExecutor())  # the resume, undisturbed
    store = SQLiteStore(path, read_only=True)  # the files: the store's, all of it
    records = store.trials()
    store.close()
    expected = tmp_path / "expected"
    expected.mkdir()
    write_curves_csv(expected / "curves.csv", records)
    write_trials_csv(expected / "trials.csv", records)
    write_pareto_csv(expected / "pareto.csv", records, config().search.objectives)
    for name in ("curves.csv", "trials.csv", "pareto.csv"):
        assert (tmp_path / name).read_text() == (expected / name).read_text(), name
    return end_state(path)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("at", [1, 2, 3, 5, 8])
def test_a_kill_at_any_point_loses_nothing(tmp_path, monkeypatch, reference, point, at):
    """Killed at the ``at``-th call of each store write or executor call, then resumed:
    the same trials, genotypes, results, and one attempt each (the kill used none)."""
    if point == "set_meta" and at == 1:
        at = 2  # its first call is the store's creation, before the search: see start-up
    state = kill_then_resume(tmp_path, monkeypatch, [(point, at)])
    assert state == reference


@pytest.mark.parametrize("point", ["finish", "next_outcome", "_update"])
def test_killed_twice_and_three_times_in_one_trial(tmp_path, monkeypatch, reference, point):
    """The same trial interrupted again and again (each resume dies at its first chance)
    is never failed for it: a driver's death uses no attempt."""
    state = kill_then_resume(tmp_path, monkeypatch, [(point, 1), (point, 1), (point, 1)])
    assert state == reference


def test_kills_all_through_one_search(tmp_path, monkeypatch, reference):
    """Ten kills at spread points of one search, as a flaky machine would."""
    kills = [("next_outcome", 2), ("finish", 1), ("add", 2), ("_update", 3), ("csv", 1),
             ("start", 2), ("next_outcome", 1), ("set_meta", 3), ("finish", 2), ("add", 1)]
    assert kill_then_resume(tmp_path, monkeypatch, kills) == reference


def test_only_a_workers_death_counts_an_attempt(tmp_path, monkeypatch, reference):
    path = tmp_path / "trials.sqlite"
    run_search(path, config(), FakeExecutor(lose=[2]))  # trial 2's worker died once
    FAULTS["worker deaths"] += 1
    state = {r[0]: r for r in end_state(path)}
    assert state[2][2] == "done" and state[2][4] == 2  # retried: two attempts
    assert all(r[2] == "done" and r[4] == 1 for i, r in state.items() if i != 2)
    assert state[2][1] == reference[1][1] and len({r[1] for r in state.values()}) == BUDGET
    again = tmp_path / "again.sqlite"
    run_search(again, config(max_attempts=2), FakeExecutor(lose=[3, 3]))  # dies twice
    FAULTS["worker deaths"] += 2
    assert {r[0]: r for r in end_state(again)}[3][2] == "failed"


# --- real processes (slow) -------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """\
seed: 5
device: cpu
search_space:
  steps: 1
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3]
  network: {cells: 2, channels: 4, stem_multiplier: 1}
data: {name: cifar10_sample, valid_fraction: 0.2, search_train_size: 100, search_valid_size: 50}
train: {epochs: 1, batch_size: 50, lr: 0.005, eval_batch_size: 50}
search: {controller: evolution, budget: 4, population: 2, sample_size: 2}
"""


def search_cmd(config: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "bnn_nas.cli", "search", "--config", str(config), "--run-dir",
            str(run)]  # fmt: skip


def rows(run: Path) -> list[tuple]:
    db = sqlite3.connect(f"{(run / 'trials.sqlite').as_uri()}?mode=ro", uri=True)
    try:
        return db.execute("SELECT id, hash, status, result IS NOT NULL, attempts FROM trials "
                          "ORDER BY id").fetchall()  # fmt: skip
    finally:
        db.close()


def started(run: Path) -> float:
    """When the latest running trial was started (0 when none runs)."""
    db = sqlite3.connect(f"{(run / 'trials.sqlite').as_uri()}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT max(started_at) FROM trials WHERE status = 'running'").fetchone()
    finally:
        db.close()
    return row[0] or 0.0


def wait_for(condition, timeout: float = 120.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if condition():
                return True
        except (sqlite3.Error, OSError):
            pass
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    config = tmp / "c.yaml"
    config.write_text(CONFIG)
    run = tmp / "straight"
    done = subprocess.run(search_cmd(config, run), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return config, rows(run)


@pytest.mark.slow
def test_sigkill_at_start_up_and_twice_in_one_trial_then_resume(tmp_path, straight):
    """Killed at start-up (while importing, as the run directory is made, as its store
    appears, as the first trial is stored), then twice while one trial trains; the resumed
    search ends as the uninterrupted one. Kills follow events, not clocks, so a fast or a
    loaded machine kills at the same points."""
    config, expected = straight
    run = tmp_path / "run"
    moments = [
        lambda: time.sleep(0.3) or True,  # still importing torch
        lambda: run.exists() or any(tmp_path.glob(".run.*.new")),  # the directory is made
        lambda: (run / "trials.sqlite").is_file(),  # the store is there
        lambda: len(rows(run)) >= 1,  # the first trial is stored
    ]
    for moment in moments:
        proc = subprocess.Popen(search_cmd(config, run), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        assert wait_for(moment)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        FAULTS["SIGKILLs"] += 1
        assert not run.exists() or (run / "trials.sqlite").is_file()  # nothing or resumable
    for _ in range(2):  # twice during the same trial, each time once this process began it
        before = started(run)
        proc = subprocess.Popen(search_cmd(config, run), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        assert wait_for(lambda before=before: started(run) > before)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        FAULTS["SIGKILLs"] += 1
    assert sum(r[2] == "done" for r in rows(run)) < len(expected)  # killed before the end
    resumed = subprocess.run(search_cmd(config, run), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert [r[:4] for r in rows(run)] == [r[:4] for r in expected]
    assert all(r[4] == 1 for r in rows(run))  # the kills used no attempt
    assert not list(tmp_path.glob(".run.*"))  # staging left by a kill is gone


@pytest.mark.slow
def test_two_searches_on_one_directory(tmp_path, straight):
    config, expected = straight
    run = tmp_path / "run"
    first = subprocess.Popen(search_cmd(config, run), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             start_new_session=True)  # fmt: skip
    assert wait_for(lambda: (run / "trials.sqlite").is_file() and (run / ".lock").read_text()
                    == f"{first.pid}\n")  # the lock names `bnn-nas search`, not its child
    # paused (its supervisor and the search process, one process group), lock held: the
    # second meets it whatever the speed
    os.killpg(first.pid, signal.SIGSTOP)
    try:
        second = subprocess.run(search_cmd(config, run), capture_output=True, text=True)
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    FAULTS["concurrent searches"] += 1
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by bnn-nas process {first.pid}" in lines[0]
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert [r[:4] for r in rows(run)] == [r[:4] for r in expected]


def test_a_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    """A write that fails for want of space leaves the previous file whole and no
    temporary file behind (the disk filling is simulated: ENOSPC on every write)."""
    from bnn_nas.errors import BnnNasError
    from bnn_nas.io import write_text_atomic

    target = tmp_path / "config.yaml"
    target.write_text("old\n")
    real_fdopen = __import__("os").fdopen

    def full(fd, *args, **kwargs):  # every byte written goes to a full device
        handle = real_fdopen(fd, *args, **kwargs)
        handle.write = lambda data: (_ for _ in ()).throw(OSError(28, "No space left on device"))
        return handle

    monkeypatch.setattr("bnn_nas.io.os.fdopen", full)
    with pytest.raises((OSError, BnnNasError)):
        write_text_atomic(target, "new\n")
    FAULTS["full-disk writes"] += 1
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == [
        "config.yaml"
    ]


def never_ready(slot, setup, tasks, results) -> None:
    """A worker that hangs before it says ready (a device that never answers)."""
    time.sleep(3600)


@pytest.mark.slow
def test_workers_that_never_start_time_out(monkeypatch):
    from bnn_nas.errors import ConfigError
    from bnn_nas.search import processes

    monkeypatch.setattr(processes, "_worker_main", never_ready)
    monkeypatch.setattr(processes, "START_TIMEOUT", 3.0)
    FAULTS["hung workers"] += 1
    started = time.monotonic()
    with pytest.raises(ConfigError, match="did not start within 3 s"):
        processes.ProcessExecutor(config(), (), ["cpu"], 1)
    assert time.monotonic() - started < 60
