"""A trial that was training inside the search process (``local``/``streams`` executors)
when that process died has the death counted, using no attempt. By default a resume
always reruns it: a user's kill (SIGKILL, a preemption's SIGTERM, a timeout) looks in the
store exactly like a candidate's segfault or the OOM killer, and a killed search must end
as the uninterrupted one. With ``executor.max_process_deaths`` set (opt-in), a candidate
that kills the search that often is failed instead of being rerun by every resume; the
search then goes on as after any failed trial. Stores of older schemas (no death columns)
resume as before.

The fast part kills the search in this process (``Killed``, a BaseException, escapes the
executor and the loop as a SIGKILL would leave them); the slow part runs ``bnn-nas
search`` with a plugin whose forward SIGKILLs its own process for one genotype.
"""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from bnn_nas.cli import main
from bnn_nas.config import config_from_dict, config_to_dict, load_config
from bnn_nas.errors import ConfigError
from bnn_nas.search.executors import LocalExecutor
from bnn_nas.search.loop import SearchRun
from bnn_nas.search.processes import ProcessExecutor
from bnn_nas.search.ray_executor import RayExecutor
from bnn_nas.search.store import SQLiteStore
from bnn_nas.search.streams import StreamExecutor
from bnn_nas.search.trials import TrialStatus
from bnn_nas.space.search_space import load_search_space
from tests.test_faults import CONFIG as CLI_CONFIG
from tests.test_faults import (
    POINTS,
    FakeExecutor,
    Injector,
    Killed,
    end_state,
    fake_result,
    search_cmd,
)

SPACE = {"steps": 2, "ops": ["skip_connect", "max_pool_3x3", "xnor_conv_3x3",
                             "bireal_conv_3x3_skip_connect"]}  # fmt: skip
BUDGET = 7
DIED = ("the search process died while training this trial 2 times "
        "(executor.max_process_deaths = 2); recorded as failed")  # fmt: skip
RERUN = "trial 3 was training when the search process died ({}); running it again"
HINT = (". If this trial is what kills the search (a crash, the OOM killer), --set "
        "executor.max_process_deaths={} on the next resume records it failed")  # fmt: skip


def config(budget: int = BUDGET, max_process_deaths: int | None = None):
    return config_from_dict({
        "seed": 4, "device": "cpu", "search_space": SPACE,
        "search": {"controller": "evolution", "budget": budget, "population": 3,
                   "sample_size": 2},
        "executor": {"max_attempts": 2, "max_process_deaths": max_process_deaths},
    })  # fmt: skip


def evaluate_with(target: str | None, death: type[BaseException]):
    """A deterministic evaluation that raises ``death`` for the genotype hashed ``target``."""

    def evaluate(genotype, **budget):
        if genotype.hash == target:
            raise death("this candidate takes its process down")
        return fake_result(SimpleNamespace(hash=genotype.hash))

    return evaluate


def run_search(path: Path, cfg, evaluate) -> list[str]:
    """One search process's life on the store at ``path`` with the local executor;
    returns what its prepare() had to say."""
    store = SQLiteStore(path)
    try:
        search = SearchRun(cfg, load_search_space(cfg.search_space), store, lambda g: 1.0,
                           path.parent)  # fmt: skip
        try:
            search.prepare()
            search.run(LocalExecutor(evaluate))
        except Killed:
            return [*search.notes, "killed"]
        return search.notes
    finally:
        store.close()


def store_config(path: Path, cfg) -> None:
    """The config in a new store at ``path``, as a search stores it (``bnn-nas status``
    reads executor.max_process_deaths there)."""
    store = SQLiteStore(path)
    store.set_meta("config", config_to_dict(cfg))
    store.close()


def status_counts(run: Path) -> str:
    """The counts line of ``bnn-nas status RUN`` (no search holds the directory)."""
    result = CliRunner().invoke(main, ["status", str(run)])
    assert result.exit_code == 0, result.output
    return next(line for line in result.output.splitlines() if line[:1].isdigit())


def test_in_process_executors_are_marked():
    assert LocalExecutor.in_process and StreamExecutor.in_process
    assert not ProcessExecutor.in_process and not RayExecutor.in_process
    assert not FakeExecutor().in_process  # an executor says so itself; default: workers


