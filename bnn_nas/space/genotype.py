"""The genotype: the frozen value that carries an architecture from search to final training.

A genotype lists, for the normal and the reduction cell, two ``(op, input)`` edges per
intermediate step and the nodes whose outputs the cell concatenates. Nodes 0 and 1 are the
cell inputs (s0, s1); node ``k >= 2`` is step ``k - 2``. Steps and edges are numbered from 0
in messages, like the node names in :mod:`bnn_nas.space.drawing`.

The text form is DARTS's, so published genotypes paste in. DARTS reads it back with ``eval``;
here it is read with :mod:`ast` and ``ast.literal_eval`` only, so text never runs code.
That reader lives in :mod:`bnn_nas.space.genotype_text` and the file loader in
:mod:`bnn_nas.space.genotype_files`; :func:`parse_genotype` and :func:`load_genotype`
here are their public entry points.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnn_nas.errors import GenotypeError
from bnn_nas.space.genotype_files import existing_file, load_file, looks_like_text, missing
from bnn_nas.space.genotype_form import (
    KEYS,
    KINDS,
    Edge,
    mapping_fields,
    read_concat,
    read_edges,
    suggest,
)
from bnn_nas.space.genotype_text import parse_text

__all__ = [
    "KEYS", "KINDS", "Edge", "Genotype", "format_genotype", "genotype_hash", "load_genotype",
    "parse_genotype", "validate_genotype",
]  # fmt: skip


@dataclass(frozen=True, repr=False)
class Genotype:
    """Both cells of an architecture; immutable so it can key stores and caches.

    Lists are normalised to tuples (and numpy integers to ``int``) so that equal
    architectures compare and hash equal however they were built. Only the form is
    checked here; :func:`validate_genotype` checks the structure against a search space.
    """

    normal: tuple[Edge, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Edge, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for kind in KINDS:
            object.__setattr__(self, kind, read_edges(getattr(self, kind), kind, "Genotype"))
            field = f"{kind}_concat"
            object.__setattr__(self, field, read_concat(getattr(self, field), field, "Genotype"))

    @property
    def normal_steps(self) -> int:
        """Intermediate nodes of the normal cell (two edges each)."""
        return len(self.normal) // 2

    @property
    def reduce_steps(self) -> int:
        """Intermediate nodes of the reduction cell (two edges each)."""
        return len(self.reduce) // 2

    def cell(self, kind: str) -> tuple[tuple[Edge, ...], tuple[int, ...]]:
        """The ``(edges, concat)`` of the ``"normal"`` or ``"reduce"`` cell."""
        if kind == "normal":
            return self.normal, self.normal_concat
        if kind == "reduce":
            return self.reduce, self.reduce_concat
        raise GenotypeError(f"unknown cell kind {kind!r}; use 'normal' or 'reduce'")

    def ops(self) -> frozenset[str]:
        """Every op name used by either cell, e.g. to check them against the registry."""
        return frozenset(op for edges in (self.normal, self.reduce) for op, _ in edges)

    def to_dict(self) -> dict[str, list[Any]]:
        """Plain lists and ints, for YAML and JSON (``safe_dump`` cannot write tuples)."""
        return {
            "normal": [[op, index] for op, index in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, index] for op, index in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genotype:
        """Inverse of :meth:`to_dict`; edges may also be ``{op: NAME, input: INDEX}`` mappings."""
        return cls(**mapping_fields(data, "genotype mapping"))

    def canonical(self) -> Genotype:
        """The representative of this architecture's equivalence class, used for the hash.

        A node sums its two edges, so their order is irrelevant: each step's pair is sorted
        by ``(input, op)``. The concat order sets the channel layout of the built cell, so
        :class:`Genotype` keeps it; but a permutation of channels is the same architecture
        to train from scratch, so here concat is sorted. Duplicates are kept (not dropped)
        so that two genotypes building different networks never share a canonical form;
        :func:`validate_genotype` rejects duplicates anyway. Steps are not renumbered:
        node indices are part of the identity.
        """
        return Genotype(
            normal=_canonical_edges(self.normal),
            normal_concat=tuple(sorted(self.normal_concat)),
            reduce=_canonical_edges(self.reduce),
            reduce_concat=tuple(sorted(self.reduce_concat)),
        )

    @property
    def hash(self) -> str:
        """Short stable identity of the architecture; see :func:`genotype_hash`."""
        return genotype_hash(self)

    def __str__(self) -> str:
        return format_genotype(self)

    def __repr__(self) -> str:
        # The DARTS text rather than tuples: it is what users paste and parse_genotype reads.
        return format_genotype(self)


def format_genotype(g: Genotype) -> str:
    """The DARTS text form, e.g. ``Genotype(normal=[('sep_conv_3x3', 0), ...], ...)``."""

    def edges(items: tuple[Edge, ...]) -> str:
        return "[" + ", ".join(f"({op!r}, {index})" for op, index in items) + "]"

    def concat(items: tuple[int, ...]) -> str:
        return "[" + ", ".join(str(node) for node in items) + "]"

    return (
        f"Genotype(normal={edges(g.normal)}, normal_concat={concat(g.normal_concat)}, "
        f"reduce={edges(g.reduce)}, reduce_concat={concat(g.reduce_concat)})"
    )


def genotype_hash(g: Genotype) -> str:
    """First 16 hex digits of the SHA-256 of the canonical text; keys the results store.

    Stable across processes and versions as long as :func:`format_genotype` is; a test pins
    the hash of DARTS V2 so that a format change cannot silently orphan stored trials.
    """
    return hashlib.sha256(format_genotype(g.canonical()).encode("utf-8")).hexdigest()[:16]


def parse_genotype(text: str) -> Genotype:
    """Read the DARTS text form without evaluating it.

    Accepts ``Genotype(...)``, a dotted prefix such as ``genotypes.Genotype(...)``, an
    assignment ``NAME = Genotype(...)`` as in DARTS's genotypes.py, ``#`` comments, and
    ``range(a, b)`` for a concat (DARTS logs print ``normal_concat=range(2, 6)``).
    """
    return Genotype(**parse_text(text, "genotype text"))


def load_genotype(text_or_path: str | os.PathLike[str]) -> Genotype:
    """A genotype from a file (YAML, JSON or DARTS text) or from DARTS text itself.

    ``.yaml``/``.yml``/``.json`` files hold the mapping form, or a mapping whose
    ``genotype`` key holds the DARTS text or the mapping form (what ``bnn-nas derive``
    writes; other keys are ignored). Any other file holds DARTS text. The loaded genotype
    is checked with :func:`validate_genotype` (structure only; op names are checked by the
    network builder against the registry).
    """
    if isinstance(text_or_path, os.PathLike):
        path: Path | None = Path(text_or_path).expanduser()
        if not path.is_file():
            raise GenotypeError(missing(str(text_or_path), path))
    elif isinstance(text_or_path, str):
        path = existing_file(text_or_path)
        if path is None:
            if not looks_like_text(text_or_path):
                raise GenotypeError(missing(text_or_path, Path(text_or_path).expanduser()))
            g = Genotype(**parse_text(text_or_path, "genotype text"))
            _validate_at(g, "genotype text")
            return g
    else:
        raise GenotypeError(
            f"a genotype must be given as a path or DARTS text, not {type(text_or_path).__name__}"
        )
    g = Genotype(**load_file(path))
    _validate_at(g, str(path))
    return g


def _validate_at(g: Genotype, where: str) -> None:
    try:
        validate_genotype(g)
    except GenotypeError as exc:
        raise GenotypeError(f"{where}: {exc}") from None


def validate_genotype(
    g: Genotype,
    *,
    normal_ops: Collection[str] | None = None,
    reduce_ops: Collection[str] | None = None,
    steps: int | None = None,
) -> None:
    """Check that ``g`` describes buildable cells, naming the cell, step and edge at fault.

    ``normal_ops``/``reduce_ops`` restrict each cell's ops independently (``None``: any
    name); ``steps`` requires that many intermediate nodes in both cells.
    """
    if not isinstance(g, Genotype):
        raise GenotypeError(f"expected a Genotype, not {type(g).__name__}; parse it first")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise GenotypeError(f"steps must be a positive integer, not {steps!r}")
    for kind, allowed in (("normal", normal_ops), ("reduce", reduce_ops)):
        edges, concat = g.cell(kind)
        _validate_cell(f"{kind} cell", edges, concat, allowed, steps)


# --- structure ----------------------------------------------------------------------------


def _validate_cell(
    cell: str,
    edges: tuple[Edge, ...],
    concat: tuple[int, ...],
    allowed: Collection[str] | None,
    steps: int | None,
) -> None:
    if not edges:
        raise GenotypeError(f"{cell} has no edges; give two ('op', input) edges per step")
    if len(edges) % 2:
        raise GenotypeError(
            f"{cell} has {len(edges)} edges, an odd number; give exactly two edges per step"
        )
    n = len(edges) // 2
    if steps is not None and n != steps:
        raise GenotypeError(
            f"{cell} has {n} steps ({len(edges)} edges) but the search space has {steps}; "
            f"give {2 * steps} edges"
        )
    allowed_set = None if allowed is None else frozenset(allowed)
    for j, (op, index) in enumerate(edges):
        step, e = divmod(j, 2)
        place = f"{cell}, step {step}, edge {e} ({op!r}, {index})"
        if not 0 <= index < step + 2:
            raise GenotypeError(
                f"{place}: input {index} is not an earlier node (allowed 0..{step + 1})"
            )
        if allowed_set is not None and op not in allowed_set:
            names = ", ".join(sorted(allowed_set)) or "(none)"
            raise GenotypeError(
                f"{place}: unknown op {op!r}{suggest(op, allowed_set)}; allowed: {names}"
            )
    if not concat:
        raise GenotypeError(
            f"{cell}: concat is empty; list the intermediate nodes to output, "
            f"e.g. {list(range(2, n + 2))}"
        )
    seen: set[int] = set()
    for node in concat:
        if not 2 <= node < n + 2:
            raise GenotypeError(
                f"{cell}: concat node {node} is out of range; "
                f"allowed are the intermediate nodes 2..{n + 1}"
            )
        if node in seen:
            raise GenotypeError(f"{cell}: concat lists node {node} twice; list each node once")
        seen.add(node)


def _canonical_edges(edges: tuple[Edge, ...]) -> tuple[Edge, ...]:
    out: list[Edge] = []
    for i in range(0, len(edges) - 1, 2):
        out.extend(sorted(edges[i : i + 2], key=lambda edge: (edge[1], edge[0])))
    if len(edges) % 2:
        out.append(edges[-1])
    return tuple(out)
