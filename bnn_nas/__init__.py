"""bnn-nas: neural architecture search for binary neural networks."""

from importlib.metadata import PackageNotFoundError, version

from bnn_nas.primitives import get_primitive, list_primitives, register_primitive

try:
    __version__ = version("bnn-nas")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "get_primitive", "list_primitives", "register_primitive"]
