"""Unit tests of derive's choice (bnn_nas/search/derive.py): candidates within limits, the
ranking by accuracy, the front and its knee, picked by hand-computed cases."""

from __future__ import annotations

import random

import pytest

from bnn_nas.errors import ConfigError
from bnn_nas.objectives import Objective
from bnn_nas.search.derive import best_trial, candidates, choose, front, knee, rank_by_accuracy
from bnn_nas.search.trials import TrialRecord, TrialResult, TrialStatus
from bnn_nas.space.search_space import load_search_space

SPACE = load_search_space("bnn_darts")


def trial(i: int, accuracy: float, ops: float, status=TrialStatus.DONE, **metrics) -> TrialRecord:
    result = TrialResult.of(accuracy=accuracy, ops=ops, **metrics)
    return TrialRecord(i, SPACE.random_sample(random.Random(i)), status, {},
                       result=result if status is TrialStatus.DONE else None)  # fmt: skip


def ids(records) -> list[int]:
    return [r.id for r in records]


def test_the_knee_is_farthest_from_the_chord_on_a_log_ops_axis():
    # on a linear OPs axis 2e6 would sit beside 1e5 and the knee would be 3; on the log
    # axis (1e5 .. 1e8: 5 .. 8) trial 2 at log 6.3 with 0.45 bulges most above the chord
    recs = [trial(1, 0.10, 1e5), trial(2, 0.45, 2e6), trial(3, 0.50, 1e7), trial(4, 0.52, 1e8)]
    assert ids(front(recs)) == [1, 2, 3, 4]
    assert knee(front(recs)).id == 2


def test_a_knee_of_one_or_two_points_is_the_more_accurate():
    one, two = trial(1, 0.3, 1e6), trial(2, 0.4, 5e6)
    assert knee([one]).id == 1
    assert knee([one, two]).id == 2
    assert knee([two, one]).id == 2


def test_points_on_the_chord_tie_and_the_tie_goes_to_the_more_accurate():
    # equally spaced on both axes (log OPs), in exact binary fractions: distance 0 for all
    recs = [trial(1, 0.25, 1e5), trial(2, 0.5, 1e6), trial(3, 0.75, 1e7)]
    assert knee(front(recs)).id == 3


def test_the_front_drops_dominated_trials_and_orders_by_ops():
    recs = [trial(1, 0.5, 4e6), trial(2, 0.4, 5e6), trial(3, 0.3, 1e6), trial(4, 0.5, 4e6)]
    # 2 is worse and dearer than 1; 4 ties 1 exactly (neither dominates)
    assert sorted(ids(front(recs))) == [1, 3, 4]
    assert ids(front(recs))[0] == 3  # cheapest first


def test_ranking_by_accuracy_breaks_ties_by_ops_then_by_the_earlier_trial():
    recs = [trial(5, 0.5, 2e6), trial(2, 0.5, 1e6), trial(1, 0.5, 1e6), trial(3, 0.6, 9e6)]
    assert ids(rank_by_accuracy(recs)) == [3, 1, 2, 5]
    assert best_trial(recs).id == 3
    assert best_trial([]) is None


def test_choose_by_accuracy_and_by_pareto_within_a_limit():
    recs = [trial(1, 0.10, 1e5), trial(2, 0.45, 2e6), trial(3, 0.50, 1e7), trial(4, 0.52, 1e8)]
    chosen, ranking = choose(recs, "accuracy", None)
    assert chosen.id == 4 and ids(ranking) == [4, 3, 2, 1]
    chosen, ranking = choose(recs, "accuracy", 5e6)
    assert chosen.id == 2 and ids(ranking) == [2, 1]
    chosen, ranking = choose(recs, "pareto", None)
    assert chosen.id == 2 and ids(ranking) == [1, 2, 3, 4]
    chosen, ranking = choose(recs, "pareto", 2e7)  # the limit drops 4: the chord moves
    assert ids(ranking) == [1, 2, 3] and chosen.id == 2


def test_choose_skips_unfinished_trials_and_refuses_in_one_line():
    recs = [trial(1, 0.9, 1e5, TrialStatus.FAILED), trial(2, 0.4, 2e6),
            trial(3, 0.8, 1e5, TrialStatus.PENDING)]  # fmt: skip
    assert choose(recs, "accuracy", None)[0].id == 2
    with pytest.raises(ConfigError, match="no finished trial yet"):
        choose(recs[:1], "accuracy", None)
    with pytest.raises(ConfigError, match=r"no finished trial has OPs <= 1\.00M; the cheapest "
                       r"has 2\.00M"):  # fmt: skip
        choose(recs, "pareto", 1e6)
    with pytest.raises(ConfigError, match="--by 'params' is not one of accuracy, pareto"):
        choose(recs, "params", None)


def test_an_objective_limit_filters_like_max_ops():
    objectives = (Objective("accuracy", "maximize"), Objective("params", "minimize", limit=50))
    recs = [trial(1, 0.6, 1e6, params=100), trial(2, 0.5, 1e6, params=40)]
    assert ids(candidates(recs, None, objectives)) == [2]
    assert choose(recs, "accuracy", None, objectives)[0].id == 2
    over = [trial(3, 0.5, 1e6, params=60), trial(4, 0.4, 1e6, params=70)]
    with pytest.raises(ConfigError, match="params <= 50; the best has 60"):
        candidates(over, None, objectives)
