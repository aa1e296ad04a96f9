"""Plugins: user code that registers primitives, from a file, a module or an entry point."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType

from bnn_nas.errors import BnnNasError, PluginError

ENTRY_POINT_GROUP = "bnn_nas.primitives"
# the other extension points' groups (controllers, executors, datasets, baselines, families)
EXTENSION_GROUPS = (
    "bnn_nas.controllers", "bnn_nas.executors", "bnn_nas.datasets", "bnn_nas.baselines",
    "bnn_nas.families",
)  # fmt: skip

_loaded: dict[str, ModuleType] = {}  # resolved plugin identity -> module, so each loads once


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _load_file(path: Path) -> ModuleType:
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    module_name = f"bnn_nas_plugin_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"plugin {path}: not a loadable Python file; pass a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SystemExit as err:  # sys.exit() in a plugin must not end bnn-nas silently
        sys.modules.pop(module_name, None)
        raise PluginError(
            f"plugin {path} called sys.exit({str(err.code)[:40]}) while loading; a plugin must "
            "register primitives, not exit"
        ) from None
    except BnnNasError as err:
        sys.modules.pop(module_name, None)
        raise PluginError(f"plugin {path}: {err}") from None
    except Exception as err:  # a plugin may fail in any way; report it in one line
        sys.modules.pop(module_name, None)
        raise PluginError(
            f"plugin {path} failed to load ({_describe(err)}); fix the file"
        ) from None
    return module


def load_plugin(spec: str) -> ModuleType:
    """Import a plugin given as a ``.py`` path or a module name; each is loaded once."""
    path = Path(spec).expanduser()
    looks_like_path = spec.endswith(".py") or "/" in spec or path.exists()
    key = str(path.resolve()) if looks_like_path else spec
    if key in _loaded:
        return _loaded[key]
    if looks_like_path:
        if not path.is_file():
            raise PluginError(
                f"plugin file {spec} does not exist; check the path (of --plugin, or in a "
                "config's plugins:, where it is relative to the config file)"
            )
        module = _load_file(path.resolve())
    else:
        try:
            with _cwd_on_path():
                module = importlib.import_module(spec)
        except SystemExit as err:
            raise PluginError(
                f"plugin module {spec} called sys.exit({str(err.code)[:40]}) while loading; "
                "a plugin must register primitives, not exit"
            ) from None
        except BnnNasError as err:
            raise PluginError(f"plugin {spec}: {err}") from None
        except Exception as err:
            raise PluginError(
                f"plugin module {spec} could not be imported ({_describe(err)}); "
                "install it or pass a .py path"
            ) from None
    _loaded[key] = module
    return module


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    """``--plugin my_ops`` finds ./my_ops.py, as ``python -c 'import my_ops'`` would: the
    current directory is on the import path (last: it shadows no installed module) while
    the plugin is imported, and only then: a later import of a package that is not
    installed must not load a file of that name from wherever the command runs."""
    here = str(Path.cwd())
    added = here not in sys.path and "" not in sys.path
    if added:
        sys.path.append(here)
    try:
        yield
    finally:
        if added and here in sys.path:
            sys.path.remove(here)


def plugin_providing(factory: object) -> str | None:
    """How the plugin that defined ``factory`` was given: its file's absolute path, its
    module name, or ``entry-point:VALUE`` (None: not from a loaded plugin)."""
    module = sys.modules.get(getattr(factory, "__module__", None) or "")
    if module is None:
        return None
    for key, loaded in _loaded.items():
        if loaded is module:
            return key
    return None


def load_entry_point_plugins() -> list[str]:
    """Import every installed package's ``bnn_nas.primitives`` (and ``bnn_nas.controllers``,
    ``bnn_nas.executors``, ...) entry points."""
    names = []
    entries = [
        entry
        for group in (ENTRY_POINT_GROUP, *EXTENSION_GROUPS)
        for entry in importlib.metadata.entry_points(group=group)
    ]
    for entry in entries:
        key = f"entry-point:{entry.value}"
        if key in _loaded:
            continue
        try:
            loaded = entry.load()
        except SystemExit as err:
            raise PluginError(
                f"entry point {entry.name} ({entry.value}) called sys.exit({str(err.code)[:40]}) "
                "while loading; reinstall or uninstall that package"
            ) from None
        except BnnNasError as err:
            raise PluginError(f"entry point {entry.name} ({entry.value}): {err}") from None
        except Exception as err:
            raise PluginError(
                f"entry point {entry.name} ({entry.value}) failed to load ({_describe(err)}); "
                "reinstall or uninstall that package"
            ) from None
        _loaded[key] = loaded if isinstance(loaded, ModuleType) else sys.modules[entry.module]
        names.append(entry.name)
    return names


def load_plugins(specs: Iterable[str], *, entry_points: bool = True) -> None:
    """Load installed entry points, then each given plugin, in order."""
    if entry_points:
        load_entry_point_plugins()
    for spec in specs:
        load_plugin(spec)
