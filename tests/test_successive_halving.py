"""Multi-fidelity search (issue 21 item 1): successive halving, Hyperband and ASHA.

Scripted results (no training) drive the controller through the real search loop and
store; the promotions are checked against brute force, the budgets against the config,
and a search killed at any store write resumes to the same rungs and the same choice.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnn_nas.config import config_from_dict
from bnn_nas.errors import ConfigError
from bnn_nas.objectives import ranking_key
from bnn_nas.search.budget import Budget, budget_of, rung_of, top_rung
from bnn_nas.search.derive import best_trial, choose
from bnn_nas.search.executors import Executor, Outcome, OutcomeKind
from bnn_nas.search.loop import SearchRun
from bnn_nas.search.store import MemoryStore, SQLiteStore
from bnn_nas.search.successive_halving import SuccessiveHalving, SuccessiveHalvingSettings
from bnn_nas.search.trials import TrialRecord, TrialResult, TrialStatus
from bnn_nas.space.search_space import load_search_space, search_space_from_dict
from tests.test_edge_limits import within
from tests.test_faults import Injector, Killed, end_state

SPACE = {"steps": 2, "ops": ["skip_connect", "max_pool_3x3", "xnor_conv_3x3",
                             "bireal_conv_3x3_skip_connect"]}  # fmt: skip


def scripted(record: TrialRecord, levels: int = 4) -> TrialResult:
    """A score from the genotype and the budget alone, with few distinct values (ties)."""
    budget = budget_of(record)
    h = int(record.hash[:8], 16)
    epochs = budget.epochs if budget is not None else 1
    accuracy = (h % levels) / (2 * levels) + 0.1 * min(epochs, 5)
    return TrialResult.of(accuracy=accuracy, loss=1.0, ops=float(1e5 + h % 3),
                          train_seconds=0.1)  # fmt: skip


class ScriptedExecutor(Executor):
    """``capacity`` trials in flight, finished in submission order (or ``order``)."""

    def __init__(self, capacity: int = 1, fail: tuple[int, ...] = (), levels: int = 4,
                 lifo: bool = False) -> None:  # fmt: skip
        self.capacity, self.fail, self.levels, self.lifo = capacity, fail, levels, lifo
        self.queue: list[TrialRecord] = []

    def submit(self, trial: TrialRecord) -> None:
        self.queue.append(trial)

    def in_flight(self) -> int:
        return len(self.queue)

    def next_outcome(self) -> Outcome:
        trial = self.queue.pop(-1 if self.lifo else 0)
        if trial.id in self.fail:
            return Outcome(trial.id, OutcomeKind.FAILED, error="scripted failure")
        return Outcome(trial.id, OutcomeKind.DONE, result=scripted(trial, self.levels))


def make_config(budget: int = 13, **search):
    return config_from_dict({
        "seed": 3, "device": "cpu", "search_space": SPACE,
        "train": {"epochs": 9, "batch_size": 50},
        "search": {"controller": "successive_halving", "budget": budget, **search},
    })  # fmt: skip


def search(cfg, executor: Executor, store=None) -> list[TrialRecord]:
    store = store if store is not None else MemoryStore()
    run = SearchRun(cfg, load_search_space(cfg.search_space), store, lambda g: 1.0)
    run.prepare()
    return run.run(executor)


def by_rung(records, bracket=None) -> dict[int, list[TrialRecord]]:
    out = defaultdict(list)
    for r in records:
        if bracket is None or r.origin.get("bracket") == bracket:
            out[rung_of(r)].append(r)
    return out


def brute_force_top(rung: list[TrialRecord], k: int, objectives) -> set[int]:
    """The ids of the k best done trials, by trying every k-subset: the one whose every
    member beats every non-member (objectives in order, then the lower id)."""
    done = [r for r in rung if r.status is TrialStatus.DONE]
    k = min(k, len(done))

    def key(r):
        return (*ranking_key(r.result.metrics, objectives), r.id)

    winners = [
        set(s) for s in itertools.combinations([r.id for r in done], k)
        if all(key(a) < key(b) for a in done if a.id in s for b in done if b.id not in s)
    ]  # fmt: skip
    assert len(winners) == 1  # ids break every tie: exactly one such subset
    return winners[0]


# --- successive halving promotes exactly the top 1/eta ----------------------------------


@pytest.mark.parametrize("capacity", [1, 4])
@pytest.mark.parametrize("eta,rung_epochs,bracket_size", [
    (3, [1, 3, 9], None), (2, [1, 2, 4, 8], None), (3, [1, 3, 9], 10), (2, [2, 5], 7),
])  # fmt: skip
@pytest.mark.parametrize("levels", [2, 50])  # 2: most results tie
def test_sync_promotes_exactly_the_top_of_each_rung(capacity, eta, rung_epochs, bracket_size,
                                                    levels):  # fmt: skip
    cfg = make_config(40, eta=eta, rung_epochs=rung_epochs, bracket_size=bracket_size,
                      base="evolution", population=3, sample_size=2)  # fmt: skip
    records = search(cfg, ScriptedExecutor(capacity, levels=levels))
    assert len(records) == 40
    n0 = bracket_size or eta ** (len(rung_epochs) - 1)
    brackets = sorted({r.origin["bracket"] for r in records})
    complete = 0
    for bracket in brackets:
        rungs = by_rung(records, bracket)
        size = n0
        for rung in range(len(rung_epochs) - 1):
            if rung + 1 not in rungs:
                break
            assert len(rungs[rung]) == size  # the lower rung was whole before promotion
            size = max(1, size // eta)
            promoted = rungs[rung + 1]
            assert all(r.origin["kind"] == "promotion" for r in promoted)
            parents = {r.origin["parent"] for r in promoted}
            expected = brute_force_top(rungs[rung], size, cfg.search.objectives)
            if len(promoted) == len(expected):
                assert parents == expected
            else:  # the budget ran out while the upper rung was being handed out
                assert bracket == brackets[-1] and parents < expected
            by_id = {r.id: r for r in records}
            assert all(by_id[r.origin["parent"]].genotype == r.genotype for r in promoted)
        complete += len(rungs) == len(rung_epochs)
    assert complete >= 1


def test_ties_go_to_the_next_objective_then_the_earlier_trial():
    space = load_search_space(SPACE)
    sh = SuccessiveHalving(space, 0, SuccessiveHalvingSettings(eta=2, rung_epochs=(1, 2),
                                                            bracket_size=4))
    proposals = sh.ask(4)
    assert len(proposals) == 4 and sh.ask(1) == []  # rung 0 must finish first
    metrics = [(0.5, 2e5), (0.5, 1e5), (0.7, 9e5), (0.5, 1e5)]  # trials 2 and 4 tie
    records = [
        TrialRecord(i + 1, p.genotype, TrialStatus.DONE, p.origin,
                    result=TrialResult.of(accuracy=a, ops=o))
        for i, (p, (a, o)) in enumerate(zip(proposals, metrics, strict=True))
    ]  # fmt: skip
    sh.tell(records[:3])
    assert sh.ask(1) == []  # trial 4 still running
    sh.tell(records[3:])
    *promoted, after = sh.ask(3)
    assert [p.origin["parent"] for p in promoted] == [3, 2]  # best, then the tie's earlier
    assert all(p.origin["budget"] == {"epochs": 2} and p.origin["rung"] == 1 for p in promoted)
    assert promoted[1].genotype == proposals[1].genotype
    # the last rung is handed out: the next bracket starts while it trains
    assert (after.origin["kind"], after.origin["bracket"], after.origin["rung"]) == (
        "random", 1, 0)  # fmt: skip


def test_failed_trials_are_never_promoted():
    cfg = make_config(13, base="random")
    records = search(cfg, ScriptedExecutor(1, fail=(1, 2, 3, 4)))
    rungs = by_rung(records, 0)
    assert len(rungs[0]) == 9 and len(rungs[1]) == 3 and len(rungs[2]) == 1
    assert not {r.origin["parent"] for r in rungs[1]} & {1, 2, 3, 4}


def test_every_trial_of_a_rung_failing_ends_the_bracket():
    cfg = make_config(12, eta=2, rung_epochs=[1, 2], base="random")
    records = search(cfg, ScriptedExecutor(1, fail=(1, 2)))
    assert [(r.origin["bracket"], r.origin["rung"]) for r in records[:3]] == [(0, 0), (0, 0),
                                                                             (1, 0)]  # fmt: skip


# --- budgets per rung as configured ------------------------------------------------------


def test_budgets_per_rung_as_configured():
    cfg = make_config(13, rung_epochs=[2, 4, 8], rung_train_size=[100, 300, 900])
    records = search(cfg, ScriptedExecutor(2))
    for r in records:
        rung = rung_of(r)
        assert r.origin["budget"] == {"epochs": [2, 4, 8][rung],
                                      "train_size": [100, 300, 900][rung]}  # fmt: skip
        assert budget_of(r) == Budget(epochs=[2, 4, 8][rung], train_size=[100, 300, 900][rung])
    assert [len(v) for _, v in sorted(by_rung(records).items())] == [9, 3, 1]


def test_default_rung_epochs_divide_train_epochs_by_eta():
    cfg = make_config(13)  # train.epochs 9, eta 3, 3 rungs
    records = search(cfg, ScriptedExecutor(1))
    assert sorted({(rung_of(r), r.origin["budget"]["epochs"]) for r in records}) == [
        (0, 1), (1, 3), (2, 9)]  # fmt: skip
    cfg = make_config(1, eta=2, rungs=4)
    sh = SearchRun(cfg, load_search_space(SPACE), MemoryStore(), lambda g: 1.0).controller
    assert sh.epochs == (1, 2, 4, 9)  # 9/8, 9/4, 9/2 rounded, at least 1


def test_hyperband_brackets():
    space = load_search_space(SPACE)
    sh = SuccessiveHalving(space, 0, SuccessiveHalvingSettings(hyperband=True,
                                                               rung_epochs=(1, 3, 9)))  # fmt: skip
    # Li et al.: bracket s enters at rung R-1-s with ceil(R/(s+1) * eta^s) trials
    assert sh.layout(0) == [(0, 9), (1, 3), (2, 1)]
    assert sh.layout(1) == [(1, 5), (2, 1)]
    assert sh.layout(2) == [(2, 3)]
    assert sh.layout(3) == sh.layout(0)
    records = search(make_config(30, hyperband=True), ScriptedExecutor(3))  # 13 + 6 + 3 + 8
    entries = [(r.origin["bracket"], r.origin["rung"]) for r in records
               if r.origin["kind"] != "promotion"]  # fmt: skip
    assert entries == [(0, 0)] * 9 + [(1, 1)] * 5 + [(2, 2)] * 3 + [(3, 0)] * 8


def test_train_sizes_budget_the_evaluator(monkeypatch):
    """The evaluator trains a budgeted trial for its epochs on its part of search-train."""
    from bnn_nas.search import evaluator as evaluator_module

    cfg = config_from_dict({
        "seed": 1, "device": "cpu", "search_space": {"steps": 1, "ops": ["skip_connect"],
                                                     "network": {"cells": 1, "channels": 4}},
        "data": {"name": "cifar10_sample", "valid_fraction": 0.2, "search_train_size": 300,
                 "search_valid_size": 50},
        "train": {"epochs": 3, "batch_size": 50, "eval_batch_size": 50},
    })  # fmt: skip
    import torch

    ev = evaluator_module.build_evaluator(cfg, torch.device("cpu"))
    seen = []
    real_fit = evaluator_module.fit

    def spy(model, train_set, settings, **kwargs):
        seen.append((len(train_set), settings.epochs))
        return real_fit(model, train_set, settings, **kwargs)

    monkeypatch.setattr(evaluator_module, "fit", spy)
    genotype = ev.space.random_sample(random.Random(0))
    ev(genotype)
    ev(genotype, budget=Budget(epochs=1, train_size=100))
    assert seen == [(300, 3), (100, 1)]
    part = ev.train_subset(100)
    assert part is ev.train_subset(100) and len(set(part.labels.tolist())) == 10  # balanced
    with pytest.raises(ConfigError, match="301 search-train images"):
        ev(genotype, budget=Budget(epochs=1, train_size=301))


# --- ASHA --------------------------------------------------------------------------------


@pytest.mark.parametrize("lifo", [False, True])
def test_asha_promotes_only_from_the_top_of_what_has_finished(lifo):
    cfg = make_config(40, mode="async", base="random")
    store = MemoryStore()
    finished_before: dict[int, list[TrialRecord]] = {}
    executor = ScriptedExecutor(4, levels=50, lifo=lifo)
    original_add = store.add

    def add(proposals):
        ids = original_add(proposals)
        finished_before[ids[0]] = [r for r in store.trials() if r.finished]
        return ids

    store.add = add  # type: ignore[method-assign]
    records = search(cfg, executor, store)
    promotions = [r for r in records if r.origin["kind"] == "promotion"]
    assert promotions and max(rung_of(r) for r in records) == 2
    for p in promotions:
        lower = [r for r in finished_before[p.id] if rung_of(r) == p.origin["rung"] - 1]
        top = brute_force_top(lower, len([r for r in lower if r.done]) // 3,
                              cfg.search.objectives)  # fmt: skip
        assert p.origin["parent"] in top
    parents = [p.origin["parent"] for p in promotions]
    assert len(parents) == len(set(parents))  # none promoted twice


# --- the state lives in the trial rows: kill anywhere, resume to the same end -------------


def run_store(path: Path, cfg, executor) -> None:
    store = SQLiteStore(path)
    try:
        search(cfg, executor, store)
    finally:
        store.close()


MODES = {
    "sync": {},
    "async": {"mode": "async"},  # ASHA
    "hyperband": {"hyperband": True},
}


@pytest.fixture(scope="module", params=sorted(MODES))
def straight_sh(tmp_path_factory, request):
    path = tmp_path_factory.mktemp("sh") / "trials.sqlite"
    cfg = make_config(17, base="evolution", population=3, sample_size=2, **MODES[request.param])
    run_store(path, cfg, ScriptedExecutor(2))
    state = end_state(path)
    assert len(state) == 17 and '"rung": 2' in " ".join(row[3] for row in state)
    return cfg, state


@pytest.mark.parametrize("point", ["start", "finish", "add", "_update", "next_outcome"])
@pytest.mark.parametrize("at", [2, 9, 11, 14])
def test_killed_anywhere_resumes_to_the_same_rungs_and_choice(tmp_path, monkeypatch,
                                                              straight_sh, point, at):  # fmt: skip
    cfg, expected = straight_sh
    path = tmp_path / "trials.sqlite"
    with monkeypatch.context() as patch:
        if point == "next_outcome":
            original = ScriptedExecutor.next_outcome
            injector = Injector.__new__(Injector)
            injector.point, injector.at, injector.calls = point, at, 0
            patch.setattr(ScriptedExecutor, "next_outcome",
                          lambda s: (injector._tick(), original(s))[1])  # fmt: skip
        else:
            Injector(patch, point, at)
        with pytest.raises(Killed):
            run_store(path, cfg, ScriptedExecutor(2))
    run_store(path, cfg, ScriptedExecutor(2))
    state = end_state(path)
    assert state == expected  # ids, genotypes, origins (rung, budget, parent), results
    store = SQLiteStore(path, read_only=True)
    reference = tmp_path / "reference.sqlite"
    run_store(reference, cfg, ScriptedExecutor(2))
    again = SQLiteStore(reference, read_only=True)
    try:
        mine, theirs = store.trials(), again.trials()
        assert choose(mine, "accuracy", None)[0].id == choose(theirs, "accuracy", None)[0].id
    finally:
        store.close()
        again.close()


# --- derive and status read the highest rung ----------------------------------------------


def test_derive_and_best_pick_from_the_highest_rung():
    records = search(make_config(13, base="random"), ScriptedExecutor(1))
    top = top_rung(records)
    assert {rung_of(r) for r in top} == {2} and len(top) == 1
    chosen, ranking = choose(records, "accuracy", None)
    assert chosen.id == top[0].id and [r.id for r in ranking] == [top[0].id]
    assert best_trial(records).id == top[0].id
    every, ranking = choose(records, "accuracy", None, rung="all")
    assert len(ranking) == 13 and every.id == top[0].id  # 9 epochs score highest here
    _, ranking = choose(records, "accuracy", None, rung=0)
    assert {rung_of(r) for r in ranking} == {0} and len(ranking) == 9


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize("search_settings,message", [
    ({"eta": 1}, "search.eta must be a whole number >= 2"),
    ({"mode": "fast"}, "search.mode is 'fast'"),
    ({"promotion": "warm"}, "search.promotion is 'warm'"),
    ({"rung_epochs": [3, 1]}, "must not decrease"),
    ({"rung_epochs": [1, 3], "rung_train_size": [100]}, "1 sizes for 2 rungs"),
    ({"hyperband": True, "mode": "async"}, "mode: sync"),
    ({"promotion": "continue", "rung_train_size": [100, 200, 300]}, "same rung_train_size"),
    ({"base": "successive_halving"}, "cannot be successive_halving"),
    ({"base": "evolutoin"}, "evolution"),
    ({"rung_epochs": [3, 3, 9]}, r"rungs 0 and 1 both train 3 epochs on the same images"),
    ({"rungs": 4}, r"rungs 0 and 1 both train 1 epochs"),  # 9 epochs / 3^k: 1, 1, 3, 9
])  # fmt: skip
def test_bad_settings_are_one_line_errors(search_settings, message):
    with pytest.raises(ConfigError, match=message) as err:
        SearchRun(make_config(5, **search_settings), load_search_space(SPACE), MemoryStore(),
                  lambda g: 1.0)  # fmt: skip
    assert "\n" not in str(err.value)


def test_rung_limits_checked_against_the_config():
    cfg = config_from_dict({"search_space": SPACE, "train": {"epochs": 9, "warmup_epochs": 2},
                            "search": {"controller": "successive_halving"}})  # fmt: skip
    with pytest.raises(ConfigError, match="warmup_epochs=2 is longer than the rung's 1"):
        SearchRun(cfg, load_search_space(SPACE), MemoryStore(), lambda g: 1.0)
    cfg = config_from_dict({"search_space": SPACE, "data": {"search_train_size": 200},
                            "train": {"batch_size": 50},
                            "search": {"controller": "successive_halving",
                                       "rung_train_size": [100, 200, 400]}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"400 exceeds data\.search_train_size 200"):
        SearchRun(cfg, load_search_space(SPACE), MemoryStore(), lambda g: 1.0)
    cfg = config_from_dict({"search_space": SPACE, "train": {"batch_size": 50},
                            "search": {"controller": "successive_halving",
                                       "rung_train_size": [30, 100, 300]}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"size 30 is smaller than train\.batch_size 50"):
        SearchRun(cfg, load_search_space(SPACE), MemoryStore(), lambda g: 1.0)
    # the same images at every rung but more epochs each time is fine; fewer is refused
    ok = make_config(5, rung_epochs=[1, 3, 9], rung_train_size=[100, 100, 100])
    SearchRun(ok, load_search_space(SPACE), MemoryStore(), lambda g: 1.0)


def test_rung_train_size_checked_against_the_split_before_the_run_dir(tmp_path):
    """Without data.search_train_size the split's size is known once the data is loaded:
    a rung asking for more is a one-line error then, before the run directory exists."""
    from bnn_nas.search.engine import open_search

    data = {"name": "cifar10_sample", "valid_fraction": 0.2}
    def config(sizes):
        return config_from_dict({"seed": 3, "device": "cpu", "search_space": SPACE,
                                 "data": data, "train": {"epochs": 9, "batch_size": 50},
                                 "search": {"controller": "successive_halving",
                                            "rung_train_size": sizes}})  # fmt: skip

    cfg = config([100, 200, 10**6])
    with pytest.raises(ConfigError) as err:
        open_search(cfg, tmp_path / "run", resume=False)
    message = str(err.value)
    assert "\n" not in message
    assert "search.rung_train_size of rung 2 is 1000000 images" in message
    assert "data.valid_fraction 0.2, data.search_train_size unset" in message
    assert "lower it to at most" in message
    assert not (tmp_path / "run").exists()
    search, _ = open_search(config([100, 200, 300]), tmp_path / "run", resume=False)
    search.store.close()


# --- edge limits hold for every proposal of a multi-fidelity search (hypothesis) ---------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    max_free=st.integers(0, 3),
    min_binary=st.integers(0, 3),
    base=st.sampled_from(["random", "evolution", "pareto"]),
    mode=st.sampled_from(["sync", "async"]),
    seed=st.integers(0, 2**16),
)
def test_edge_limits_hold_for_every_sampled_mutated_and_promoted_genotype(
    max_free, min_binary, base, mode, seed
):
    data = {**SPACE, "steps": 3, "max_free_edges": max_free, "min_binary_edges": min_binary}
    try:
        space = search_space_from_dict(data, "t")
    except ConfigError:
        return  # no cell meets the limits (tests/test_edge_limits.py checks that case)
    cfg = config_from_dict({
        "seed": seed, "search_space": data, "train": {"epochs": 4},
        "search": {"controller": "successive_halving", "budget": 24, "base": base,
                   "population": 3, "sample_size": 2, "eta": 2, "mode": mode},
    })  # fmt: skip
    records = search(cfg, ScriptedExecutor(2))
    assert len(records) == 24
    assert any(r.origin["kind"] == "mutation" for r in records) or base == "random"
    for r in records:
        space.validate(r.genotype)
        for kind in ("normal", "reduce"):
            assert within(r.genotype.cell(kind)[0], max_free, min_binary)


# --- end to end through the CLI, on the packaged sample --------------------------------

CLI_CONFIG = """\
seed: 2
device: cpu
search_space:
  steps: 1
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3]
  network: {cells: 2, channels: 4, stem_multiplier: 1}
