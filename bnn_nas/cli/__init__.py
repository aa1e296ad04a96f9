"""The ``bnn-nas`` command line: one click group, commands from the modules beside it.

User mistakes surface as one line on stderr and exit code 2; a traceback
means a bug in bnn-nas.
"""

from __future__ import annotations

import click

from bnn_nas import __version__
from bnn_nas.cli.export_commands import export_command, infer_command
from bnn_nas.cli.options import USER_ERROR_EXIT
from bnn_nas.cli.search_commands import derive_command, plot_command, search_command, status_command
from bnn_nas.cli.space_commands import primitives_command, profile_command, show_command
from bnn_nas.cli.train_commands import train_command

__all__ = ["USER_ERROR_EXIT", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="bnn-nas")
def main() -> None:
    """Neural architecture search for binary neural networks."""


for _command in (
    primitives_command, show_command, profile_command, train_command, search_command,
    derive_command, status_command, plot_command, export_command, infer_command,
):  # fmt: skip
    main.add_command(_command)
