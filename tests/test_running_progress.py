"""Progress inside trials: executors report the running trials' epochs (local, streams,
processes), the bar shows them, and its time left comes from the finished trials' times."""

from __future__ import annotations

import time

import pytest
import yaml

from bnn_nas.config import config_from_dict
from bnn_nas.search.engine import make_executor, open_search
from bnn_nas.search.executors import LocalExecutor
from bnn_nas.search.processes import ProcessExecutor
from bnn_nas.search.progress import SearchProgress
from bnn_nas.search.running import RunningTrials
from bnn_nas.search.trials import TrialRecord, TrialStatus
from bnn_nas.space.genotype import parse_genotype

G = parse_genotype(
    "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=[2], "
    "reduce=[('max_pool_3x3', 0), ('skip_connect', 1)], reduce_concat=[2])"
)
CONFIG = """
seed: 5
device: cpu
search_space:
  steps: 2
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3]
  network: {cells: 3, channels: 4, stem_multiplier: 2}
data: {name: cifar10_sample, valid_fraction: 0.2, search_train_size: 200, search_valid_size: 100}
train: {epochs: 2, batch_size: 50, lr: 0.005, eval_batch_size: 100}
search: {controller: random, budget: 2}
"""


class Recorded(RunningTrials):
    """RunningTrials that also keeps every report, and what was running at each."""

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[tuple[int, int, int | None]] = []
        self.seen: list[str] = []

    def epoch(self, trial_id: int, done: int, epochs: int | None = None) -> None:
        super().epoch(trial_id, done, epochs)
        self.reports.append((trial_id, done, epochs))
        self.seen.append(self.describe())


def test_running_trials_describe_and_fraction():
    running = RunningTrials()
    assert running.describe() == "" and running.fraction() == 0
    running.started(4, 2)
    assert running.describe() == "trial 4 epoch 0/2"
    running.reporter(4)(1, 2)
    assert running.describe() == "trial 4 epoch 1/2" and running.fraction() == 0.5
    running.started(5)  # epochs not known yet (an executor that learns them later)
    assert running.describe() == "2 running, epochs 1/?"
    running.epoch(5, 3, 4)
    assert running.describe() == "2 running, epochs 4/6" and running.fraction() == 1.25
    running.ended(4)
    running.epoch(4, 2, 2)  # a late report about an ended trial is dropped
    assert running.snapshot() == {5: (3, 4)}


def record(i: int, start: float, finish: float) -> TrialRecord:
    return TrialRecord(i, G, TrialStatus.DONE, {}, started_at=start, finished_at=finish)


def test_time_left_comes_from_finished_trials_and_the_running_epochs():
    with SearchProgress(10, 2, records=[record(1, 0, 10), record(2, 10, 20)]) as progress:
        assert progress.seconds_per_trial() == 10
        assert progress.eta() == 80 and "<01:20," in str(progress.bar)
    running = RunningTrials()
    running.started(3, 4)
    running.epoch(3, 2, 4)
    # two trials side by side over the same 10 s: 5 wall seconds per trial
    spans = [record(1, 0, 10), record(2, 0, 10)]
    with SearchProgress(10, 2, records=spans, running=running, live=True, tick=0.01) as progress:
        assert progress.eta() == pytest.approx(7.5 * 5)
        time.sleep(0.3)
        assert "trial 3 epoch 2/4" in progress.bar.postfix  # the ticker redrew it
        assert "<00:37," in str(progress.bar)
    with SearchProgress(10, 0) as progress:  # nothing finished yet: no estimate
        assert progress.eta() is None and "<?," in str(progress.bar)


def run_search(tmp_path, **executor):
    data = yaml.safe_load(CONFIG)
    data["executor"] = executor
    config = config_from_dict(data, "test")
    search, evaluator = open_search(config, tmp_path / "run", resume=False)
    search.prepare()
    running = Recorded()
    if executor.get("type") == "processes":
        context = ProcessExecutor(config, (), ["cpu"], 1)
    else:
        context = make_executor(config, evaluator)
    with context as ex:
        assert ex.report_epochs(running)
        records = search.run(ex)
    assert [r.status for r in records] == [TrialStatus.DONE] * 2, [r.error for r in records]
    return running


@pytest.mark.parametrize("kind", ["local", "streams"])
def test_in_process_executors_report_every_epoch(tmp_path, kind):
    running = run_search(tmp_path, type=kind)
    assert running.reports == [(1, 1, 2), (1, 2, 2), (2, 1, 2), (2, 2, 2)]
    assert running.seen[0] == "trial 1 epoch 1/2" and running.snapshot() == {}


@pytest.mark.slow
def test_worker_processes_report_epochs_through_the_result_queue(tmp_path):
    running = run_search(tmp_path, type="processes")
    assert running.reports == [(1, 1, 2), (1, 2, 2), (2, 1, 2), (2, 2, 2)]
    assert running.snapshot() == {}


def test_an_executor_without_epoch_reports_leaves_the_bar_per_trial():
    from bnn_nas.search.executors import Executor

    class Plain(Executor):
        def submit(self, trial): ...
        def next_outcome(self): ...
        def in_flight(self):
            return 0

    assert Plain().report_epochs(RunningTrials()) is False
    # a bare function as the local executor's evaluate is called as before
    calls = []
    local = LocalExecutor(lambda g: calls.append(g) or None)
    local.submit(record(1, 0, 1))
    local.next_outcome()
    assert calls == [G]


def test_a_resumed_search_shows_its_best_and_time_left_at_once(tmp_path):
    data = yaml.safe_load(CONFIG)
    config = config_from_dict(data, "test")
    search, evaluator = open_search(config, tmp_path / "run", resume=False)
    search.prepare()
    with make_executor(config, evaluator) as ex:
        search.run(ex)
    best = max(search.store.trials(), key=lambda r: r.result.accuracy)
    more = config_from_dict({**data, "search": {**data["search"], "budget": 4}}, "test")
    search.store.close()
    search, evaluator = open_search(more, tmp_path / "run", resume=True)
    search.prepare()
    ex = make_executor(more, evaluator)
    with ex, SearchProgress.of_search(search, ex) as progress:
        assert f"best={best.result.accuracy:.4f}" in progress.bar.postfix
        assert progress.seconds_per_trial() is not None and progress.eta() > 0
        assert progress.running is not None  # the local executor reports epochs
    search.store.close()
