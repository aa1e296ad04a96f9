"""bnn-nas: neural architecture search for binary neural networks.

The Python API (``bnn_nas.run_search``, ``load_run``, ``train``, ``build_network``,
``load_config``; :mod:`bnn_nas.api`) and the primitive registry are imported on first
use, so ``import bnn_nas`` stays cheap (no torch until a name needs it).
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("bnn-nas")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

_WHERE = {
    "get_primitive": "primitives", "list_primitives": "primitives",
    "register_primitive": "primitives",
    "run_search": "api", "load_run": "api", "build_network": "api",
    "load_config": "api", "SearchResults": "api",
}  # fmt: skip
# bnn_nas.train is the subpackage, callable as bnn_nas.api.train (bnn_nas/train/__init__.py):
# one object whichever was imported first (the function here would give way to the package
# as soon as anything imported bnn_nas.train.*)

__all__ = ["__version__", *sorted([*_WHERE, "train"])]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is not None:
        return getattr(importlib.import_module(f"bnn_nas.{module}"), name)
    try:  # a subpackage not imported yet: bnn_nas.search, bnn_nas.space, ...
        return importlib.import_module(f"bnn_nas.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"bnn_nas.{name}":
            raise
    raise AttributeError(f"module 'bnn_nas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
