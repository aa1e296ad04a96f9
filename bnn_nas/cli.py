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
    config_path: str | None, plugins: tuple[str, ...], overrides: tuple[str, ...] = ()
):
    """The config (defaults when no file), with its plugins and the given ones loaded."""
    from bnn_nas.config import apply_overrides, config_from_dict, load_config

    if config_path:
        config = load_config(config_path, overrides)
    else:
        config = config_from_dict(apply_overrides({}, overrides, "--set"), "--set")
    load_user_plugins(config.plugins + plugins)
    return config


@main.command("show")
@click.argument("genotype")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write a drawing: .png, .svg or .dot."
)
@config_option
@plugin_option
@user_errors
def show_command(
    genotype: str, output: str | None, config_path: str | None, plugins: tuple[str, ...]
) -> None:
    """Print and draw GENOTYPE (DARTS text, or a .yaml/.json/.txt file holding one)."""
    from pathlib import Path

    from bnn_nas.space.drawing import render
    from bnn_nas.space.genotype import load_genotype
    from bnn_nas.space.search_space import load_search_space

    config = load_run_config(config_path, plugins)
    g = load_genotype(genotype)
    if config_path:
        load_search_space(config.search_space).validate(g)
    click.echo(str(g))
    click.echo(f"hash: {g.hash}")
    click.echo(f"steps: normal {g.normal_steps}, reduce {g.reduce_steps}")
    click.echo(f"ops: {', '.join(sorted(g.ops()))}")
    if output:
        written = render(g, Path(output))
        if written.suffix != Path(output).suffix:
            click.echo(
                f"graphviz `dot` is not installed: wrote DOT text to {written} instead of "
                f"{output} (install graphviz, or render it with `dot -T{Path(output).suffix[1:]}`)"
            )
        else:
            click.echo(f"wrote {written}")


@main.command("profile")
@click.argument("genotype", required=False)
@click.option(
    "--model",
    type=click.Choice(["resnet18", "resnet20", "vgg_small"]),
    help="Profile a hand-designed baseline instead of a genotype.",
)
@click.option("--family", type=click.Choice(["xnor", "bireal"]), default="xnor")
@click.option("--image-size", type=int, default=32, show_default=True)
@click.option("--classes", type=int, default=10, show_default=True)
@config_option
@plugin_option
@user_errors
def profile_command(
    genotype: str | None,
    model: str | None,
    family: str,
    image_size: int,
    classes: int,
    config_path: str | None,
    plugins: tuple[str, ...],
) -> None:
    """Per-layer cost table of GENOTYPE (or --model) and totals: BOPs, FLOPs, OPs, params, bytes."""
    from bnn_nas.cost import count_cost
    from bnn_nas.space.genotype import load_genotype
    from bnn_nas.space.network import CellNetwork, build_baseline
    from bnn_nas.space.search_space import load_search_space

    config = load_run_config(config_path, plugins)
    if (genotype is None) == (model is None):
        fail("give either a GENOTYPE (text or file) or --model NAME")
    if model is not None:
        net = build_baseline(model, family, classes, **config.model.options)
    else:
        space = load_search_space(config.search_space)
        net = CellNetwork(load_genotype(genotype), space, classes)
    click.echo(count_cost(net, (1, 3, image_size, image_size)).table())


@main.command("train")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True)
@click.option("--genotype", help="Genotype text or a .yaml/.json/.txt file (e.g. from derive).")
@click.option("--model", type=click.Choice(["resnet18", "resnet20", "vgg_small"]))
@click.option("--family", type=click.Choice(["xnor", "bireal"]), help="Baseline block family.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override final.epochs.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Default: runs/train-NAME.")
@click.option("--resume", is_flag=True, help="Continue from the run directory's checkpoint.")
@set_option
@plugin_option
@user_errors
def train_command(
    config_path: str,
    genotype: str | None,
    model: str | None,
    family: str | None,
    epochs: int | None,
    run_dir: str | None,
    resume: bool,
    overrides: tuple[str, ...],
    plugins: tuple[str, ...],
) -> None:
    """Train a genotype (or a hand-designed baseline) to the end and report test accuracy."""
    from dataclasses import replace
    from pathlib import Path

    from bnn_nas.space.genotype import load_genotype
    from bnn_nas.train.run import train_run

    config = load_run_config(config_path, plugins, overrides)
    if (genotype is None) == (model is None):
        fail("give either --genotype FILE_OR_TEXT or --model NAME")
    g = load_genotype(genotype) if genotype is not None else None
    if model is not None:
        config = replace(
            config, model=replace(config.model, type=model, family=family or config.model.family)
        )
    if epochs is not None:
        config = replace(config, final=replace(config.final, epochs=epochs))
    name = f"{config.model.type}-{config.model.family}" if g is None else g.hash
    target = Path(run_dir) if run_dir else Path("runs") / f"train-{name}"
    report = train_run(config, target, genotype=g, resume=resume)
    click.echo(
        f"test accuracy {report['test_accuracy']:.4f}  OPs {report['ops']:.3g}  "
        f"params {report['params']}  bytes {report['bytes']:.0f}  "
        f"train {report['train_seconds'] / 60:.1f} min  -> {target}"
    )