def test_a_trial_that_kills_the_search_twice_is_failed_and_the_search_goes_on(tmp_path):
    """Trial 3 kills the search process (executor.max_process_deaths 2): the first run
    dies, the first resume reruns it and dies again, the second resume records it failed
    and finishes the budget: the same trials, proposals, results and attempts as a search
    where trial 3 failed with an exception."""
    cfg = config(max_process_deaths=2)
    straight = tmp_path / "straight" / "trials.sqlite"
    straight.parent.mkdir()
    run_search(straight, cfg, evaluate_with(None, Killed))
    target = end_state(straight)[2][1]  # trial 3's genotype
    failing = tmp_path / "failing" / "trials.sqlite"
    failing.parent.mkdir()
    run_search(failing, cfg, evaluate_with(target, RuntimeError))
    expected = end_state(failing)
    assert expected[2][2] == "failed" and expected[2][1] == target

    path = tmp_path / "run" / "trials.sqlite"
    path.parent.mkdir()
    store_config(path, cfg)
    evaluate = evaluate_with(target, Killed)
    assert run_search(path, cfg, evaluate) == ["killed"]
    state = end_state(path)
    assert [r[2] for r in state] == ["done", "done", "running"]
    assert status_counts(path.parent) == "2 done, 1 interrupted (a resume reruns them)"
    notes = run_search(path, cfg, evaluate)  # the first resume: one death of two
    assert notes == [RERUN.format("death 1 of executor.max_process_deaths 2"), "killed"]
    assert end_state(path) == state  # running again, on one attempt
    assert status_counts(path.parent) == ("2 done, 1 interrupted with executor."
                                          "max_process_deaths reached (a resume records "
                                          "them failed)")  # fmt: skip
    notes = run_search(path, cfg, evaluate)  # the second: recorded as failed, goes on
    assert notes == [f"trial 3 failed: {DIED}"]
    got = end_state(path)
    assert len(got) == BUDGET and got[2][2] == "failed" and got[2][6] == DIED
    # every trial (proposals, results, one attempt each) as after a plain failure
    assert [r[:6] for r in got] == [r[:6] for r in expected]
    assert [r for r in got if r[0] != 3] == [r for r in expected if r[0] != 3]
    with (path.parent / "trials.csv").open(newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["id"] == "3")
    assert (row["status"], row["attempts"], row["error"]) == ("failed", "1", DIED)


@pytest.mark.parametrize("max_process_deaths", [None, 4])
def test_a_trial_killed_three_times_is_rerun_and_the_search_ends_as_uninterrupted(
        tmp_path, max_process_deaths):  # fmt: skip
    """The search process dies three times while trial 3 trains (a user's kills, or a
    candidate's below executor.max_process_deaths): each resume reruns it, saying so, no
    kill uses an attempt, and the search ends as the uninterrupted one. Unset, the note
    from the second death on says how to have such a trial failed."""
    cfg = config(max_process_deaths=max_process_deaths)
    straight = tmp_path / "straight" / "trials.sqlite"
    straight.parent.mkdir()
    run_search(straight, cfg, evaluate_with(None, Killed))
    expected = end_state(straight)
    target = expected[2][1]
    kills = []

    def evaluate(genotype, **budget):
        if genotype.hash == target and len(kills) < 3:
            kills.append(genotype)
            raise Killed("killed while trial 3 trains")
        return evaluate_with(None, Killed)(genotype)

    path = tmp_path / "run" / "trials.sqlite"
    path.parent.mkdir()
    store_config(path, cfg)
    assert run_search(path, cfg, evaluate) == ["killed"]
    assert status_counts(path.parent) == "2 done, 1 interrupted (a resume reruns them)"
    notes = [run_search(path, cfg, evaluate) for _ in range(3)]
    if max_process_deaths is None:
        assert notes == [[RERUN.format("once"), "killed"],
                         [RERUN.format("twice") + HINT.format(3), "killed"],
                         [RERUN.format("3 times") + HINT.format(4)]]  # fmt: skip
    else:
        assert notes == [[RERUN.format(f"death {n} of executor.max_process_deaths 4"), *end]
                         for n, end in ((1, ["killed"]), (2, ["killed"]), (3, []))]
    assert end_state(path) == expected  # one attempt each, the kills used none
    store = SQLiteStore(path, read_only=True)
    assert [r.process_deaths for r in store.trials()] == [0, 0, 3] + [0] * (BUDGET - 3)
    store.close()
    assert status_counts(path.parent) == f"{BUDGET} done"


