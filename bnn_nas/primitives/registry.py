"""The primitive registry: the one list of names a genotype may use.

A primitive is a factory ``(C_in, C_out, stride, **options) -> nn.Module``.
Registration is by decorator; the decorator files the factory with its
metadata and returns it unchanged. A name, once taken, keeps its meaning:
re-registering it is an error unless ``override=True``, because a silent
replacement would change what every stored genotype means.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from bnn_nas.errors import PrimitiveError

PrimitiveFactory = Callable[..., nn.Module]
Precision = Literal["binary", "float", "free"]
PRECISIONS: tuple[str, ...] = ("binary", "float", "free")


@dataclass(frozen=True)
class PrimitiveSpec:
    """A registered primitive and what it declares about itself.

    ``precision``: ``binary`` (its convs run on +-1 operands), ``float``
    (full-precision parameters) or ``free`` (no parameters at stride 1 with
    equal channels: zero, identity, pooling).
    """

    name: str
    factory: PrimitiveFactory
    family: str
    precision: Precision
    doc: str
    source: str

    def build(self, C_in: int, C_out: int, stride: int, **options: Any) -> nn.Module:
        """Build the module, checking the arguments every primitive must accept."""
        for label, value in (("C_in", C_in), ("C_out", C_out)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PrimitiveError(
                    f"{self.name}: {label} must be a positive integer, got {value!r}"
                )
        if stride not in (1, 2):
            raise PrimitiveError(f"{self.name}: stride must be 1 or 2, got {stride!r}")
        module = self.factory(C_in, C_out, stride, **options)
        if not isinstance(module, nn.Module):  # the plugin's mistake, not a bnn-nas bug
            raise PrimitiveError(
                f"primitive {self.name!r} ({self.source}) returned {type(module).__name__}, not "
                "an nn.Module; its factory must return the module it builds"
            )
        return module


def _check_signature(name: str, factory: PrimitiveFactory) -> None:
    """A factory is called as ``factory(C_in, C_out, stride, **options)``: one that cannot
    take three positional arguments is refused when it registers, not when a network
    is built from it."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # no signature to read (some builtins): not checked
        return
    try:
        signature.bind(1, 1, 1)
    except TypeError:
        raise PrimitiveError(
            f"primitive {name!r}: its factory {getattr(factory, '__name__', factory)!s}"
            f"{signature} cannot be called as (C_in, C_out, stride, **options); give it "
            "that signature"
        ) from None


def _source_of(factory: PrimitiveFactory) -> str:
    module = getattr(factory, "__module__", None) or "?"
    if module.startswith("bnn_nas."):
        return "builtin"
    path = inspect.getsourcefile(factory) if inspect.isfunction(factory) else None
    return path or module


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class PrimitiveRegistry:
    """Name -> :class:`PrimitiveSpec`. One process-wide instance lives in this module."""

    def __init__(self) -> None:
        self._specs: dict[str, PrimitiveSpec] = {}

    def register(
        self,
        name: str,
        *,
        override: bool = False,
        family: str = "custom",
        precision: Precision = "binary",
        doc: str | None = None,
    ) -> Callable[[PrimitiveFactory], PrimitiveFactory]:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise PrimitiveError(
                f"primitive name {name!r} is invalid; use letters, digits and underscores"
            )
        if precision not in PRECISIONS:
            raise PrimitiveError(
                f"primitive {name!r}: precision {precision!r} is not one of {', '.join(PRECISIONS)}"
            )

        def decorator(factory: PrimitiveFactory) -> PrimitiveFactory:
            if not callable(factory):
                raise PrimitiveError(f"primitive {name!r}: the decorated object is not callable")
            _check_signature(name, factory)
            taken = self._specs.get(name)
            if taken is not None and not override:
                raise PrimitiveError(
                    f"primitive {name!r} is already registered (from {taken.source}); "
                    "choose another name or pass override=True"
                )
            self._specs[name] = PrimitiveSpec(
                name=name,
                factory=factory,
                family=family,
                precision=precision,
                doc=_first_line(doc if doc is not None else factory.__doc__),
                source=_source_of(factory),
            )
            return factory

        return decorator

    def get(self, name: str) -> PrimitiveSpec:
        spec = self._specs.get(name)
        if spec is not None:
            return spec
        close = difflib.get_close_matches(str(name), list(self._specs), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `bnn-nas primitives`"
        raise PrimitiveError(f"unknown primitive {name!r}; {hint} (or load its plugin)")

    def names(self) -> list[str]:
        return sorted(self._specs, key=_natural_key)

    def list(self, pattern: str = "*") -> list[PrimitiveSpec]:
        return [self._specs[n] for n in self.names() if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def unregister(self, name: str) -> None:
        """Remove a name (tests and plugin reloads only)."""
        self._specs.pop(name, None)


REGISTRY = PrimitiveRegistry()


def register_primitive(
    name: str,
    *,
    override: bool = False,
    family: str = "custom",
    precision: Precision = "binary",
    doc: str | None = None,
) -> Callable[[PrimitiveFactory], PrimitiveFactory]:
    """Decorator registering ``factory(C_in, C_out, stride, **options) -> nn.Module``.

    ``doc`` defaults to the first line of the factory's docstring.
    """
    return REGISTRY.register(name, override=override, family=family, precision=precision, doc=doc)


def get_primitive(name: str) -> PrimitiveSpec:
    """The spec registered under ``name``; unknown names fail with close suggestions."""
    return REGISTRY.get(name)


def list_primitives(pattern: str = "*") -> list[PrimitiveSpec]:
    """Registered primitives matching an fnmatch ``pattern``, in natural name order."""
    return REGISTRY.list(pattern)


def build_primitive(name: str, C_in: int, C_out: int, stride: int, **options: Any) -> nn.Module:
    """Build primitive ``name``; the one entry point the network builder uses."""
    return REGISTRY.get(name).build(C_in, C_out, stride, **options)
