"""Multi-objective helpers: non-dominated sorting and crowding distance (NSGA-II).

A point is a tuple of objective values, one per objective; ``directions`` says which way
each is better (default: accuracy maximised, OPs minimised). Any number of objectives.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, ...]  # one value per objective, e.g. (accuracy, ops)
DEFAULT_DIRECTIONS = ("maximize", "minimize")


def _turned(point: Point, directions: Sequence[str]) -> tuple[float, ...]:
    """Smaller is better in every coordinate."""
    return tuple(-v if d == "maximize" else v for v, d in zip(point, directions, strict=True))


def dominates(a: Point, b: Point, directions: Sequence[str] = DEFAULT_DIRECTIONS) -> bool:
    """``a`` is at least as good as ``b`` in every objective and strictly better in one."""
    ta, tb = _turned(a, directions), _turned(b, directions)
    return all(x <= y for x, y in zip(ta, tb, strict=True)) and ta != tb


def pareto_front(
    points: Sequence[Point], directions: Sequence[str] = DEFAULT_DIRECTIONS
) -> list[int]:
    """Indices of the non-dominated points, ordered by the second objective then the
    first (for accuracy vs OPs: by ascending OPs); exact duplicates of a front point stay."""
    turned = [_turned(p, directions) for p in points]
    if len(directions) == 2:  # a sweep along the second objective, O(n log n)
        order = sorted(range(len(points)), key=lambda i: (turned[i][1], turned[i][0]))
        front: list[int] = []
        best = float("inf")
        for i in order:  # kept when better in the first objective than every point before
            if turned[i][0] < best:
                front.append(i)
                best = turned[i][0]
            elif turned[i][0] == best and turned[i][1] == turned[front[-1]][1]:
                front.append(i)  # an exact duplicate of a front point is not dominated either
        return front
    order = sorted(range(len(points)), key=lambda i: (*turned[i][1:], turned[i][0]))
    return [
        i for i in order
        if not any(dominates(points[j], points[i], directions) for j in range(len(points)))
    ]  # fmt: skip


def non_dominated_sort(
    points: Sequence[Point], directions: Sequence[str] = DEFAULT_DIRECTIONS
) -> list[list[int]]:
    """Fronts of indices: front 0 is non-dominated, front 1 is after removing front 0, ..."""
    remaining = list(range(len(points)))
    fronts = []
    while remaining:
        local = pareto_front([points[i] for i in remaining], directions)
        front = [remaining[i] for i in local]
        fronts.append(front)
        taken = set(front)
        remaining = [i for i in remaining if i not in taken]
    return fronts


def crowding_distance(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each index in ``front`` (boundary points: infinity).

    Computed on the raw values, objective by objective (the direction does not change a
    distance); ties keep the front's order.
    """
    distance = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: float("inf") for i in front}
    for objective in range(len(points[front[0]])):
        ordered = sorted(front, key=lambda i: points[i][objective])
        low, high = points[ordered[0]][objective], points[ordered[-1]][objective]
        distance[ordered[0]] = distance[ordered[-1]] = float("inf")
        if high == low:
            continue
        for k in range(1, len(ordered) - 1):
            gap = points[ordered[k + 1]][objective] - points[ordered[k - 1]][objective]
            distance[ordered[k]] += gap / (high - low)
    return distance