@pytest.mark.parametrize("point", [p for p in POINTS if p != "next_outcome"] + ["evaluate"])
@pytest.mark.parametrize("at", [1, 3, 6])
def test_one_kill_anywhere_with_the_local_executor_loses_nothing(tmp_path, monkeypatch,
                                                                 point, at):  # fmt: skip
    """Killed once at the ``at``-th store write, file write or evaluation of a local
    search, then resumed: the trials, results, errors and attempts of an uninterrupted
    run; the trial running at the kill (if any) has the death counted, and the resume
    said so."""
    straight = tmp_path / "straight" / "trials.sqlite"
    straight.parent.mkdir()
    run_search(straight, config(), evaluate_with(None, Killed))
    expected = end_state(straight)
    path = tmp_path / "run" / "trials.sqlite"
    path.parent.mkdir()
    calls = []

    def evaluate(genotype, **budget):
        calls.append(genotype)
        if point == "evaluate" and len(calls) == at:
            raise Killed("evaluate")
        return evaluate_with(None, Killed)(genotype)

    with monkeypatch.context() as patch:
        if point != "evaluate":
            Injector(patch, point, at if (point, at) != ("set_meta", 1) else 2)
        assert run_search(path, config(), evaluate) == ["killed"]
    notes = run_search(path, config(), evaluate)
    assert end_state(path) == expected
    store = SQLiteStore(path, read_only=True)
    again = [r.id for r in store.trials() if r.process_deaths]
    assert [r.process_deaths for r in store.trials() if r.id in again] == [1] * len(again)
    store.close()
    assert len(again) == len(notes) <= 1
    assert again or point not in ("evaluate", "finish")  # these kill a running trial
    if again:
        assert notes == [f"trial {again[0]} was training when the search process died "
                         "(once); running it again"]  # fmt: skip


@pytest.mark.parametrize("value", [0, -2, "x", 1.5, True])
def test_max_process_deaths_must_be_a_positive_whole_number_or_null(tmp_path, value):
    message = ("executor.max_process_deaths must be {}, not {!r}; give a whole number of "
               "deaths, 1 or more, or null (the default: 2 deaths bnn-nas search saw happen, none "
               "that only a resume finds)")
    plain = "at least 1" if isinstance(value, int) and not isinstance(value, bool) else (
        "int or NoneType")
    with pytest.raises(ConfigError) as err:
        config_from_dict({"executor": {"max_process_deaths": value}}, "c.yaml")
    assert str(err.value) == "c.yaml: " + message.format(plain, value)
    path = tmp_path / "c.yaml"
    path.write_text("seed: 1\n")
    with pytest.raises(ConfigError) as err:  # from --set, it names the --set
        load_config(path, (f"executor.max_process_deaths={value}",))
    assert str(err.value).startswith("--set 'executor.max_process_deaths=")
    assert "executor.max_process_deaths must be" in str(err.value) and "\n" not in str(err.value)
    assert load_config(path, ("executor.max_process_deaths=3",)).executor.max_process_deaths == 3
    assert load_config(path, ("executor.max_process_deaths=null",)).executor == (
        load_config(path).executor)
    assert load_config(path).executor.max_process_deaths is None


