"""`bnn-nas compare`: training runs side by side, as a table or as data."""

from __future__ import annotations

import click

from bnn_nas.cli.options import user_errors


@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option(
    "--search",
    type=click.Path(file_okay=False),
    help="The search run directory of the searched network: its minutes add the search's.",
)
@click.option(
    "--search-gpus",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="GPUs the search ran on (its minutes are counted per GPU).",
)
@click.option(
    "--format",
    "form",
    type=click.Choice(["markdown", "csv", "json"]),
    default="markdown",
    show_default=True,
)
@user_errors
def compare_command(runs: tuple[str, ...], search: str | None, search_gpus: int, form: str) -> None:
    """Compare `bnn-nas train` runs: test accuracy, OPs, params, bytes, minutes (GPU or CPU).

    RUNS are training run directories; DIR,DIR,... (seeds of one network and schedule)
    make one row with the mean accuracy and its range.
    """
    from bnn_nas.compare import compare_rows, table

    rows = compare_rows(runs, search, search_gpus)
    if form == "json":
        import json

        click.echo(json.dumps(rows, indent=1))
    elif form == "csv":
        import csv
        import io

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (" ".join(map(str, v)) if isinstance(v, list) else v)
                             for k, v in row.items()})  # fmt: skip
        click.echo(buffer.getvalue().rstrip("\n"))
    else:
        click.echo(table(runs, rows=rows))
