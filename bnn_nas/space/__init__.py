"""Search spaces and genotypes: what a candidate is and how its network is built.

The public surface:

- genotypes: :class:`Genotype` (a frozen value: canonical form, hash, graph),
  :func:`parse_genotype` (DARTS text, never evaluated), :func:`load_genotype` (a file or
  text), :func:`format_genotype`, :func:`validate_genotype` (``bnn_nas.space.genotype``);
- search spaces: :class:`SearchSpace`, :class:`NetworkLayout`, :class:`OpChoice`,
  :func:`load_search_space`, :func:`search_space_from_dict`, :func:`builtin_space_names`
  (``bnn_nas.space.search_space``);
- networks: :class:`Architecture` (the description of a network and its one builder, what
  a run directory records: ``bnn_nas.space.architecture``), :class:`CellNetwork`,
  :func:`build_model` (``bnn_nas.space.network``), :func:`build_baseline`
  (``bnn_nas.space.plain_networks``; registered baselines in ``bnn_nas.extensions.BASELINES``);
- drawings: :func:`render`, :func:`to_dot`, :func:`cell_graph` (``bnn_nas.space.drawing``).

Names are imported on first use, so reading a genotype does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Genotype": "genotype", "parse_genotype": "genotype", "load_genotype": "genotype",
    "format_genotype": "genotype", "validate_genotype": "genotype", "KINDS": "genotype",
    "SearchSpace": "search_space", "NetworkLayout": "search_space", "OpChoice": "search_space",
    "load_search_space": "search_space", "search_space_from_dict": "search_space",
    "builtin_space_names": "search_space",
    "Architecture": "architecture",
    "CellNetwork": "network", "build_model": "network", "build_baseline": "plain_networks",
    "render": "drawing", "to_dot": "drawing", "cell_graph": "drawing",
}  # fmt: skip

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'bnn_nas.space' has no attribute {name!r}")
    return getattr(importlib.import_module(f"bnn_nas.space.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