def schema_3_copy(source: Path, target: Path, running: int) -> None:
    """The trials of ``source`` in a store as the code of schema 3 wrote it (no death
    columns), trial ``running`` left running as a killed search of that code left it."""
    db = sqlite3.connect(target)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE trials (id INTEGER PRIMARY KEY, genotype TEXT NOT NULL,
            hash TEXT NOT NULL, status TEXT NOT NULL, origin TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT,
            created_at REAL NOT NULL, started_at REAL, finished_at REAL, curve TEXT);
        CREATE INDEX trials_hash ON trials (hash);
    """)
    db.execute(f"ATTACH DATABASE '{source}' AS src")
    db.execute("INSERT INTO meta SELECT key, value FROM src.meta WHERE key != 'schema_version'")
    db.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    db.execute("INSERT INTO trials SELECT id, genotype, hash, status, origin, attempts, result, "
               "error, created_at, started_at, finished_at, curve FROM src.trials")
    db.execute("UPDATE trials SET status = 'running', result = NULL, curve = NULL, "
               "finished_at = NULL WHERE id = ?", (running,))  # fmt: skip
    db.commit()
    db.close()


def test_a_schema_3_store_resumes_as_before_and_becomes_4(tmp_path):
    """A store of schema 3, killed while trial 3 ran: read as it lies, resumed with its
    running trial given back its attempt (the code that wrote it did not say where it
    ran), and marked 4 once a trial is started in the search process."""
    straight = tmp_path / "straight" / "trials.sqlite"
    straight.parent.mkdir()
    run_search(straight, config(), evaluate_with(None, Killed))
    partial = tmp_path / "partial" / "trials.sqlite"
    partial.parent.mkdir()
    run_search(partial, config(budget=3), evaluate_with(None, Killed))
    path = tmp_path / "run" / "trials.sqlite"
    path.parent.mkdir()
    schema_3_copy(partial, path, running=3)
    old = SQLiteStore(path, read_only=True)
    assert old.schema_version == 3
    assert [(r.status, r.in_process, r.process_deaths) for r in old.trials()] == [
        (TrialStatus.DONE, False, 0)] * 2 + [(TrialStatus.RUNNING, False, 0)]  # fmt: skip
    old.close()
    store = SQLiteStore(path)  # opened to resume: the columns are added, nothing else
    assert store.get_meta("schema_version") == 3 and store.get(3).attempts == 1
    store.close()
    assert run_search(path, config(), evaluate_with(None, Killed)) == []
    assert end_state(path) == end_state(straight)
    store = SQLiteStore(path, read_only=True)
    assert store.get_meta("schema_version") == 4
    # trials 1, 2 ran under the old code; 3 (rerun) and later in this process, as recorded
    assert [r.in_process for r in store.trials()] == [False] * 2 + [True] * (BUDGET - 2)
    assert all(r.process_deaths == 0 for r in store.trials())
    store.close()


# --- a real search process killed by its candidate (slow) -------------------------------

PLUGIN = """\
# test-only: the network of one genotype SIGKILLs its own process in its first training
# forward (as a segfault or the OOM killer would end it)
import os
import signal

from bnn_nas.search import evaluator

TARGET = {target!r}
_build = evaluator.Evaluator.build


def _kill(module, inputs):
    if module.training:
        os.kill(os.getpid(), signal.SIGKILL)


def build(self, genotype):
    network = _build(self, genotype)
    if genotype.hash == TARGET:
        network.register_forward_pre_hook(_kill)
    return network


