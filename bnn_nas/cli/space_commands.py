"""`bnn-nas primitives`, `show` and `profile`: looking at primitives, genotypes and costs."""

from __future__ import annotations

import click

from bnn_nas.cli.options import (
    config_option,
    fail,
    load_run_config,
    load_user_plugins,
    plugin_option,
    user_errors,
)


@click.command("primitives")
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


@click.command("show")
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
        drawing = render(g, Path(output))
        if drawing.note:
            click.echo(drawing.note)
        click.echo(f"wrote {drawing.path}")


@click.command("profile")
@click.argument("genotype", required=False)
@click.option(
    "--model",
    type=click.Choice(["resnet18", "resnet34", "resnet20", "vgg_small"]),
    help="Profile a hand-designed baseline instead of a genotype.",
)
@click.option("--family", type=click.Choice(["xnor", "bireal"]), default="xnor")
@click.option(
    "--image-size",
    type=int,
    default=32,
    show_default=True,
    help="Input size; it picks a baseline's layout (>= 128 px: ImageNet).",
)
@click.option("--classes", type=int, default=10, show_default=True)
@click.option("--cells", type=int, default=None, help="Cells of a genotype's network.")
@click.option("--channels", type=int, default=None, help="Initial channels of its cells.")
@config_option
@plugin_option
@user_errors
def profile_command(
    genotype: str | None,
    model: str | None,
    family: str,
    image_size: int,
    classes: int,
    cells: int | None,
    channels: int | None,
    config_path: str | None,
    plugins: tuple[str, ...],
) -> None:
    """Per-layer cost table of GENOTYPE (or --model) and totals: BOPs, FLOPs, OPs, params, bytes."""
    from bnn_nas.config import ModelConfig
    from bnn_nas.cost import count_cost
    from bnn_nas.space.genotype import load_genotype
    from bnn_nas.space.network import build_baseline, build_model
    from bnn_nas.space.search_space import load_search_space

    config = load_run_config(config_path, plugins)
    if (genotype is None) == (model is None):
        fail("give either a GENOTYPE (text or file) or --model NAME")
    sizes = (("--cells", cells), ("--channels", channels), ("--image-size", image_size))
    for label, value in sizes:
        if value is not None and value < 1:
            fail(f"{label} must be a positive integer, not {value}")
    if model is not None:
        if cells is not None or channels is not None:
            fail("--cells/--channels size a GENOTYPE's network, not a --model baseline")
        net = build_baseline(
            model, family, classes, image_size=image_size, **config.model.options
        )
    else:
        space = load_search_space(config.search_space)
        size = ModelConfig(cells=cells, channels=channels)
        net = build_model(size, space, classes, load_genotype(genotype), image_size=image_size)
    click.echo(count_cost(net, (1, 3, image_size, image_size)).table())
