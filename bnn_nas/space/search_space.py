"""The cell search space: which ops each cell may use, how many steps, how the net is laid out.

Loaded from YAML (``search_spaces/*.yaml``); op names are checked against the primitive
registry on load, and each op's options are validated by building it once, so a bad
space fails before any training starts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from itertools import combinations, combinations_with_replacement
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from bnn_nas.errors import BnnNasError, ConfigError, GenotypeError
from bnn_nas.primitives import get_primitive
from bnn_nas.primitives.builtin import REDUCE_SKIPS
from bnn_nas.space.cell_parts import CELL_SHORTCUTS, PREPROCESS_CHOICES, STEMS
from bnn_nas.space.drawing import cell_graph, to_dot
from bnn_nas.space.edge_limits import (
    LIMIT_KEYS,
    CellLimits,
    LimitedCell,
    edge_counts,
    limits_from_dict,
)
from bnn_nas.space.genotype import KINDS, Edge, Genotype, validate_genotype

DEFAULT_SPACE = "bnn_darts"


@dataclass(frozen=True)
class OpChoice:
    """One op a cell may use: a registered primitive and the options it is built with."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)


@dataclass(frozen=True)
class NetworkLayout:
    """How cells are stacked into a network (the parts: bnn_nas/space/cell_parts.py).

    ``reduction_cells``: indices of reduction cells; by default at 1/3 and 2/3 of the depth
    (DARTS). ``preprocess``: the 1x1 conv that adapts cell inputs, ``float``, a binary
    unit with the ``xnor`` / ``bireal`` family's settings, or ``bnas`` (Kim et al.).
    ``stem``: ``cifar`` (DARTS), ``bnas`` (BN -> 3x3 conv -> ReLU) or ``imagenet`` (DARTS's
    three stride-2 convs; ``stem_multiplier`` unused). ``cell_shortcut: identity``: BNAS's
    shortcut around every cell but the first. ``auxiliary_head``: DARTS's auxiliary
    classifier at 2/3 of the depth (its loss weight: ``train.auxiliary_weight``).
    """

    cells: int = 8
    channels: int = 16
    stem_multiplier: int = 3
    reduction_cells: tuple[int, ...] | None = None
    preprocess: str = "float"
    stem: str = "cifar"
    cell_shortcut: str = "none"
    auxiliary_head: bool = False

    def __post_init__(self) -> None:
        for key in ("cells", "channels", "stem_multiplier"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"network.{key} must be a positive integer, not {value!r}")
        for key, choices in (
            ("preprocess", PREPROCESS_CHOICES),
            ("stem", STEMS),
            ("cell_shortcut", CELL_SHORTCUTS),
        ):
            if getattr(self, key) not in choices:
                raise ConfigError(
                    f"network.{key} {getattr(self, key)!r} is invalid; "
                    f"choose one of {', '.join(choices)}"
                )
        if not isinstance(self.auxiliary_head, bool):
            raise ConfigError(
                f"network.auxiliary_head must be true or false, not {self.auxiliary_head!r}"
            )
        if self.reduction_cells is not None:
            cells = tuple(self.reduction_cells)
            if any(isinstance(i, bool) or not isinstance(i, int) for i in cells) or any(
                not 0 <= i < self.cells for i in cells
            ):
                last = self.cells - 1
                raise ConfigError(
                    f"network.reduction_cells {list(cells)} must be cell indices 0..{last}"
                )
            object.__setattr__(self, "reduction_cells", tuple(sorted(set(cells))))

    @property
    def reductions(self) -> tuple[int, ...]:
        if self.reduction_cells is not None:
            return self.reduction_cells
        if self.cells < 3:
            return ()
        return tuple(sorted({self.cells // 3, 2 * self.cells // 3}))


@dataclass(frozen=True)
class SearchSpace:
    """Ops per cell kind, steps per cell, and the network layout; immutable.

    ``distinct_inputs``: the two edges of a step read different nodes (as in every DARTS
    genotype). Sampled genotypes concatenate all intermediate nodes. ``reduce_skip``: what
    ``skip_connect`` is at stride 2: DARTS's ``float`` factorized reduce or a ``binary``
    one (EBNAS / BATS); an op's own ``reduce_skip`` option wins. ``normal_limits`` /
    ``reduce_limits``: caps on a cell's parameter-free edges and floors on its binary ones
    (:mod:`bnn_nas.space.edge_limits`; YAML ``max_free_edges`` / ``min_binary_edges``).
    """

    name: str
    normal_ops: tuple[OpChoice, ...]
    reduce_ops: tuple[OpChoice, ...]
    steps: int = 4
    distinct_inputs: bool = True
    network: NetworkLayout = field(default_factory=NetworkLayout)
    reduce_skip: str = "float"
    normal_limits: CellLimits = field(default_factory=CellLimits)
    reduce_limits: CellLimits = field(default_factory=CellLimits)

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"search space {self.name}: steps must be a positive integer")
        if self.reduce_skip not in REDUCE_SKIPS:
            raise ConfigError(
                f"search space {self.name}: reduce_skip {self.reduce_skip!r} is invalid; "
                f"choose one of {', '.join(REDUCE_SKIPS)}"
            )
        for kind in KINDS:
            ops = self.ops(kind)
            if not ops:
                raise ConfigError(f"search space {self.name}: {kind}_ops is empty; list some ops")
            names = [op.name for op in ops]
            if len(set(names)) != len(names):
                dup = next(n for n in names if names.count(n) > 1)
                raise ConfigError(f"search space {self.name}: {kind}_ops lists {dup!r} twice")

    # --- ops -------------------------------------------------------------------------
    def ops(self, kind: str) -> tuple[OpChoice, ...]:
        if kind not in KINDS:
            raise GenotypeError(f"unknown cell kind {kind!r}; use 'normal' or 'reduce'")
        return self.normal_ops if kind == "normal" else self.reduce_ops

    def limits(self, kind: str) -> CellLimits:
        return self.normal_limits if kind == "normal" else self.reduce_limits

    def op_names(self, kind: str) -> tuple[str, ...]:
        return tuple(op.name for op in self.ops(kind))

    def op_options(self, kind: str, name: str) -> dict[str, Any]:
        """Options to build ``name`` with in a ``kind`` cell ({} for ops outside the space)."""
        options: dict[str, Any] = {}
        for op in self.ops(kind):
            if op.name == name:
                options = op.options_dict
                break
        if name == "skip_connect" and kind == "reduce" and self.reduce_skip != "float":
            options = {"reduce_skip": self.reduce_skip, **options}
        return options

    def check_primitives(self) -> None:
        """Every op is registered and its options are valid (each is built once, small).

        Built at the network's width (at stride 1 and, in reduction cells, 2), so options
        that constrain channel counts (``groups``) are checked against the width used.
        """
        C = self.network.channels
        for kind in KINDS:
            for op in self.ops(kind):
                spec = get_primitive(op.name)
                for stride in (1, 2) if kind == "reduce" else (1,):
                    spec.build(C, C, stride, **self.op_options(kind, op.name))
        self.check_limits()

    def check_limits(self) -> None:
        """Raise ConfigError when no cell of a kind can meet that kind's edge limits."""
        for kind in KINDS:
            limits = self.limits(kind)
            if limits.unset or self._limited_cell(kind).size:
                continue
            precisions = [get_primitive(name).precision for name in self.op_names(kind)]
            raise ConfigError(
                f"search space {self.name}: no {kind} cell meets {limits.describe()}: a cell "
                f"has {2 * self.steps} edges and its {len(precisions)} ops are "
                f"{precisions.count('binary')} binary, {precisions.count('free')} "
                f"parameter-free, {precisions.count('float')} float"
            )

    def _limited_cell(self, kind: str) -> LimitedCell:
        choices = [self._step_choices(kind, step) for step in range(self.steps)]
        return LimitedCell(choices, self.limits(kind))

    # --- genotypes -----------------------------------------------------------------
    def validate(self, genotype: Genotype) -> None:
        """Raise GenotypeError naming the cell, step and edge that do not fit this space."""
        validate_genotype(
            genotype,
            normal_ops=self.op_names("normal"),
            reduce_ops=self.op_names("reduce"),
            steps=self.steps,
        )
        if self.distinct_inputs:
            for kind in KINDS:
                edges, _ = genotype.cell(kind)
                for step in range(self.steps):
                    (_, a), (_, b) = edges[2 * step : 2 * step + 2]
                    if a == b:
                        raise GenotypeError(
                            f"{kind} cell, step {step}: both edges read node {a}, but search "
                            f"space {self.name} requires two different inputs per step"
                        )
        for kind in KINDS:
            limits = self.limits(kind)
            if not limits.unset:
                edges, _ = genotype.cell(kind)
                problem = limits.violation(edge_counts(edges), kind, self.name)
                if problem:
                    raise GenotypeError(problem)

    def contains(self, genotype: Genotype) -> bool:
        try:
            self.validate(genotype)
        except GenotypeError:
            return False
        return True

    def _step_choices(self, kind: str, step: int) -> list[tuple[Edge, Edge]]:
        """Every distinct (unordered) pair of edges step ``step`` may have."""
        names = self.op_names(kind)
        inputs = range(step + 2)
        if self.distinct_inputs:
            return [
                ((op_a, a), (op_b, b))
                for a, b in combinations(inputs, 2)
                for op_a in names
                for op_b in names
            ]
        edges = [(op, i) for i in inputs for op in names]
        return list(combinations_with_replacement(edges, 2))

    def _step_count(self, kind: str, step: int) -> int:
        k, n = len(self.ops(kind)), step + 2
        if self.distinct_inputs:
            return math.comb(n, 2) * k * k
        return math.comb(n * k + 1, 2)

    def size(self) -> int:
        """The exact number of distinct (canonical) genotypes a sample can produce."""
        total = 1
        for kind in KINDS:
            if not self.limits(kind).unset:
                total *= self._limited_cell(kind).size
                continue
            for step in range(self.steps):
                total *= self._step_count(kind, step)
        return total

    def _concat(self) -> tuple[int, ...]:
        return tuple(range(2, self.steps + 2))

    def random_sample(self, rng: random.Random) -> Genotype:
        """A genotype drawn uniformly from the space's distinct genotypes (those within
        the edge limits, when set: weighted draws, never rejection)."""
        cells = {}
        for kind in KINDS:
            edges: list[Edge] = []
            if self.limits(kind).unset:
                for step in range(self.steps):
                    edges.extend(rng.choice(self._step_choices(kind, step)))
            else:
                cell = self._limited_cell(kind)
                if not cell.size:  # a space built in code, not loaded: say why
                    self.check_limits()
                edges = cell.sample(rng)
            cells[kind] = tuple(edges)
        concat = self._concat()
        return Genotype(cells["normal"], concat, cells["reduce"], concat)

    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype:
        """Change one op or one input of one edge; the result is valid (edge limits
        included) and different; a change that breaks a limit is drawn again."""
        self.validate(genotype)
        original = genotype.hash
        for _ in range(1000):
            kind = rng.choice(KINDS)
            edges, _ = genotype.cell(kind)
            position = rng.randrange(len(edges))
            step = position // 2
            op, index = edges[position]
            other_index = edges[position ^ 1][1]
            if rng.random() < 0.5:
                choices = [name for name in self.op_names(kind) if name != op]
                if not choices:
                    continue
                new_edge = (rng.choice(choices), index)
            else:
                choices = [
                    i
                    for i in range(step + 2)
                    if i != index and not (self.distinct_inputs and i == other_index)
                ]
                if not choices:
                    continue
                new_edge = (op, rng.choice(choices))
            new_edges = list(edges)
            new_edges[position] = new_edge
            mutated = _replace_cell(genotype, kind, tuple(new_edges))
            if mutated.hash != original and self.contains(mutated):
                return mutated
        raise GenotypeError(f"search space {self.name} has no neighbour of this genotype")

    # --- views --------------------------------------------------------------------
    def graph(self, genotype: Genotype, kind: str) -> nx.DiGraph:
        return cell_graph(genotype, kind)

    def dot(self, genotype: Genotype) -> str:
        return to_dot(genotype)


def _replace_cell(g: Genotype, kind: str, edges: tuple[Edge, ...]) -> Genotype:
    if kind == "normal":
        return Genotype(edges, g.normal_concat, g.reduce, g.reduce_concat)
    return Genotype(g.normal, g.normal_concat, edges, g.reduce_concat)


# --- loading ----------------------------------------------------------------------------

_SPACE_KEYS = {
    "name", "normal_ops", "reduce_ops", "ops", "steps", "distinct_inputs", "network",
    "reduce_skip", *LIMIT_KEYS,
}  # fmt: skip
_NETWORK_KEYS = {
    "cells", "channels", "stem_multiplier", "reduction_cells", "preprocess", "stem",
    "cell_shortcut", "auxiliary_head",
}  # fmt: skip


def _op_choice(item: Any, where: str) -> OpChoice:
    if isinstance(item, str):
        return OpChoice(item)
    if isinstance(item, Mapping) and isinstance(item.get("name"), str):
        options = {k: v for k, v in item.items() if k != "name"}
        return OpChoice(item["name"], tuple(sorted(options.items())))
    raise ConfigError(
        f"{where}: op {item!r} must be a primitive name or a mapping {{name: ..., option: ...}}"
    )


def search_space_from_dict(data: Mapping[str, Any], where: str) -> SearchSpace:
    """Build and check a search space from its mapping form; ``where`` names the source."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a search space must be a mapping, not {type(data).__name__}")
    unknown = sorted(set(data) - _SPACE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown search-space key {unknown[0]!r}; "
            f"{_did_you_mean(unknown[0], _SPACE_KEYS)}allowed: {', '.join(sorted(_SPACE_KEYS))}"
        )
    shared = data.get("ops")
    lists = {}
    for kind in KINDS:
        raw = data.get(f"{kind}_ops", shared)
        if not isinstance(raw, Sequence) or isinstance(raw, str):
            raise ConfigError(f"{where}: {kind}_ops (or ops) must be a list of primitives")
        lists[kind] = tuple(_op_choice(item, f"{where}: {kind}_ops") for item in raw)
    network = data.get("network") or {}
    if not isinstance(network, Mapping):
        raise ConfigError(f"{where}: network must be a mapping")
    bad = sorted(set(network) - _NETWORK_KEYS)
    if bad:
        raise ConfigError(
            f"{where}: unknown network key {bad[0]!r}; {_did_you_mean(bad[0], _NETWORK_KEYS)}"
            f"allowed: {', '.join(sorted(_NETWORK_KEYS))}"
        )
    limits = limits_from_dict(data, where)
    try:
        space = SearchSpace(
            name=str(data.get("name", Path(where).stem)),
            normal_ops=lists["normal"],
            reduce_ops=lists["reduce"],
            steps=data.get("steps", 4),
            distinct_inputs=bool(data.get("distinct_inputs", True)),
            network=NetworkLayout(**network),
            reduce_skip=data.get("reduce_skip", "float"),
            normal_limits=limits["normal"],
            reduce_limits=limits["reduce"],
        )
        space.check_primitives()
    except BnnNasError as err:  # said once: where, not also "search space NAME: "
        text = str(err).removeprefix(f"search space {data.get('name', Path(where).stem)}: ")
        raise ConfigError(f"{where}: {text}") from None
    return space


def _did_you_mean(word: Any, choices: Any) -> str:
    """``did you mean X? `` for the closest of ``choices``, else nothing."""
    import difflib

    close = difflib.get_close_matches(str(word)[:100], sorted(choices), n=1)
    return f"did you mean {close[0]}? " if close else ""


def builtin_space_path(name: str) -> Path | None:
    """Path of a search space shipped with bnn-nas (``bnn_darts``, ``bnas_kim``, ...)."""
    path = Path(str(resources.files("bnn_nas.search_spaces") / f"{name}.yaml"))
    return path if path.is_file() else None


def builtin_space_names() -> list[str]:
    """The search spaces shipped with bnn-nas, by name."""
    folder = resources.files("bnn_nas.search_spaces")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_search_space(source: str | Path | Mapping[str, Any] | None = None) -> SearchSpace:
    """A search space from a YAML path, a built-in name, or an inline mapping."""
    if source is None:
        source = DEFAULT_SPACE
    if isinstance(source, Mapping):
        return search_space_from_dict(source, "inline search_space")
    path = Path(source)
    if not path.is_file():
        builtin = builtin_space_path(str(source))
        if builtin is None:
            names = builtin_space_names()
            raise ConfigError(
                f"search space {source} not found; {_did_you_mean(path.stem, names)}pass a "
                f"YAML file or a built-in name ({', '.join(names)})"
            )
        path = builtin
    try:
        from bnn_nas.io import load_yaml, read_text_file

        data = load_yaml(read_text_file(path, "search space"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}; fix the file") from None
    return search_space_from_dict(data, str(path))
