"""Pareto helpers against brute force."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bnn_nas.search.pareto import crowding_distance, dominates, non_dominated_sort, pareto_front

values = st.integers(0, 6).map(float)  # few distinct values: ties and duplicates are common
point_sets = st.lists(st.tuples(values, values), min_size=1, max_size=30)


def brute_front(points):
    return {i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)}


@given(point_sets)
def test_front_equals_brute_force(points):
    front = pareto_front(points)
    assert set(front) == brute_front(points)
    assert [points[i][1] for i in front] == sorted(points[i][1] for i in front)


@given(point_sets)
def test_sorting_peels_fronts(points):
    fronts = non_dominated_sort(points)
    assert sorted(i for f in fronts for i in f) == list(range(len(points)))
    remaining = list(range(len(points)))
    for front in fronts:
        sub = [points[i] for i in remaining]
        assert {remaining[i] for i in brute_front(sub)} == set(front)
        remaining = [i for i in remaining if i not in set(front)]


def test_dominance_and_crowding_by_hand():
    assert dominates((0.9, 10), (0.8, 10)) and dominates((0.9, 5), (0.9, 10))
    assert not dominates((0.9, 10), (0.9, 10)) and not dominates((0.95, 20), (0.9, 10))
    points = [(0.1, 1.0), (0.5, 2.0), (0.6, 4.0), (0.9, 8.0)]
    d = crowding_distance(points, [0, 1, 2, 3])
    assert d[0] == d[3] == float("inf")
    # interior: (acc gap + ops gap) / ranges = (0.6-0.1)/0.8 + (4-1)/7 for index 1
    assert abs(d[1] - (0.5 / 0.8 + 3 / 7)) < 1e-12
    assert abs(d[2] - (0.4 / 0.8 + 6 / 7)) < 1e-12
