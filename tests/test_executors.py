"""Executors: worker processes and Ray complete a search, and survive a killed worker."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from bnn_nas.config import config_from_dict
from bnn_nas.errors import ConfigError
from bnn_nas.search.engine import SearchRun, format_error, make_executor, open_search
from bnn_nas.search.evaluator import Evaluator
from bnn_nas.search.executors import Executor, Outcome, OutcomeKind
from bnn_nas.search.processes import ProcessExecutor
from bnn_nas.search.ray_executor import TASK_NAME, RayExecutor
from bnn_nas.search.store import MemoryStore
from bnn_nas.search.streams import StreamExecutor
from bnn_nas.search.trials import TrialRecord, TrialStatus
from bnn_nas.space.search_space import load_search_space

CONFIG = """
seed: 5
device: cpu
search_space:
  steps: 2
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3, bireal_conv_3x3_skip_connect]
  network: {cells: 3, channels: 8, stem_multiplier: 2}
data: {name: cifar10_sample, valid_fraction: 0.2, search_train_size: 600, search_valid_size: 200}
train: {epochs: 1, batch_size: 50, lr: 0.005, eval_batch_size: 200}
search: {controller: evolution, budget: 5, population: 3, sample_size: 2}
executor: {max_attempts: 2}
"""


def make_config(**executor):
    data = yaml.safe_load(CONFIG)
    data["executor"].update(executor)
    return config_from_dict(data, "test")


def kill_one_running_trial(find_running, grace: float = 0.4) -> dict:
    """Start a thread that SIGKILLs the worker of the first trial seen running for ``grace``."""
    killed: dict = {}

    def loop() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            running = find_running()
            if running:
                time.sleep(grace)
                if find_running() == running:
                    trial_id, pid = next(iter(running.items()))
                    os.kill(pid, signal.SIGKILL)
                    killed[trial_id] = pid
                    return
            time.sleep(0.02)

    threading.Thread(target=loop, daemon=True).start()
    return killed


def check_complete(records, budget: int, killed: dict) -> None:
    assert len(records) == budget
    assert all(r.status is TrialStatus.DONE for r in records), [(r.id, r.error) for r in records]
    assert len({r.hash for r in records}) == budget
    (trial_id,) = killed
    assert next(r for r in records if r.id == trial_id).attempts == 2  # retried once


def test_processes_complete_a_search_despite_a_killed_worker(tmp_path):
    config = make_config(type="processes", trials_per_device=2)
    search, _ = open_search(config, tmp_path / "run", resume=False)
    search.prepare()
    with ProcessExecutor(config, (), ["cpu"], 2) as executor:
        assert executor.capacity == 2
        killed = kill_one_running_trial(executor.busy)
        records = search.run(executor)
        assert executor.restarts >= 1
    check_complete(records, 5, killed)
    assert (tmp_path / "run" / "trials.csv").read_text().count("\n") == 6
    # a worker's message carries the trial's learning curve (one epoch each here)
    assert all([p.epoch for p in r.result.curve] == [0] for r in records)


def _accuracy_by_genotype(config, run_dir: Path) -> dict[str, float]:
    search, evaluator = open_search(config, run_dir, resume=False)
    search.prepare()
    with make_executor(config, evaluator) as executor:
        records = search.run(executor)
    assert all(r.status is TrialStatus.DONE for r in records), [r.error for r in records]
    return {r.hash: r.result.accuracy for r in records}


def test_streams_run_trials_concurrently_with_the_same_results_as_one_at_a_time(
    tmp_path, monkeypatch
):
    # the random controller proposes the same genotypes whatever order results come in,
    # so every candidate's score must match the one-at-a-time run exactly: seeding and
    # initialisation of concurrent trials must not interleave
    config = make_config(type="streams", trials_per_device=3)
    config = replace(config, search=replace(config.search, controller="random", budget=6))
    running: set[str] = set()
    overlapped: list[int] = []
    original = Evaluator.__call__

    def spy(self, genotype, *args):
        name = threading.current_thread().name
        running.add(name)
        overlapped.append(len(running))
        try:
            return original(self, genotype, *args)
        finally:
            running.discard(name)

    monkeypatch.setattr(Evaluator, "__call__", spy)
    concurrent = _accuracy_by_genotype(config, tmp_path / "streams")
    assert max(overlapped) >= 2  # trials did run at the same time
    local = replace(config, executor=replace(config.executor, type="local"))
    sequential = _accuracy_by_genotype(local, tmp_path / "local")
    assert concurrent == sequential and len(concurrent) == 6


def test_closing_streams_ends_a_running_trial_at_its_next_epoch(tmp_path):
    config = make_config(type="streams", trials_per_device=1)
    config = replace(config, train=replace(config.train, epochs=100_000))  # hours if not stopped
    _, evaluator = open_search(config, tmp_path / "run", resume=False)
    executor = StreamExecutor([evaluator], 1, format_error)
    genotype = evaluator.space.random_sample(random.Random(0))
    executor.submit(TrialRecord(1, genotype, TrialStatus.RUNNING, {}))
    time.sleep(1.0)
    threads = list(executor._pool._threads)
    executor.close()
    for thread in threads:
        thread.join(timeout=120)
    assert threads and not any(t.is_alive() for t in threads)


def test_streams_report_a_failing_candidate_and_go_on():
    calls = []

    class Flaky:
        device = torch.device("cpu")

        def __call__(self, genotype, should_stop=None):
            calls.append(genotype)
            if len(calls) == 1:
                raise FloatingPointError("validation loss is nan")
            from tests.test_controllers import fake_result

            return fake_result(0.5)

    space = load_search_space("tiny")
    genotypes = [space.random_sample(random.Random(i)) for i in range(3)]
    with StreamExecutor([Flaky()], 2, format_error) as executor:
        for i, g in enumerate(genotypes[:2]):
            executor.submit(TrialRecord(i, g, TrialStatus.RUNNING, {}))
        with pytest.raises(RuntimeError, match="full"):
            executor.submit(TrialRecord(9, genotypes[2], TrialStatus.RUNNING, {}))
        outcomes = {executor.next_outcome().kind for _ in range(2)}
        assert executor.in_flight() == 0
    assert outcomes == {OutcomeKind.FAILED, OutcomeKind.DONE}
    with pytest.raises(ConfigError, match="trials_per_device is 33"):
        StreamExecutor([Flaky()], 33, format_error)


@pytest.mark.slow
def test_ray_completes_a_search_despite_a_killed_task(tmp_path):
    ray = pytest.importorskip("ray")  # the [ray] extra, installed by the README's test command

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        config = make_config(type="ray")
        search, evaluator = open_search(config, tmp_path / "run", resume=False)
        search.prepare()
        executor = RayExecutor(config, (), evaluator, config.executor)
        assert executor.capacity == 2

        def running_tasks() -> dict:
            if not executor.in_flight():
                return {}
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit():
                    try:
                        if (proc / "cmdline").read_bytes().startswith(f"ray::{TASK_NAME}".encode()):
                            return {min(executor._refs.values()): int(proc.name)}
                    except OSError:
                        continue
            return {}

        killed = kill_one_running_trial(running_tasks, grace=0.3)
        records = search.run(executor)
        executor.close()
        assert len(records) == 5 and all(r.done for r in records)
        assert killed and any(r.attempts == 2 for r in records)
        assert all(len(r.result.curve) == 1 for r in records)  # the curve comes back too
    finally:
        ray.shutdown()


class ScriptedExecutor(Executor):
    """Plays back outcomes: lets the loop's handling of failures be tested exactly."""

    capacity = 2

    def __init__(self, script):
        self.script, self.queue = list(script), []

    def submit(self, trial):
        self.queue.append(trial.id)

    def in_flight(self):
        return len(self.queue)

    def next_outcome(self):
        kind = self.script.pop(0)
        if kind == "interrupt":
            raise KeyboardInterrupt
        trial_id = self.queue.pop(0)
        if kind == "lost":
            return Outcome(trial_id, OutcomeKind.LOST, error="worker 0 died (exit code -9)")
        from tests.test_controllers import fake_result

        return Outcome(trial_id, OutcomeKind.DONE, result=fake_result(0.5))


