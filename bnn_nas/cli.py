"""The ``bnn-nas`` command line.

User mistakes surface as one line on stderr and exit code 2; a traceback
means a bug in bnn-nas.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from bnn_nas import __version__
from bnn_nas.errors import BnnNasError

F = TypeVar("F", bound=Callable[..., Any])

USER_ERROR_EXIT = 2


def fail(message: str) -> None:
    click.echo(f"bnn-nas: error: {message}", err=True)
    sys.exit(USER_ERROR_EXIT)


def user_errors(func: F) -> F:
    """Turn :class:`BnnNasError` into its one-line message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BnnNasError as err:
            fail(str(err).splitlines()[0] if str(err) else type(err).__name__)

    return wrapper  # type: ignore[return-value]


def plugin_option(func: F) -> F:
    """``--plugin PATH_OR_MODULE`` (repeatable), loaded before the command runs."""
    return click.option(
        "--plugin",
        "plugins",
        multiple=True,
        metavar="PATH_OR_MODULE",
        help="Python file or module that registers primitives (repeatable).",
    )(func)


def load_user_plugins(plugins: tuple[str, ...]) -> None:
    from bnn_nas.primitives import load_plugins

    load_plugins(plugins)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bnn-nas")
def main() -> None:
    """Neural architecture search for binary neural networks."""


@main.command("primitives")
@click.argument("pattern", default="*")
@plugin_option
@user_errors
def primitives_command(pattern: str, plugins: tuple[str, ...]) -> None:
    """List registered primitives matching PATTERN (fnmatch wildcards)."""
    from bnn_nas.primitives import list_primitives

    load_user_plugins(plugins)
    specs = list_primitives(pattern)
    if not specs:
        fail(f"no primitive matches {pattern!r}; run `bnn-nas primitives` to see them all")
    rows = [("name", "family", "precision", "source", "description")]
    rows += [(s.name, s.family, s.precision, s.source, s.doc) for s in specs]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        click.echo("  ".join([*cells, row[4]]).rstrip())


if __name__ == "__main__":  # pragma: no cover
    main()