data: {name: cifar10_sample, valid_fraction: 0.2, search_train_size: 100, search_valid_size: 50}
train: {epochs: 3, batch_size: 50, lr: 0.005, eval_batch_size: 50}
search: {controller: successive_halving, budget: BUDGET, base: random, eta: 2, bracket_size: 4,
         rung_epochs: [1, 2, 3], rung_train_size: [50, 100, 100], promotion: PROMOTION}
"""


def cli_config(tmp_path: Path, budget: int = 7, promotion: str = "retrain") -> Path:
    path = tmp_path / f"sh-{budget}-{promotion}.yaml"
    text = CLI_CONFIG.replace("BUDGET", str(budget)).replace("PROMOTION", promotion)
    if promotion == "continue":  # one search-train part for every rung
        text = text.replace("[50, 100, 100]", "[100, 100, 100]")
    path.write_text(text)
    return path


def rung_contents(run: Path) -> list[tuple]:
    store = SQLiteStore(run / "trials.sqlite", read_only=True)
    try:
        return [(r.id, r.hash, r.status.value, r.origin, r.result.metrics["accuracy"]
                 if r.result else None) for r in store.trials()]  # fmt: skip
    finally:
        store.close()


@pytest.mark.slow
def test_search_status_derive_through_the_cli(tmp_path):
    from tests.test_search_cli import cli

    run = tmp_path / "run"
    done = cli("search", "--config", str(cli_config(tmp_path)), "--run-dir", str(run))
    assert done.returncode == 0, done.stderr
    assert "random, rung 0 (1 ep, 50 img)" in done.stdout  # the progress lines
    assert "trial 7 " in done.stdout and ", rung 2 (3 ep, 100 img)" in done.stdout
    rows = rung_contents(run)
    assert [r[3]["rung"] for r in rows] == [0, 0, 0, 0, 1, 1, 2]
    budgets = [r[3].get("budget") for r in rows]
    assert budgets[3:5] == [{"epochs": 1, "train_size": 50}, {"epochs": 2, "train_size": 100}]
    status = cli("status", str(run))
    assert status.returncode == 0, status.stderr
    assert "rung 0 (1 ep, 50 img): 4 done" in status.stdout
    assert "rung 2 (3 ep, 100 img): 1 done" in status.stdout
    assert "promotion of" in status.stdout and "at rung 2, the highest reached" in status.stdout
    derived = cli("derive", str(run))
    assert derived.returncode == 0, derived.stderr
    assert "1 candidate at rung 2, the highest reached" in derived.stdout
    import yaml

    document = yaml.safe_load((run / "genotype.yaml").read_text())
    assert document["trial"] == 7 and document["rung"] == 2
    assert document["budget"] == {"epochs": 3, "train_size": 100}
    every = cli("derive", str(run), "--rung", "all", "-o", str(tmp_path / "all.yaml"))
    assert every.returncode == 0 and "7 candidates at rung" in every.stdout
    wrong = cli("derive", str(run), "--rung", "9")
    assert wrong.returncode != 0 and "no finished trial at rung 9; rungs reached: 0, 1, 2" in (
        wrong.stderr)  # fmt: skip


@pytest.mark.slow
def test_sigkill_mid_search_then_resume_gives_the_same_rungs_and_choice(tmp_path):
    """A real ``bnn-nas search`` SIGKILLed while rung 1 trains, then resumed: the same
    trials (rungs, budgets, parents, accuracies) and the same derived genotype as an
    uninterrupted search."""
    import signal
    import subprocess

    from tests.test_faults import rows as store_rows
    from tests.test_faults import search_cmd, wait_for
    from tests.test_search_cli import cli

    config = cli_config(tmp_path)
    straight = tmp_path / "straight"
    assert subprocess.run(search_cmd(config, straight), capture_output=True).returncode == 0
    run = tmp_path / "run"
    for moment in (lambda: len(store_rows(run)) >= 3, lambda: len(store_rows(run)) >= 5):
        proc = subprocess.Popen(search_cmd(config, run), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        assert wait_for(moment, timeout=300)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    resumed = subprocess.run(search_cmd(config, run), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert rung_contents(run) == rung_contents(straight)
    for target in (straight, run):
        assert cli("derive", str(target)).returncode == 0
    assert (run / "genotype.txt").read_text() == (straight / "genotype.txt").read_text()


# --- promotion: continue -------------------------------------------------------------------


def test_continued_rungs_equal_one_uninterrupted_training(tmp_path):
    """``promotion: continue``: rung 0 trains 1 epoch of the last rung's 3-epoch schedule and
    saves its state; the promoted trial continues from it to epoch 3. Its score equals one
    3-epoch training of the same genotype (the schedule, data order and RNG carry over)."""
    import torch

    from bnn_nas.search.evaluator import build_evaluator
    from bnn_nas.train.checkpoint import load_checkpoint

    cfg = config_from_dict({
        "seed": 1, "device": "cpu", "search_space": {"steps": 1, "ops": ["xnor_conv_3x3"],
                                                     "network": {"cells": 1, "channels": 4}},
        "data": {"name": "cifar10_sample", "valid_fraction": 0.2, "search_train_size": 100,
                 "search_valid_size": 50},
        "train": {"epochs": 3, "batch_size": 50, "eval_batch_size": 50},
    })  # fmt: skip
    ev = build_evaluator(cfg, torch.device("cpu"))
    genotype = ev.space.random_sample(random.Random(0))
    with pytest.raises(ConfigError, match="needs a run directory"):
        ev(genotype, budget=Budget(epochs=1, schedule_epochs=3, save="trial-1.pt"))
    ev.checkpoints = tmp_path / "rungs"
    low = ev(genotype, budget=Budget(epochs=1, schedule_epochs=3, save="trial-1.pt"))
    assert (tmp_path / "rungs" / "trial-1.pt").is_file()
    state = load_checkpoint(tmp_path / "rungs" / "trial-1.pt")  # weights only, checksummed
    assert state["epoch"] == 0 and len(state["metrics"]) == 1
    reports: list[tuple[int, int]] = []
    high = ev(genotype, budget=Budget(epochs=3, schedule_epochs=3, save="trial-2.pt",
                                      resume="trial-1.pt"),
              on_epoch=lambda done, epochs: reports.append((done, epochs)))  # fmt: skip
    assert reports == [(1, 2), (2, 2)]  # its own 2 epochs, not epochs 2-3 of 3 (the bar)
    straight = ev(genotype)
    assert high.accuracy == straight.accuracy and high.loss == straight.loss
    assert low.loss != high.loss
    with pytest.raises(Exception, match="parent checkpoint"):
        ev(genotype, budget=Budget(epochs=3, schedule_epochs=3, save="trial-3.pt",
                                   resume="trial-9.pt"))  # fmt: skip


def test_continued_budgets_in_the_trial_rows():
    records = search(make_config(13, promotion="continue"), ScriptedExecutor(1))
    promoted = next(r for r in records if r.origin["kind"] == "promotion")
    assert promoted.origin["budget"] == {"epochs": 3, "schedule_epochs": 9, "continue": True}
    parent = promoted.origin["parent"]
    assert budget_of(promoted) == Budget(epochs=3, schedule_epochs=9,
                                         save=f"trial-{promoted.id}.pt",
                                         resume=f"trial-{parent}.pt")  # fmt: skip
    assert budget_of(records[0]).resume is None


# --- plot shows the rungs -----------------------------------------------------------------


def test_plot_marks_each_rung_and_draws_the_highest_rungs_front(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from bnn_nas.search.plot import draw_search, plot_search

    records = search(make_config(13, base="random"), ScriptedExecutor(1))
    fig = draw_search(records)
    try:
        scatter_panel, right = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        labels = scatter_panel.get_legend_handles_labels()[1]
        assert labels == ["rung 0", "rung 1", "rung 2", "Pareto front (rung 2)"]
        counts = [len(c.get_offsets()) for c in scatter_panel.collections]
        assert counts == [9, 3, 1]
        front_line = scatter_panel.get_lines()[0]
        assert len(front_line.get_xdata()) == 1  # the one trial of rung 2
        assert right.get_legend_handles_labels()[1][-1] == "best so far (rung 2)"
    finally:
        plt.close(fig)
    assert plot_search(records, tmp_path / "s.png").is_file()


def test_trials_and_pareto_csv_carry_rung_and_budget(tmp_path):
    import csv

    from bnn_nas.search.derive import pareto_trials
    from bnn_nas.search.export import write_pareto_csv, write_trials_csv

    records = search(make_config(13, rung_train_size=[50, 100, 150]), ScriptedExecutor(1))
    write_trials_csv(tmp_path / "trials.csv", records)
    write_pareto_csv(tmp_path / "pareto.csv", records)
    with (tmp_path / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:9] == ["id", "status", "hash", "attempts", "origin", "parent",
                                 "rung", "epochs", "train_size"]  # fmt: skip
    assert [(r["rung"], r["epochs"], r["train_size"]) for r in rows][8:10] == [
        ("0", "1", "50"), ("1", "3", "100")]  # fmt: skip
    assert {rung_of(r) for r in pareto_trials(records)} == {2}  # the highest rung's front
    with (tmp_path / "pareto.csv").open() as handle:
        assert [r["rung"] for r in csv.DictReader(handle)] == ["2"]
    plain = [r for r in search(make_config(3, controller="random"), ScriptedExecutor(1))]
    write_trials_csv(tmp_path / "plain.csv", plain)
    with (tmp_path / "plain.csv").open() as handle:
        assert "rung" not in next(csv.DictReader(handle))  # other searches: as before


def test_the_base_controllers_own_settings_are_written_in_the_search_section():
    """Any controller can be the base, a plugin's with settings of its own too."""
    from dataclasses import dataclass

    from bnn_nas.extensions import CONTROLLERS, register_controller
    from bnn_nas.search.controllers import RandomSearch

    @dataclass(frozen=True)
    class OffsetSettings:
        offset: int = 0

    @register_controller("t_offset_random", settings=OffsetSettings)
    class OffsetRandom(RandomSearch):
        pass

    try:
        cfg = make_config(5, base="t_offset_random", offset=3)
        run = SearchRun(cfg, load_search_space(SPACE), MemoryStore(), lambda g: 1.0)
        assert run.controller.base.settings == OffsetSettings(offset=3)
        with pytest.raises(ConfigError, match=r"unknown key search\.offset"):
            make_config(5, base="random", offset=3)  # random has no such setting
        with pytest.raises(ConfigError, match=r"search\.base: unknown controller 'randon'; "
                                              r"did you mean random"):  # fmt: skip
            make_config(5, base="randon")
        with pytest.raises(ConfigError, match=r"sample_size 5 exceeds search\.population 2"):
            make_config(5, base="evolution", population=2, sample_size=5)
    finally:
        CONTROLLERS.unregister("t_offset_random")


@pytest.mark.slow
def test_a_continued_search_through_the_cli_killed_and_resumed(tmp_path):
    """``promotion: continue`` end to end: checkpoints in RUN_DIR/rungs, promoted trials
    start from their parent's; SIGKILLed while rung 1 trains and resumed, the same trials
    and scores as an uninterrupted search."""
    import signal
    import subprocess

    from tests.test_faults import rows as store_rows
    from tests.test_faults import search_cmd, wait_for

    config = cli_config(tmp_path, promotion="continue")
    straight = tmp_path / "straight"
    done = subprocess.run(search_cmd(config, straight), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    contents = rung_contents(straight)
    assert [r[3]["budget"] for r in contents][4] == {"epochs": 2, "train_size": 100,
                                                     "schedule_epochs": 3, "continue": True}
    assert sorted(p.name for p in (straight / "rungs").iterdir()) == [
        f"trial-{i}.pt" for i in range(1, 8)]  # fmt: skip
    run = tmp_path / "run"
    proc = subprocess.Popen(search_cmd(config, run), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    assert wait_for(lambda: len(store_rows(run)) >= 6, timeout=300)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(search_cmd(config, run), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert rung_contents(run) == contents
