"""A registry of named extensions, shaped like the primitives' one.

A decorator files an object under a name with its metadata and returns it unchanged;
``get`` fails with close-name suggestions; ``list`` takes fnmatch patterns and sorts
naturally; a taken name is an error unless ``override=True`` (a silent replacement would
change what stored configs and runs mean). Every entry declares the dataclass of its own
settings (``None``: it has none), which the config checks its section against.

The built-in entries live in the modules that define them; a registry imports those
modules by name the first time it is asked about its entries, as it would an entry point,
so the registry itself stays a leaf that every other module may import.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bnn_nas.errors import BnnNasError, ConfigError

T = TypeVar("T")


def natural_key(name: str) -> list[Any]:
    """Sort key: digit runs compare as numbers (conv_2x2 before conv_10x10)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _first_line(text: str | None) -> str:
    stripped = (text or "").strip()
    return stripped.splitlines()[0].strip() if stripped else ""


def _source_of(obj: object) -> str:
    module = getattr(obj, "__module__", None) or "?"
    if module.startswith("bnn_nas."):
        return "builtin"
    path = inspect.getsourcefile(obj) if inspect.isfunction(obj) or inspect.isclass(obj) else None
    return path or module


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered extension: its object, its settings dataclass and where it came from."""

    name: str
    obj: T
    settings: type | None
    doc: str
    source: str

    def setting_names(self) -> tuple[str, ...]:
        if self.settings is None:
            return ()
        return tuple(f.name for f in dataclasses.fields(self.settings))

    def default_settings(self) -> Any:
        return None if self.settings is None else self.settings()


class Registry(Generic[T]):
    """Name -> :class:`Entry`, for one extension point.

    ``kind`` names the extension in messages (``controller``), ``key`` is the config key
    that picks one (``search.controller``), ``builtins`` the modules holding the built-in
    entries and ``group`` the entry-point group of installed plugins.
    """

    def __init__(
        self,
        kind: str,
        *,
        key: str,
        builtins: tuple[str, ...] = (),
        group: str = "",
        error: type[BnnNasError] = ConfigError,
    ) -> None:
        self.kind, self.key, self.group, self.error = kind, key, group, error
        self._builtins = builtins
        self._loaded = not builtins
        self._entries: dict[str, Entry[T]] = {}

    def _load_builtins(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: those modules register into this registry
        for module in self._builtins:
            importlib.import_module(module)

    def register(
        self,
        name: str,
        *,
        settings: type | None = None,
        override: bool = False,
        doc: str | None = None,
    ) -> Callable[[T], T]:
        """Decorator filing ``obj`` under ``name``; returns ``obj`` unchanged."""
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise self.error(
                f"{self.kind} name {name!r} is invalid; use letters, digits and underscores"
            )
        if settings is not None and not (
            dataclasses.is_dataclass(settings) and isinstance(settings, type)
        ):
            raise self.error(
                f"{self.kind} {name!r}: settings must be a dataclass, not {settings!r}"
            )
        if settings is not None:
            required = [
                f.name for f in dataclasses.fields(settings)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ]  # fmt: skip
            if required:
                raise self.error(
                    f"{self.kind} {name!r}: every setting needs a default ({', '.join(required)})"
                )

        def decorator(obj: T) -> T:
            self.add(name, obj, settings=settings, override=override, doc=doc)
            return obj

        return decorator

    def add(
        self,
        name: str,
        obj: T,
        *,
        settings: type | None = None,
        override: bool = False,
        doc: str | None = None,
    ) -> Entry[T]:
        if getattr(obj, "__module__", None) not in self._builtins:
            self._load_builtins()  # so that a plugin cannot take a built-in name unnoticed
        taken = self._entries.get(name)
        if taken is not None and not override:
            raise self.error(
                f"{self.kind} {name!r} is already registered (from {taken.source}); "
                "choose another name or pass override=True"
            )
        entry = Entry(
            name=name,
            obj=obj,
            settings=settings,
            doc=_first_line(doc if doc is not None else getattr(obj, "__doc__", None)),
            source=_source_of(obj),
        )
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Entry[T]:
        """The entry registered under ``name``; unknown names fail with close suggestions."""
        self._load_builtins()
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        raise self.error(self.unknown(name))

    def unknown(self, name: object) -> str:
        """The one-line message for an unknown name."""
        self._load_builtins()
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return (
            f"unknown {self.kind} {name!r}; {hint}registered: {', '.join(self.names())} "
            "(or load its plugin with --plugin)"
        )

    def names(self) -> list[str]:
        self._load_builtins()
        return sorted(self._entries, key=natural_key)

    def list(self, pattern: str = "*") -> list[Entry[T]]:
        return [self._entries[n] for n in self.names() if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: object) -> bool:
        self._load_builtins()
        return name in self._entries

    def unregister(self, name: str) -> None:
        """Remove a name (tests and plugin reloads only)."""
        self._entries.pop(name, None)
