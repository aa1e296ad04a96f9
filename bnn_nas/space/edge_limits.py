"""Limits on a cell's edges by the declared precision of their ops (issue 21, item 3).

A short proxy favours ops that need no training: the CIFAR-10 search derived a normal cell
with 5 pooling edges of 8. ``max_free_edges`` caps a cell's edges whose op the registry
declares ``free`` (zero, identity, pooling); ``min_binary_edges`` asks for at least that
many edges whose op is ``binary``. Both are counted per cell kind and read the registry's
``precision`` field, never op names.

Sampling under limits stays uniform over the genotypes that satisfy them, with no rejection:
a count of the completions of each partial cell (a small dynamic programme over (free,
binary) edge counts per step) weights every step's draw. The same count gives the exact
size of a limited space and tells at load time whether any cell meets the limits.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bnn_nas.errors import ConfigError
from bnn_nas.primitives import get_primitive
from bnn_nas.space.genotype import KINDS, Edge

LIMIT_KEYS = ("max_free_edges", "min_binary_edges")

Counts = tuple[int, int]  # (free edges, binary edges)


@dataclass(frozen=True)
class CellLimits:
    """``max_free``: at most this many ``free`` edges in the cell; ``min_binary``: at least
    this many ``binary`` ones. ``None``: no limit (the default, today's behaviour)."""

    max_free: int | None = None
    min_binary: int | None = None

    def __post_init__(self) -> None:
        for key, value in zip(LIMIT_KEYS, (self.max_free, self.min_binary), strict=True):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ConfigError(f"{key} must be an integer >= 0, not {value!r}")

    @property
    def unset(self) -> bool:
        return self.max_free is None and self.min_binary is None

    def allows(self, counts: Counts) -> bool:
        free, binary = counts
        if self.max_free is not None and free > self.max_free:
            return False
        return self.min_binary is None or binary >= self.min_binary

    def violation(self, counts: Counts, kind: str, space: str) -> str | None:
        """One line saying which limit ``counts`` break, or None."""
        free, binary = counts
        if self.max_free is not None and free > self.max_free:
            return (
                f"{kind} cell has {free} parameter-free edges (ops of precision free: zero, "
                f"identity, pooling), more than max_free_edges {self.max_free} of search "
                f"space {space}"
            )
        if self.min_binary is not None and binary < self.min_binary:
            return (
                f"{kind} cell has {binary} binary edges, fewer than min_binary_edges "
                f"{self.min_binary} of search space {space}"
            )
        return None

    def describe(self) -> str:
        parts = []
        if self.max_free is not None:
            parts.append(f"max_free_edges {self.max_free}")
        if self.min_binary is not None:
            parts.append(f"min_binary_edges {self.min_binary}")
        return " and ".join(parts) or "no limits"


def limits_from_dict(data: Mapping[str, Any], where: str) -> dict[str, CellLimits]:
    """Per-kind limits from a space mapping: each key an integer (both cells) or a mapping
    ``{normal: N, reduce: M}`` (a kind left out has no limit)."""
    per_kind: dict[str, dict[str, int | None]] = {kind: {} for kind in KINDS}
    for key, field in zip(LIMIT_KEYS, ("max_free", "min_binary"), strict=True):
        value = data.get(key)
        if isinstance(value, Mapping):
            bad = sorted(set(value) - set(KINDS))
            if bad:
                raise ConfigError(
                    f"{where}: {key} has unknown cell kind {bad[0]!r}; use normal and/or reduce"
                )
            for kind in KINDS:
                per_kind[kind][field] = value.get(kind)
        else:
            for kind in KINDS:
                per_kind[kind][field] = value
    try:
        return {kind: CellLimits(**per_kind[kind]) for kind in KINDS}
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def edge_counts(edges: Sequence[Edge]) -> Counts:
    """(free, binary) edges of a cell, by each op's declared precision."""
    precisions = [get_primitive(op).precision for op, _ in edges]
    return precisions.count("free"), precisions.count("binary")


class LimitedCell:
    """The steps' edge pairs of one cell kind, grouped by the counts they add, and the
    number of valid completions from each (step, counts so far)."""

    def __init__(self, choices: list[list[tuple[Edge, Edge]]], limits: CellLimits) -> None:
        self.groups: list[list[tuple[Counts, list[tuple[Edge, Edge]]]]] = []
        for step_choices in choices:
            by_counts: dict[Counts, list[tuple[Edge, Edge]]] = {}
            for pair in step_choices:
                by_counts.setdefault(edge_counts(pair), []).append(pair)
            self.groups.append(sorted(by_counts.items()))
        edges = 2 * len(choices)
        states = [(f, b) for f in range(edges + 1) for b in range(edges + 1 - f)]
        # ways[s][counts]: completions of steps s.. from counts that end within the limits
        self.ways: list[dict[Counts, int]] = [{} for _ in range(len(choices) + 1)]
        self.ways[-1] = {c: int(limits.allows(c)) for c in states}
        for step in reversed(range(len(choices))):
            later = self.ways[step + 1]
            self.ways[step] = {
                (f, b): sum(
                    len(pairs) * later.get((f + df, b + db), 0)
                    for (df, db), pairs in self.groups[step]
                )
                for f, b in states
            }

    @property
    def size(self) -> int:
        """Distinct cells within the limits."""
        return self.ways[0][(0, 0)]

    def sample(self, rng: random.Random) -> list[Edge]:
        """A cell drawn uniformly from those within the limits (one draw per step)."""
        counts: Counts = (0, 0)
        edges: list[Edge] = []
        for step, groups in enumerate(self.groups):
            r = rng.randrange(self.ways[step][counts])
            for (df, db), pairs in groups:
                after = (counts[0] + df, counts[1] + db)
                each = self.ways[step + 1].get(after, 0)
                if r < len(pairs) * each:
                    edges.extend(pairs[r // each])
                    counts = after
                    break
                r -= len(pairs) * each
        return edges
