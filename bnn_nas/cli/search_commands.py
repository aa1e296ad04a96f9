"""`bnn-nas search`, `derive`, `status` and `plot`: running a search and reading its results."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from bnn_nas.cli.options import (
    OpsCount,
    interrupted,
    load_run_config,
    plugin_option,
    plural,
    repeated,
    run_config_plugins,
    run_plugins_trusted,
    set_option,
    shell_words,
    user_errors,
)

if TYPE_CHECKING:
    from bnn_nas.config import Config
    from bnn_nas.search.evaluator import Evaluator
    from bnn_nas.search.loop import SearchRun


@click.command("search")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True)
@click.option("--run-dir", type=click.Path(file_okay=False), help="Default: config run_dir.")
@click.option("--resume", is_flag=True, help="Require an existing search to continue.")
@click.option("--budget", type=click.IntRange(min=1), help="Override search.budget.")
@click.option(
    "--tensorboard",
    is_flag=True,
    help="Write each trial's per-epoch scalars to RUN_DIR/tensorboard/trial-N "
    "(train.tensorboard; needs the [tensorboard] extra).",
)
@set_option
@plugin_option
@user_errors
def search_command(
    config_path: str,
    run_dir: str | None,
    resume: bool,
    budget: int | None,
    tensorboard: bool,
    overrides: tuple[str, ...],
    plugins: tuple[str, ...],
) -> None:
    """Search binary architectures; an existing run directory is resumed."""
    from pathlib import Path

    from bnn_nas.cli.terminal_log import search_log
    from bnn_nas.search import supervisor
    from bnn_nas.search.engine import default_run_dir, open_search, with_budget
    from bnn_nas.train.teacher_spec import teacher_begun, teacher_line

    settings = (*overrides, "train.tensorboard=true") if tensorboard else overrides
    config = with_budget(load_run_config(config_path, plugins, settings), budget)
    if config.train.tensorboard:  # a missing package fails before the run directory is made
        from bnn_nas.train.tensorboard_log import summary_writer_class

        summary_writer_class("train.tensorboard")
    target = Path(run_dir) if run_dir else default_run_dir(config)
    words = [
        "bnn-nas", "search", "--config", config_path, "--run-dir", str(target),
        *(["--budget", str(budget)] if budget is not None else []),
        *(["--tensorboard"] if tensorboard else []),
        *repeated("--set", overrides),
        *repeated("--plugin", plugins),
        *(["--trust-run-plugins"] if run_plugins_trusted() else []),
    ]  # fmt: skip
    try:  # a train.distill teacher spec trains here, first, saying so
        search, evaluator = open_search(config, target, resume=resume, say=teacher_line)
    except KeyboardInterrupt:
        teacher = teacher_begun(config, "train")  # Ctrl-C while it trained: kept there
        if teacher is None:
            raise
        interrupted(f"the teacher's training in {teacher} is kept; the same command "
                    "resumes it", words)  # fmt: skip
    # a supervisor (bnn_nas.search.supervisor) counts a candidate's death in this run
    supervisor.report(target, shell_words(words), config.executor.max_process_deaths)
    # what the terminal shows, also in RUN/search.log (appended by a resumed search)
    with search_log(target, shell_words(words)):
        _search(config, target, search, evaluator, plugins, words)


def _search(config: Config, target: Path, search: SearchRun, evaluator: Evaluator,
            plugins: tuple[str, ...], words: list[str]) -> None:  # fmt: skip
    from bnn_nas.search.engine import make_executor
    from bnn_nas.search.progress import SearchProgress
    from bnn_nas.train.step import precision_note

    reclaimed = search.prepare()
    done = search.finished()
    budget = config.search.budget
    spent = (f"; the budget ({plural(budget, 'trial')}) is spent: nothing to run (raise it "
             "with --budget N)")  # fmt: skip
    # a spent budget runs nothing: interrupted trials then wait for a higher one
    them = "it" if len(reclaimed) == 1 else "them"
    rerun = f"left pending (a higher --budget reruns {them})" if done >= budget else "to rerun"
    if done or reclaimed:
        click.echo(
            f"resuming {target}: {plural(done, 'trial')} finished"
            + (f", {plural(len(reclaimed), 'interrupted trial')} {rerun}" if reclaimed else "")
            + (spent if done >= budget else ""),
            err=True,
        )
    for note in search.notes:  # trials that were training when the search process died
        click.echo(note, err=True)
    try:
        with make_executor(config, evaluator, plugins) as executor:
            click.echo(precision_note(evaluator.device, config.train.bf16))
            with SearchProgress.of_search(search, executor) as progress:
                records = search.run(executor, progress.update)
    except KeyboardInterrupt:
        interrupted("trials in flight will rerun, continue with", words)
    failed = sum(r.status.value == "failed" for r in records)
    click.echo(f"{plural(sum(r.done for r in records), 'trial')} done, {failed} failed -> {target}")
    click.echo(f"next: bnn-nas derive {target}")


@click.command("derive")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--by",
    type=click.Choice(["accuracy", "pareto"]),
    default="accuracy",
    show_default=True,
    help="Best trial by the primary objective (accuracy), or the knee of the Pareto front "
    "of the search's objectives.",
)
@click.option(
    "--max-ops",
    type=OpsCount(),
    help="Only trials with at most this many OPs: 2.2M, 980k, 1.16G or 2200000.",
)
@click.option(
    "--rung",
    default="top",
    show_default=True,
    help="Multi-fidelity searches: choose among the highest rung reached (top), every "
    "trial (all), or rung N.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Rows of the ranking to print.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Genotype file to write (default RUN_DIR/genotype.yaml).",
)
@user_errors
def derive_command(
    run_dir: str, by: str, max_ops: float | None, rung: str, top: int, output: str | None
) -> None:
    """Pick the final genotype of a search and write it (YAML, DARTS text, drawing)."""
    from pathlib import Path

    from bnn_nas.objectives import metric
    from bnn_nas.search.budget import rung_label
    from bnn_nas.search.derive import choose, open_run, write_derived
    from bnn_nas.search.progress import describe

    if output:
        from bnn_nas.io import check_output_path

        check_output_path(output)
    if rung not in ("top", "all") and not rung.isdigit():
        raise click.BadParameter(f"{rung!r} is not top, all or a rung number", param_hint="--rung")
    records, objectives = open_run(Path(run_dir))
    chosen, ranking = choose(records, by, max_ops, objectives, rung)
    if by == "pareto":
        axis = metric(objectives[1].name).label if len(objectives) > 1 else objectives[0].name
        title = f"Pareto front (by {axis})"
    else:
        primary = objectives[0].name
        title = "most accurate" if primary == "accuracy" else f"best {primary}"
    where = rung_label(chosen, rung)
    click.echo(f"{title}, {plural(len(ranking), 'candidate')}{where}:")
    for record in ranking[:top]:
        mark = "*" if record.id == chosen.id else " "
        click.echo(f" {mark} {describe(record, objectives)}")
    target = Path(output) if output else Path(run_dir) / "genotype.yaml"
    drawing = write_derived(chosen, target, by, max_ops, objectives)
    click.echo(str(chosen.genotype))
    if drawing.note:
        click.echo(drawing.note)
    click.echo(f"wrote {target}, {target.with_suffix('.txt')}, {drawing.path}")
    config = Path(run_dir) / "config.yaml"
    # the run's config lies in a run directory: train imports its plugins only when named
    needs = repeated("--plugin", run_config_plugins(config) if config.is_file() else ())
    words = ["bnn-nas", "train", "--config", str(config), "--genotype", str(target), *needs]
    click.echo(f"next: {shell_words(words)}")


@click.command("status")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "form",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table: for people; csv: trials.csv's rows; json: the store's trials, counts, best "
    "trial and Pareto front.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Show it again whenever the store changes, until the search has finished (Ctrl-C "
    "stops; json: one document per line).",
)
@click.option(
    "--every",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between looks at the store with --watch.",
)
@user_errors
def status_command(run_dir: str, form: str, watch: bool, every: float) -> None:
    """A search's trials: status, objectives, time, origin (or as CSV / JSON)."""
    import time
    from pathlib import Path

    from bnn_nas.search.derive import open_run_config
    from bnn_nas.search.export import run_data

    shown = None
    try:
        while True:
            records, objectives, config = open_run_config(Path(run_dir))
            data = run_data(run_dir, records, objectives, config)
            text = _status_text(form, records, objectives, data, compact=watch,
                                max_process_deaths=_max_process_deaths(config))  # fmt: skip
            if text != shown:
                if watch and form == "table" and shown is not None:
                    click.clear()  # a no-op unless stdout is a terminal
                click.echo(text)
                shown = text
            if not watch or data["finished"]:
                return
            time.sleep(every)
    except KeyboardInterrupt:
        interrupted("watch it again with", ["bnn-nas", "status", run_dir, "--format", form,
                                            "--watch", "--every", f"{every:g}"])  # fmt: skip


