"""Shared pieces of the command line: one-line user errors, common options, config loading.

User mistakes surface as one line on stderr and exit code 2; a traceback means a bug in
bnn-nas. Every command module imports from here; this module imports no command.
"""

from __future__ import annotations

import contextlib
import functools
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from bnn_nas.errors import BnnNasError
from bnn_nas.units import plural  # noqa: F401  (re-exported: commands import it from here)

F = TypeVar("F", bound=Callable[..., Any])

USER_ERROR_EXIT = 2
INTERRUPT_EXIT = 130  # the shell's code for a command ended by SIGINT (128 + 2)
TERMINATED_EXIT = 128 + signal.SIGTERM  # 143: the shell's code for one ended by SIGTERM


def fail(message: str) -> None:
    click.echo(f"bnn-nas: error: {message}", err=True)
    sys.exit(USER_ERROR_EXIT)


def interrupted(what: str, command: Iterable[str], by: BaseException | None = None) -> NoReturn:
    """Report Ctrl-C in one line with the command that continues, and exit 130 (``by`` a
    :class:`Terminated`: ``terminated (SIGTERM)``, exit 143)."""
    if isinstance(by, Terminated):
        click.echo(f"bnn-nas: terminated (SIGTERM); {what}: {shell_words(command)}", err=True)
        sys.exit(TERMINATED_EXIT)
    click.echo(f"bnn-nas: interrupted; {what}: {shell_words(command)}", err=True)
    sys.exit(INTERRUPT_EXIT)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's stop) raised as Ctrl-C is: the work unwinds the same
    way (what Ctrl-C keeps is kept) and the command prints the same hint."""


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside, SIGTERM raises :class:`Terminated` in the main thread, once: a second one
    while that unwinds kills at once, as SIGTERM does by default. Left alone where SIGTERM
    is not at its default (ignored, or someone's handler) or off the main thread."""
    on_main = threading.current_thread() is threading.main_thread()
    if not on_main or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise Terminated

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def shell_words(words: Iterable[str]) -> str:
    """``words`` as one command line a POSIX shell splits back into the same words."""
    return " ".join(shlex.quote(str(word)) for word in words)




def repeated(flag: str, values: Iterable[str]) -> list[str]:
    """``--flag v1 --flag v2 ...`` for a repeatable option, in the order given."""
    return [word for value in values for word in (flag, value)]


def user_errors(func: F) -> F:
    """Turn :class:`BnnNasError` into its one-line message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BnnNasError as err:
            fail(err.line())

    return wrapper  # type: ignore[return-value]


_TRUST_KEY = "bnn_nas.trust_run_plugins"


def _remember_trust(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta[_TRUST_KEY] = bool(value)
    return value


def run_config_plugins(config_path: Path | str) -> tuple[str, ...]:
    """The plugins a saved run config names (read, not imported): a command that reads
    that config needs them passed with ``--plugin``."""
    from bnn_nas.config import declared_plugins, read_config_mapping

    return declared_plugins(read_config_mapping(config_path), str(config_path))


def run_plugins_trusted() -> bool:
    """Whether this command was given ``--trust-run-plugins``."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_TRUST_KEY, False))


class RegisteredName(click.ParamType):
    """A name from a registry: help lists the registered names; the name itself is checked
    by the command once plugins are loaded (a plugin may register it)."""

    name = "name"

    def __init__(self, registry_name: str, others: tuple[str, ...] = ()) -> None:
        self.registry_name, self.others = registry_name, others

    def _registry(self) -> Any:
        from bnn_nas import extensions

        return getattr(extensions, self.registry_name)

    def get_metavar(self, *args: Any, **kwargs: Any) -> str:
        return "[" + "|".join([*self._registry().names(), *self.others]) + "]"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        return value

    def check(self, value: str | None) -> None:
        """Raise the registry's one-line error (with suggestions) for an unknown name."""
        if value is not None and value not in self.others:
            self._registry().get(value)


class OpsCount(click.ParamType):
    """An OPs count as every command prints it (``2.2M``, ``98.3k``, ``1.16G``) or a plain
    number: what ``--max-ops`` takes (:func:`bnn_nas.units.parse_count`)."""

    name = "ops"

    def get_metavar(self, *args: Any, **kwargs: Any) -> str:
        return "OPS"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, int | float):
            return float(value)
        from bnn_nas.units import parse_count

        try:
            return parse_count(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


def plugin_option(func: F) -> F:
    """``--plugin PATH_OR_MODULE`` (repeatable), loaded before the command runs, and
    ``--trust-run-plugins`` (import the plugins a run directory's config names)."""
    func = click.option(
        "--trust-run-plugins",
        is_flag=True,
        expose_value=False,
        callback=_remember_trust,
        help="Also import the plugins named by a config inside a run directory (their code "
        "runs: only for runs you trust; the names are printed).",
    )(func)
    return click.option(
        "--plugin",
        "plugins",
        multiple=True,
        metavar="PATH_OR_MODULE",
        help="Python file or module that registers primitives, controllers, executors, "
        "datasets, ... (repeatable).",
    )(func)


def load_user_plugins(plugins: tuple[str, ...]) -> None:
    from bnn_nas.primitives import load_plugins

    load_plugins(plugins)


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="Run config (YAML); its search_space and plugins are used.",
    )(func)


def set_option(func: F) -> F:
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override a config value, e.g. --set data.root=/data/cifar10 (repeatable).",
    )(func)


def load_run_config(
    config_path: str | None,
    plugins: tuple[str, ...],
    overrides: tuple[str, ...] = (),
    *,
    trust: bool | None = None,
):
    """The config (defaults when no file), with its plugins and the given ones loaded
    first: they may register the names it uses (a controller, an executor, a dataset).

    A config inside a run directory has its plugins imported only when they are passed
    with ``--plugin`` or the command has ``--trust-run-plugins`` (``trust``: say so
    outside a command, as the Python API does).
    """
    from pathlib import Path

    from bnn_nas.config import (
        apply_overrides,
        config_from_dict,
        declared_plugins,
        read_config_mapping,
    )
    from bnn_nas.rundir import run_plugins

    if config_path:
        data, where = read_config_mapping(config_path, overrides), str(Path(config_path))
    else:
        data, where = apply_overrides({}, overrides, "--set"), "--set"
    declared = declared_plugins(data, where, overrides)
    trusted = run_plugins_trusted() if trust is None else trust
    named = run_plugins(config_path, declared, plugins, trust=trusted)
    load_user_plugins(named + plugins)
    return config_from_dict(data, where, overrides)