@main.command("search")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True)
@click.option("--run-dir", type=click.Path(file_okay=False), help="Default: config run_dir.")
@click.option("--resume", is_flag=True, help="Require an existing search to continue.")
@click.option("--budget", type=click.IntRange(min=1), help="Override search.budget.")
@set_option
@plugin_option
@user_errors
def search_command(
    config_path: str,
    run_dir: str | None,
    resume: bool,
    budget: int | None,
    overrides: tuple[str, ...],
    plugins: tuple[str, ...],
) -> None:
    """Search binary architectures; an existing run directory is resumed."""
    from pathlib import Path

    from bnn_nas.search.engine import default_run_dir, make_executor, open_search, with_budget
    from bnn_nas.search.progress import SearchProgress

    config = with_budget(load_run_config(config_path, plugins, overrides), budget)
    target = Path(run_dir) if run_dir else default_run_dir(config)
    search, evaluator = open_search(config, target, resume=resume)
    reclaimed = search.prepare()
    done = search.finished()
    if done or reclaimed:
        click.echo(
            f"resuming {target}: {done} trials finished"
            + (f", {len(reclaimed)} interrupted trials to rerun" if reclaimed else ""),
            err=True,
        )
    try:
        with (
            make_executor(config, evaluator, plugins) as executor,
            SearchProgress(config.search.budget, done) as progress,
        ):
            records = search.run(executor, progress.update)
    except KeyboardInterrupt:
        fail(
            f"interrupted; trials in flight will rerun: bnn-nas search --config {config_path} "
            f"--run-dir {target}"
        )
    failed = sum(r.status.value == "failed" for r in records)
    click.echo(f"{sum(r.done for r in records)} trials done, {failed} failed -> {target}")
    click.echo(f"next: bnn-nas derive {target}")


@main.command("derive")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--by",
    type=click.Choice(["accuracy", "pareto"]),
    default="accuracy",
    show_default=True,
    help="Most accurate trial, or the knee of the Pareto front.",
)
@click.option("--max-ops", type=float, help="Only trials with at most this many OPs.")
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
    run_dir: str, by: str, max_ops: float | None, top: int, output: str | None
) -> None:
    """Pick the final genotype of a search and write it (YAML, DARTS text, drawing)."""
    from pathlib import Path

    from bnn_nas.io import dump_yaml, write_text_atomic
    from bnn_nas.search.derive import choose, open_results
    from bnn_nas.search.progress import describe
    from bnn_nas.space.drawing import render

    records = open_results(Path(run_dir))
    chosen, ranking = choose(records, by, max_ops)
    title = "Pareto front (by OPs)" if by == "pareto" else "most accurate"
    click.echo(f"{title}, {len(ranking)} candidates:")
    for record in ranking[:top]:
        mark = "*" if record.id == chosen.id else " "
        click.echo(f" {mark} {describe(record)}")
    target = Path(output) if output else Path(run_dir) / "genotype.yaml"
    result = chosen.result
    assert result is not None
    document = {
        "genotype": str(chosen.genotype),
        "hash": chosen.hash,
        "trial": chosen.id,
        "derived_by": by if max_ops is None else f"{by}, max_ops={max_ops:g}",
        "search_valid_accuracy": result.accuracy,
        "ops": result.ops,
        "bops": result.bops,
        "flops": result.flops,
        "params": result.binary_params + result.float_params,
        "bytes": result.bytes,
        "cells": chosen.genotype.to_dict(),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, dump_yaml(document))
    write_text_atomic(target.with_suffix(".txt"), str(chosen.genotype) + "\n")
    drawing = render(chosen.genotype, target.with_suffix(".png"))
    click.echo(str(chosen.genotype))
    click.echo(f"wrote {target}, {target.with_suffix('.txt')}, {drawing}")
    config = Path(run_dir) / "config.yaml"
    click.echo(f"next: bnn-nas train --config {config} --genotype {target}")


@main.command("status")
@click.argument("run_dir", type=click.Path(file_okay=False))
@user_errors
def status_command(run_dir: str) -> None:
    """Table of a search's trials: status, accuracy, OPs, time, origin."""
    from pathlib import Path

    from bnn_nas.search.derive import open_results
    from bnn_nas.search.engine import best_trial

    records = open_results(Path(run_dir))
    header = f"{'id':>4}  {'status':<8}{'accuracy':>9}{'OPs (M)':>10}{'seconds':>9}  origin"
    click.echo(header)
    for r in records:
        res = r.result
        acc = f"{res.accuracy:.4f}" if res else "-"
        ops = f"{res.ops / 1e6:.3f}" if res else "-"
        sec = f"{res.train_seconds:.1f}" if res else "-"
        origin = r.origin.get("kind", "") + (
            f" of {r.origin['parent']}" if "parent" in r.origin else ""
        )
        extra = f"  {r.error}" if r.error else ""
        click.echo(f"{r.id:>4}  {r.status.value:<8}{acc:>9}{ops:>10}{sec:>9}  {origin}{extra}")
    counts = {
        s: sum(r.status.value == s for r in records)
        for s in ("done", "failed", "running", "pending")
    }
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items() if n))
    best = best_trial(records)
    if best is not None and best.result is not None:
        click.echo(
            f"best: trial {best.id} accuracy {best.result.accuracy:.4f} "
            f"OPs {best.result.ops / 1e6:.3f}M"
        )


@main.command("plot")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Image to write (default RUN_DIR/search.png).",
)
@user_errors
def plot_command(run_dir: str, output: str | None) -> None:
    """Accuracy vs OPs with the Pareto front, and best-so-far over trials (needs [plot])."""
    from pathlib import Path

    from bnn_nas.search.derive import open_results
    from bnn_nas.search.plot import plot_search

    records = open_results(Path(run_dir))
    target = Path(output) if output else Path(run_dir) / "search.png"
    click.echo(f"wrote {plot_search(records, target, title=str(run_dir))}")


def _register_export_commands() -> None:
    from bnn_nas.export.commands import export_command, infer_command

    main.add_command(export_command)
    main.add_command(infer_command)


_register_export_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
