"""`bnn-nas export-optuna RUN STORAGE`: a search's trials as an Optuna study."""

from __future__ import annotations

import click

from bnn_nas.cli.options import load_user_plugins, plugin_option, user_errors


@click.command("export-optuna")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("storage")
@click.option("--study-name", help="Default: the run directory's name.")
@click.option("--overwrite", is_flag=True, help="Replace a study of that name in STORAGE.")
@plugin_option
@user_errors
def export_optuna_command(
    run_dir: str, storage: str, study_name: str | None, overwrite: bool,
    plugins: tuple[str, ...],
) -> None:  # fmt: skip
    """Copy the trials of the search in RUN_DIR into a new study of the Optuna storage
    STORAGE (e.g. sqlite:///study.db), for optuna-dashboard ([optuna] extra); the run's
    store is only read. --plugin: a plugin whose primitives the search space uses."""
    from bnn_nas.search.optuna_export import export_run

    load_user_plugins(plugins)
    name, count = export_run(run_dir, storage, study_name, overwrite=overwrite)
    click.echo(f"wrote {count} trials to study {name!r} in {storage}")
    click.echo(f"next: optuna-dashboard {storage}")
