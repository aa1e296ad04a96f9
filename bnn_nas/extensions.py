"""The extension points of bnn-nas besides primitives: one registry each.

- controllers, ``search.controller``: a ``Controller`` subclass (bnn_nas.search.controllers),
  built as ``cls(space, seed, settings, objectives=..., cost_of=...)``; group
  ``bnn_nas.controllers``;
- executors, ``executor.type``: ``make(config, evaluator, plugins, settings) -> Executor``;
  group ``bnn_nas.executors``;
- datasets, ``data.name``: ``load(settings) -> Dataset``; group ``bnn_nas.datasets``;
- baselines, ``model.type``: ``build(family, num_classes, in_channels, image_size,
  **options)``;
  group ``bnn_nas.baselines``;
- families, ``model.family``: the family's default ``BinaryOptions``; group
  ``bnn_nas.families``.

Each entry declares the dataclass of its own settings; the config checks the section
against the chosen entry's dataclass, and the command line offers the registered names.
A plugin (``--plugin file.py``, ``plugins:`` in a config, or an installed package's entry
point) adds an entry with the decorator, e.g.::

    from bnn_nas.extensions import register_controller
    from bnn_nas.search.controllers import Controller

    @register_controller("greedy", settings=GreedySettings)
    class Greedy(Controller): ...

This module is a leaf: the built-in entries live beside what they register and are
imported by name when a registry is first asked about its entries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bnn_nas.errors import DataError
from bnn_nas.registry import Entry, Registry

CONTROLLERS: Registry[Any] = Registry(
    "controller", key="search.controller",
    builtins=("bnn_nas.search.controllers", "bnn_nas.search.successive_halving",
              "bnn_nas.search.optuna_search"),
    group="bnn_nas.controllers",
)  # fmt: skip
EXECUTORS: Registry[Any] = Registry(
    "executor", key="executor.type",
    builtins=("bnn_nas.search.executors", "bnn_nas.search.processes", "bnn_nas.search.streams",
              "bnn_nas.search.ray_executor"),
    group="bnn_nas.executors",
)  # fmt: skip
DATASETS: Registry[Any] = Registry(
    "dataset", key="data.name", builtins=("bnn_nas.data",), group="bnn_nas.datasets",
    error=DataError,
)  # fmt: skip
BASELINES: Registry[Any] = Registry(
    "baseline model", key="model.type", builtins=("bnn_nas.space.baselines",),
    group="bnn_nas.baselines",
)  # fmt: skip
FAMILIES: Registry[Any] = Registry(
    "primitive family", key="model.family", builtins=("bnn_nas.primitives.options",),
    group="bnn_nas.families",
)  # fmt: skip

# Optuna's samplers, ``search.sampler`` of the ``optuna`` controller (the [optuna] extra):
# a built-in names a class of optuna.samplers, resolved when used; a plugin's entry is
# ``factory(**sampler_options, [seed=...]) -> sampler``
SAMPLERS: Registry[Any] = Registry(
    "optuna sampler", key="search.sampler", builtins=("bnn_nas.search.optuna_search",),
)  # fmt: skip

REGISTRIES: tuple[Registry[Any], ...] = (CONTROLLERS, EXECUTORS, DATASETS, BASELINES, FAMILIES)
ENTRY_POINT_GROUPS: tuple[str, ...] = tuple(r.group for r in REGISTRIES)


def register_controller(
    name: str, *, settings: type | None = None, override: bool = False, doc: str | None = None
) -> Callable[[Any], Any]:
    """Decorator registering a Controller subclass as ``search.controller: name``."""
    return CONTROLLERS.register(name, settings=settings, override=override, doc=doc)


def register_executor(
    name: str, *, settings: type | None = None, override: bool = False, doc: str | None = None
) -> Callable[[Any], Any]:
    """Decorator registering ``make(config, evaluator, plugins, settings) -> Executor``."""
    return EXECUTORS.register(name, settings=settings, override=override, doc=doc)


def register_dataset(
    name: str, *, settings: type | None = None, override: bool = False, doc: str | None = None
) -> Callable[[Any], Any]:
    """Decorator registering ``load(settings) -> Dataset`` as ``data.name: name``."""
    return DATASETS.register(name, settings=settings, override=override, doc=doc)


def register_baseline(
    name: str, *, override: bool = False, doc: str | None = None
) -> Callable[[Any], Any]:
    """Decorator registering ``build(family, num_classes, in_channels=3, image_size=None,
    **options)``; its
    settings are the block options of ``model.options``, checked by the primitives."""
    return BASELINES.register(name, override=override, doc=doc)


def register_family(name: str, defaults: Any, *, override: bool = False, doc: str = "") -> Any:
    """Register a primitive family's default BinaryOptions (its ``{name}_*`` primitives are
    registered as primitives)."""
    return FAMILIES.add(name, defaults, settings=type(defaults), override=override, doc=doc)


def get_controller(name: str) -> Entry[Any]:
    return CONTROLLERS.get(name)


def get_executor(name: str) -> Entry[Any]:
    return EXECUTORS.get(name)


def get_dataset(name: str) -> Entry[Any]:
    return DATASETS.get(name)


def get_baseline(name: str) -> Entry[Any]:
    return BASELINES.get(name)


def get_family(name: str) -> Entry[Any]:
    return FAMILIES.get(name)


def list_controllers(pattern: str = "*") -> list[Entry[Any]]:
    return CONTROLLERS.list(pattern)


def list_executors(pattern: str = "*") -> list[Entry[Any]]:
    return EXECUTORS.list(pattern)


def list_datasets(pattern: str = "*") -> list[Entry[Any]]:
    return DATASETS.list(pattern)


def list_baselines(pattern: str = "*") -> list[Entry[Any]]:
    return BASELINES.list(pattern)


def list_families(pattern: str = "*") -> list[Entry[Any]]:
    return FAMILIES.list(pattern)