def test_lost_trials_retry_then_fail_and_ctrl_c_releases_trials():
    space = load_search_space("tiny")
    config = make_config(max_attempts=2)
    run = SearchRun(config, space, MemoryStore(), lambda g: 1.0)
    run.prepare()
    with pytest.raises(KeyboardInterrupt):
        run.run(ScriptedExecutor(["lost", "done", "interrupt"]))
    statuses = [r.status for r in run.store.trials()]
    assert TrialStatus.RUNNING not in statuses  # in-flight trials went back to pending
    assert [r.attempts for r in run.store.trials()] == [1, 1, 0]  # Ctrl-C uses no attempt
    assert statuses.count(TrialStatus.DONE) == 1
    run.prepare()
    records = run.run(ScriptedExecutor(["lost"] * 1 + ["done"] * 10))
    lost_twice = [r for r in records if r.status is TrialStatus.FAILED]
    assert len(lost_twice) == 1 and "gave up after 2" in lost_twice[0].error
    assert sum(r.finished for r in records) == 5


def test_auto_executor_is_local_on_the_cpu(tmp_path):
    config = make_config()  # executor.type left at its default, auto
    assert config.executor.type == "auto"
    _, evaluator = open_search(config, tmp_path / "run", resume=False)
    with make_executor(config, evaluator) as executor:
        assert type(executor).__name__ == "LocalExecutor" and executor.capacity == 1
