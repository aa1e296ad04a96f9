"""Controllers: duplicates, determinism, rebuilt state, and search quality on a known optimum."""

from __future__ import annotations

import random
import statistics
from dataclasses import replace

import pytest

from bnn_nas.config import Config, SearchConfig
from bnn_nas.search.controllers import ParetoSearch, ParetoSettings
from bnn_nas.search.engine import SearchRun, format_error
from bnn_nas.search.executors import LocalExecutor
from bnn_nas.search.store import MemoryStore
from bnn_nas.search.trials import TrialResult
from bnn_nas.space.genotype import Genotype
from bnn_nas.space.search_space import load_search_space, search_space_from_dict

SPACE = load_search_space("bnn_darts")
TARGET = SPACE.random_sample(random.Random(12345))


def similarity(g: Genotype) -> float:
    """Synthetic objective with a known optimum (TARGET): edges that match it, canonically."""
    a, b = g.canonical(), TARGET.canonical()
    same = sum(x == y for x, y in zip(a.normal + a.reduce, b.normal + b.reduce, strict=True))
    return same / len(a.normal + a.reduce)


def fake_result(score: float, ops: float = 1e6) -> TrialResult:
    return TrialResult.of(
        accuracy=score, loss=1 - score, train_loss=1 - score, bops=int(ops * 64), flops=0,
        ops=ops, binary_params=0, float_params=0, params=0, bytes=0.0, train_seconds=0.0,
    )  # fmt: skip


def local(evaluate) -> LocalExecutor:
    return LocalExecutor(evaluate, format_error)


def synthetic_search(controller: str, seed: int, budget: int, score=similarity) -> SearchRun:
    config = replace(Config(seed=seed), search=SearchConfig(
        controller=controller, budget=budget, population=10, sample_size=3))  # fmt: skip
    run = SearchRun(config, SPACE, MemoryStore(), lambda g: 1.0)
    run.prepare()
    run.run(local(lambda g: fake_result(score(g))))
    return run


def best_of(run: SearchRun) -> float:
    return max(r.result.accuracy for r in run.store.trials() if r.done)


def test_evolution_beats_random_on_a_known_optimum():
    budget, seeds = 100, range(20)
    evolution = [best_of(synthetic_search("evolution", s, budget)) for s in seeds]
    random_search = [best_of(synthetic_search("random", s, budget)) for s in seeds]
    # paired over seeds: the mean gain must exceed twice its standard error
    gains = [e - r for e, r in zip(evolution, random_search, strict=True)]
    mean_gain = statistics.mean(gains)
    standard_error = statistics.stdev(gains) / len(gains) ** 0.5
    assert mean_gain > 2 * standard_error and mean_gain > 0, (evolution, random_search)


@pytest.mark.parametrize("name", ["random", "evolution", "pareto"])
def test_no_duplicates_and_same_seed_same_proposals(name):
    small = search_space_from_dict({"steps": 1, "ops": ["skip_connect", "xnor_conv_3x3"]}, "t")
    assert small.size() == 16
    settings = SearchConfig(controller=name, population=4, sample_size=2)

    def proposals(seed):
        config = replace(Config(seed=seed), search=replace(settings, budget=16))
        run = SearchRun(config, small, MemoryStore(), lambda g: 1.0)
        run.run(local(lambda g: fake_result(similarity_small(g))))
        return [r.hash for r in run.store.trials()]

    a, b = proposals(1), proposals(1)
    assert a == b and len(set(a)) == len(a) == 16  # the whole space, each genotype once
    assert proposals(2) != a


def similarity_small(g: Genotype) -> float:
    return sum(op == "xnor_conv_3x3" for op, _ in g.normal + g.reduce) / 4


@pytest.mark.parametrize("name", ["random", "evolution", "pareto"])
def test_restored_controller_continues_like_the_uninterrupted_one(name):
    straight = synthetic_search(name, 7, 30)
    expected = [r.hash for r in straight.store.trials()]
    # stop after 12 trials, then rebuild a new controller from the store and go on
    settings = SearchConfig(controller=name, budget=12, population=10, sample_size=3)
    config = replace(Config(seed=7), search=settings)
    store = MemoryStore()
    first = SearchRun(config, SPACE, store, lambda g: 1.0)
    first.prepare()
    first.run(local(lambda g: fake_result(similarity(g))))
    config = replace(config, search=replace(config.search, budget=30))
    second = SearchRun(config, SPACE, store, lambda g: 1.0)
    second.prepare()
    second.run(local(lambda g: fake_result(similarity(g))))
    assert [r.hash for r in store.trials()] == expected


def test_pareto_controller_respects_max_ops():
    ops_of = lambda g: 1e6 * sum(op.startswith("xnor") for op, _ in g.normal + g.reduce)  # noqa: E731
    controller = ParetoSearch(SPACE, 0, ParetoSettings(population=6, max_ops=8e6), ops_of=ops_of)
    for proposal in controller.ask(20):
        assert ops_of(proposal.genotype) <= 8e6