evaluator.Evaluator.build = build
"""


def proposals(config_path: Path) -> list[str]:
    """The hashes a search of this config proposes (a random controller: not changed by
    results), from an in-memory search with made-up results."""
    from bnn_nas.search.store import MemoryStore

    cfg = load_config(config_path)
    search = SearchRun(cfg, load_search_space(cfg.search_space), MemoryStore(), lambda g: 1.0)
    search.prepare()
    return [r.hash for r in search.run(FakeExecutor(capacity=1))]


@pytest.mark.slow
def test_a_candidate_that_sigkills_the_search_through_the_cli(tmp_path):
    """``bnn-nas search`` (local executor, executor.max_process_deaths unset) whose trial 2
    SIGKILLs the search process: its supervisor counts each death, says so (stderr and
    search.log), starts the search again, records trial 2 failed at the second death and
    finishes the budget, exit 0; status and trials.csv show it failed with why."""
    plain = tmp_path / "plain.yaml"
    plain.write_text(CLI_CONFIG.replace("controller: evolution", "controller: random"))
    hashes = proposals(plain)
    plugin = tmp_path / "killer.py"
    plugin.write_text(PLUGIN.format(target=hashes[1]))
    config = tmp_path / "c.yaml"
    config.write_text(plain.read_text() + f"plugins: [{plugin}]\n")
    run = tmp_path / "run"
    done = subprocess.run(search_cmd(config, run), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    said = [f"bnn-nas: the search process was killed by SIGKILL while training trial 2 "
            f"(death {n} of 2: {fate}); starting the search again"
            for n, fate in ((1, "it runs again"), (2, "recorded as failed"))]  # fmt: skip
    assert [x for x in done.stderr.splitlines() if "bnn-nas:" in x] == said
    assert "3 trials done, 1 failed" in done.stdout
    died = ("the search process died while training this trial 2 times, the last killed by "
            "SIGKILL; recorded as failed at 2 (executor.max_process_deaths)")
    after = end_state(run / "trials.sqlite")
    assert [(r[1], r[2], r[4], r[6]) for r in after] == [
        (hashes[0], "done", 1, None), (hashes[1], "failed", 1, died), (hashes[2], "done", 1, None),
        (hashes[3], "done", 1, None)]  # fmt: skip
    log = (run / "search.log").read_text().splitlines()
    assert [x for x in log if x.startswith("bnn-nas:")] == said
    with (run / "trials.csv").open(newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["id"] == "2")
    assert (row["status"], row["attempts"], row["error"]) == ("failed", "1", died)
    status = CliRunner().invoke(main, ["status", str(run)])
    assert status.exit_code == 0, status.output
    line = next(x for x in status.output.splitlines() if x.split()[:1] == ["2"])
    assert line.split()[1] == "failed" and line.endswith(died)


class InProcessFake(FakeExecutor):
    """Trials run in the search process, three at a time; ``seen``: the trials in flight
    after each submit; ``kill_at``: the search dies at that call of next_outcome."""

    in_process = True

    def __init__(self, kill_at: int | None = None) -> None:
        super().__init__(capacity=3)
        self.seen: list[list[int]] = []
        self.kill_at, self.calls = kill_at, 0

    def submit(self, trial) -> None:
        super().submit(trial)
        self.seen.append([t.id for t in self.queue])

    def next_outcome(self):
        self.calls += 1
        if self.calls == self.kill_at:
            raise Killed("the search process dies with three trials in flight")
        return super().next_outcome()


def test_trials_the_search_process_died_under_run_alone(tmp_path):
    """Three trials train side by side (as with the streams executor) when the search
    process dies: each has the death counted, and the resume runs each alone, so a next
    death is that trial's own; the trials after them run side by side again."""
    cfg = config_from_dict({
        "seed": 4, "device": "cpu", "search_space": SPACE,
        "search": {"controller": "random", "budget": 6},
    })  # fmt: skip
    path = tmp_path / "trials.sqlite"
    for executor in (InProcessFake(kill_at=1), InProcessFake()):
        store = SQLiteStore(path)
        search = SearchRun(cfg, load_search_space(cfg.search_space), store, lambda g: 1.0)
        search.prepare()
        try:
            search.run(executor)
        except Killed:
            pass
        finally:
            store.close()
    assert executor.seen == [[1], [2], [3], [4], [4, 5], [4, 5, 6]]
    assert [(r[2], r[4]) for r in end_state(path)] == [("done", 1)] * 6
    store = SQLiteStore(path, read_only=True)
    assert [r.process_deaths for r in store.trials()] == [1, 1, 1, 0, 0, 0]
    store.close()


class InterruptedFake(FakeExecutor):
    """Three trials in flight when Ctrl-C comes (next_outcome raises KeyboardInterrupt)."""

    def __init__(self) -> None:
        super().__init__(capacity=3)

    def next_outcome(self):
        raise KeyboardInterrupt


def test_a_second_sigint_does_not_cut_the_release_of_the_trials_in_flight_short(
        tmp_path, monkeypatch):  # fmt: skip
    """A stop sent to the process group (kill -INT -PGID, timeout -s INT) reaches the
    search twice, directly and forwarded by its supervisor; Ctrl-C may be typed twice. The
    second SIGINT, arriving while the first one's release of the trials in flight runs,
    left the trials after the first `running` (a resume then counted a death for them)."""
    cfg = config_from_dict({
        "seed": 4, "device": "cpu", "search_space": SPACE,
        "search": {"controller": "random", "budget": 6},
    })  # fmt: skip
    store = SQLiteStore(tmp_path / "trials.sqlite")
    release, sent = store.release, []

    def release_then_sigint(trial_id, **kwargs):
        release(trial_id, **kwargs)
        if not sent:
            sent.append(trial_id)
            os.kill(os.getpid(), signal.SIGINT)  # the same stop, forwarded

    monkeypatch.setattr(store, "release", release_then_sigint)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # even under `&`
    try:
        search = SearchRun(cfg, load_search_space(cfg.search_space), store, lambda g: 1.0)
        search.prepare()
        with pytest.raises(KeyboardInterrupt):
            search.run(InterruptedFake())
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert sent and [r.status.value for r in store.trials()] == ["pending"] * 3
    store.close()