def _max_process_deaths(config: dict) -> int | None:
    """A stored config's executor.max_process_deaths (None, its default, where unset)."""
    value = (config.get("executor") or {}).get("max_process_deaths")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _status_text(form: str, records, objectives, data: dict, *, compact: bool,
                 max_process_deaths: int | None = None) -> str:  # fmt: skip
    """One look at a search, in the format asked for."""
    if form == "json":
        import json

        return json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=1)
    if form == "csv":
        import csv
        import io

        from bnn_nas.search.export import csv_header, result_fields, trial_row

        fields = result_fields(records)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, csv_header(records), lineterminator="\n")
        writer.writeheader()
        writer.writerows(trial_row(r, fields) for r in records)
        return buffer.getvalue().rstrip("\n")
    return "\n".join(_status_table(records, objectives, active=data["active"],
                                   max_process_deaths=max_process_deaths))  # fmt: skip


def _status_table(records, objectives, *, active: bool = True,
                  max_process_deaths: int | None = None) -> list[str]:  # fmt: skip
    """The status table for people: one row per trial, counts, the best trial.

    ``active``: a search runs in the directory now; else its trials still marked running
    were cut off by a kill (their last state in the store) and are shown as interrupted;
    with ``max_process_deaths`` set (the run's executor.max_process_deaths), one that ran
    in the search process and reaches it with this death is counted apart (a resume with
    that setting records it failed)."""
    from bnn_nas.objectives import column, metric, summary
    from bnn_nas.search.budget import describe_budget, rung_label, rung_table
    from bnn_nas.search.derive import best_trial
    from bnn_nas.search.store import fails_at_resume

    lines = []
    widths = [max(9 if i == 0 else 10, len(metric(o.name).header) + 1)
              for i, o in enumerate(objectives)]  # fmt: skip
    columns = list(zip(objectives, widths, strict=True))
    heads = "".join(f"{metric(o.name).header:>{w}}" for o, w in columns)
    lines.append(f"{'id':>4}  {'status':<8}{heads}{'seconds':>9}  origin")
    for r in records:
        res = r.result
        cells = "".join(
            f"{column(o.name, o.value(res.metrics)) if res else '-':>{w}}"
            for o, w in columns
        )
        seconds = res.get("train_seconds") if res else None
        sec = f"{seconds:.1f}" if seconds is not None else "-"
        origin = r.origin.get("kind", "") + (
            f" of {r.origin['parent']}" if "parent" in r.origin else ""
        )
        if "rung" in r.origin:  # a multi-fidelity trial: its rung and budget
            origin += f", {describe_budget(r.origin)}"
        extra = f"  {r.error}" if r.error else ""
        shown_status = "stopped" if r.status.value == "running" and not active else r.status.value
        lines.append(f"{r.id:>4}  {shown_status:<8}{cells}{sec:>9}  {origin}{extra}")
    counts = {
        s: sum(r.status.value == s for r in records)
        for s in ("done", "failed", "running", "pending")
    }
    if not active and counts["running"]:
        last = sum(fails_at_resume(r, max_process_deaths) for r in records)
        counts["interrupted (a resume reruns them)"] = counts.pop("running") - last
        counts["interrupted with executor.max_process_deaths reached (a resume records them "
               "failed)"] = last
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    for _, by_status, budget in rung_table(records):  # a multi-fidelity search's rungs
        lines.append(f"{budget}: " + ", ".join(f"{n} {s}" for s, n in by_status.items()))
    best = best_trial(records, objectives)
    if best is not None and best.result is not None:
        shown = " ".join(summary(o.name, o.value(best.result.metrics)) for o in objectives)
        lines.append(f"best: trial {best.id} {shown}{rung_label(best)}")
    return lines


@click.command("plot")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Image to write (default RUN_DIR/search.png).",
)
@user_errors
def plot_command(run_dir: str, output: str | None) -> None:
    """Accuracy vs OPs (each objective) with the Pareto front, and best-so-far (needs [plot])."""
    from pathlib import Path

    from bnn_nas.search.derive import open_run
    from bnn_nas.search.plot import plot_search, search_title

    records, objectives = open_run(Path(run_dir))
    target = Path(output) if output else Path(run_dir) / "search.png"
    title = search_title(Path(run_dir).resolve().name, records, objectives)
    click.echo(f"wrote {plot_search(records, target, title=title, objectives=objectives)}")
