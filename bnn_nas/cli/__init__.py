"""The ``bnn-nas`` command line: one click group, commands from the modules beside it.

User mistakes surface as one line on stderr and exit code 2 (click's own usage errors
too). Anything else that goes wrong is a bug or an input bnn-nas does not check yet: it
is one line naming the command, exit code 1, and ``--debug`` (anywhere on the command
line) shows the traceback instead.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

import click

from bnn_nas import __version__
from bnn_nas.cli.export_commands import export_command, infer_command
from bnn_nas.cli.options import USER_ERROR_EXIT
from bnn_nas.cli.optuna_commands import export_optuna_command
from bnn_nas.cli.results_commands import compare_command
from bnn_nas.cli.search_commands import derive_command, plot_command, search_command, status_command
from bnn_nas.cli.space_commands import primitives_command, profile_command, show_command
from bnn_nas.cli.train_commands import train_command

__all__ = ["BUG_EXIT", "USER_ERROR_EXIT", "main"]


BUG_EXIT = 1
_SHOWN = 200  # characters of an unexpected error's message


def _command_of(args: list[str]) -> str:
    return next((a for a in args if not a.startswith("-")), "")


def _say(message: str) -> None:
    one = " ".join(message.split())
    click.echo(f"bnn-nas: error: {one}", err=True)


class _Main(click.Group):
    """The group, with every way out of a command made one line (see the module doc)."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        args = list(sys.argv[1:] if args is None else args)
        if _command_of([a for a in args if a != "--debug"]) == "search":
            from bnn_nas.search import supervisor

            if supervisor.supported():  # the search runs in a child (see the module)
                code = supervisor.run_supervised(
                    lambda: self._main(args, prog_name, complete_var, True, **extra))
                if standalone_mode:
                    sys.exit(code)
                return code
        return self._main(args, prog_name, complete_var, standalone_mode, **extra)

    def _main(self, args: list[str], prog_name: Any, complete_var: Any,
              standalone_mode: bool, **extra: Any) -> Any:  # fmt: skip
        debug = "--debug" in args
        args = [a for a in args if a != "--debug"]
        command = _command_of(args)
        name = f"bnn-nas {command}".strip()
        try:
            code = super().main(args, prog_name or "bnn-nas", complete_var,
                                standalone_mode=False, **extra)  # fmt: skip
        except click.UsageError as err:
            fixed = self._run_dir_as_argument(err, command, args)
            if fixed is not None:
                _say(f"`{name}` takes the run directory as its argument, not --run-dir: {fixed}")
                sys.exit(USER_ERROR_EXIT)
            where = f"`{name} --help`" if command in self.commands else "`bnn-nas --help`"
            _say(f"{err.format_message()} (see {where})")
            sys.exit(USER_ERROR_EXIT)
        except click.ClickException as err:
            _say(err.format_message())
            sys.exit(err.exit_code)
        except click.Abort:
            _say(f"{name} interrupted")
            sys.exit(130)
        except SystemExit:
            raise
        except OSError as err:  # the machine's doing (full disk, permissions), not a bug
            if debug:
                raise
            where = f" ({str(err.filename)[:_SHOWN]})" if err.filename else ""
            _say(f"`{name}` could not go on: {err.strerror or type(err).__name__}{where}")
            sys.exit(USER_ERROR_EXIT)
        except sqlite3.OperationalError as err:  # e.g. "database or disk is full"
            if debug:
                raise
            _say(f"`{name}` could not go on: the results store failed ({str(err)[:_SHOWN]})")
            sys.exit(USER_ERROR_EXIT)
        except Exception as err:
            if debug:
                raise
            text = str(err).strip().splitlines()
            detail = f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")[:_SHOWN]
            _say(
                f"`{name}` failed unexpectedly ({detail}); run it again with --debug for the "
                "traceback and report it"
            )
            sys.exit(BUG_EXIT)
        if standalone_mode:
            sys.exit(code if isinstance(code, int) else 0)
        return code

    def _run_dir_as_argument(self, err: click.UsageError, command: str,
                             args: list[str]) -> str | None:  # fmt: skip
        """The corrected command line when ``--run-dir D`` went to a command that takes the
        run directory as its first argument (derive, status, plot, export, ...), as search
        and train take it; else None."""
        from bnn_nas.cli.options import shell_words

        if not isinstance(err, click.NoSuchOption) or err.option_name != "--run-dir":
            return None
        params = self.commands[command].params if command in self.commands else []
        first = next((p for p in params if isinstance(p, click.Argument)), None)
        if first is None or first.name not in ("run_dir", "source", "runs"):
            return None
        rest, value, i = [], "RUN_DIR", 0
        while i < len(args):
            if args[i] == "--run-dir":
                value = args[i + 1] if i + 1 < len(args) else value
                i += 2
                continue
            if args[i].startswith("--run-dir="):
                value = args[i].split("=", 1)[1]
            else:
                rest.append(args[i])
            i += 1
        at = rest.index(command) + 1
        return shell_words(["bnn-nas", *rest[:at], value, *rest[at:]])


@click.group(
    cls=_Main,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Add --debug anywhere to see the traceback of an unexpected error.",
)
@click.version_option(__version__, "--version", prog_name="bnn-nas")
def main() -> None:
    """Neural architecture search for binary neural networks."""


for _command in (
    primitives_command, show_command, profile_command, train_command, search_command,
    derive_command, status_command, plot_command, export_command, infer_command,
    compare_command, export_optuna_command,
):  # fmt: skip
    main.add_command(_command)
