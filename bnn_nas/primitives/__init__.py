"""Primitives: the registry, the built-in ops and plugin loading."""

from bnn_nas.primitives import builtin as _builtin  # noqa: F401  (registers the built-ins)
from bnn_nas.primitives import darts as _darts  # noqa: F401  (DARTS's float ops)
from bnn_nas.primitives.options import BinaryOptions, family_defaults
from bnn_nas.primitives.plugins import load_entry_point_plugins, load_plugin, load_plugins
from bnn_nas.primitives.registry import (
    REGISTRY,
    PrimitiveSpec,
    build_primitive,
    get_primitive,
    list_primitives,
    register_primitive,
)

__all__ = [
    "REGISTRY",
    "BinaryOptions",
    "PrimitiveSpec",
    "build_primitive",
    "family_defaults",
    "get_primitive",
    "list_primitives",
    "load_entry_point_plugins",
    "load_plugin",
    "load_plugins",
    "register_primitive",
]
