"""Multi-objective helpers: non-dominated sorting and crowding distance (NSGA-II).

Objectives are maximised accuracy and minimised OPs.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]  # (accuracy, ops)


def dominates(a: Point, b: Point) -> bool:
    """``a`` is at least as accurate and as cheap as ``b``, and strictly better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def pareto_front(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points, by ascending OPs."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0]))
    front, best = [], float("-inf")
    for i in order:  # sweep by OPs: a point is kept if more accurate than all cheaper ones
        if points[i][0] > best:
            front.append(i)
            best = points[i][0]
        elif points[i][0] == best and points[i][1] == points[front[-1]][1]:
            front.append(i)  # an exact duplicate of a front point is not dominated either
    return front


def non_dominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Fronts of indices: front 0 is non-dominated, front 1 is after removing front 0, ..."""
    remaining = list(range(len(points)))
    fronts = []
    while remaining:
        local = pareto_front([points[i] for i in remaining])
        front = [remaining[i] for i in local]
        fronts.append(front)
        taken = set(front)
        remaining = [i for i in remaining if i not in taken]
    return fronts


def crowding_distance(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each index in ``front`` (boundary points: infinity)."""
    distance = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: float("inf") for i in front}
    for objective in (0, 1):
        ordered = sorted(front, key=lambda i: points[i][objective])
        low, high = points[ordered[0]][objective], points[ordered[-1]][objective]
        distance[ordered[0]] = distance[ordered[-1]] = float("inf")
        if high == low:
            continue
        for k in range(1, len(ordered) - 1):
            gap = points[ordered[k + 1]][objective] - points[ordered[k - 1]][objective]
            distance[ordered[k]] += gap / (high - low)
    return distance
