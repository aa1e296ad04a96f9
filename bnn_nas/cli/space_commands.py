"""`bnn-nas primitives`, `show` and `profile`: looking at primitives, genotypes and costs."""

from __future__ import annotations

import click

from bnn_nas.cli.options import (
    RegisteredName,
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
        wider = f"*{pattern}*"  # a bare name matches only itself: the wildcards it wanted
        if not any(c in pattern for c in "*?[") and list_primitives(wider):
            fail(f"no primitive is named {pattern!r}; to list those containing it: "
                 f"bnn-nas primitives '{wider}'")  # fmt: skip
        fail(f"no primitive matches {pattern!r}; run `bnn-nas primitives` to see them all")
    rows = [("name", "family", "precision", "source", "description")]
    rows += [(s.name, s.family, s.precision, s.source, s.doc) for s in specs]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        click.echo("  ".join([*cells, row[4]]).rstrip())


def run_dir_option(func):
    return click.option(
        "--run-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="A search or training run directory: a training run's network.yaml (else its "
        "config.yaml) gives the layout (and its genotype when GENOTYPE is left out).",
    )(func)


def layout_config(config_path: str | None, run_dir: str | None, plugins: tuple[str, ...]):
    """(config, where it came from or None): from --config, RUN_DIR/config.yaml or defaults."""
    from pathlib import Path

    if config_path and run_dir:
        fail("give --config or --run-dir, not both")
    if run_dir:
        if not Path(run_dir).is_dir():
            fail(f"--run-dir {run_dir} is not a directory")
        config_path = str(Path(run_dir) / "config.yaml")
        if not Path(config_path).is_file():
            fail(f"--run-dir {run_dir} has no config.yaml; give a search or training run directory")
    return load_run_config(config_path, plugins), config_path


def genotype_argument(genotype: str | None, run_dir: str | None) -> str | None:
    """GENOTYPE, or the run directory's genotype.yaml when GENOTYPE is left out."""
    from pathlib import Path

    if genotype is None and run_dir and (Path(run_dir) / "genotype.yaml").is_file():
        return str(Path(run_dir) / "genotype.yaml")
    return genotype


def run_record(run_dir: str | None):
    """RUN/network.yaml's description (what `bnn-nas train` built there and export reads),
    or None: no --run-dir, a search run, or a run written before bnn-nas recorded it
    (its config.yaml and genotype.yaml describe the network then)."""
    if not run_dir:
        return None
    from pathlib import Path

    from bnn_nas.train.final_network import recorded_architecture

    return recorded_architecture(Path(run_dir))


def run_layout(config, source: str | None, recorded, run_dir: str | None):
    """(model settings, where they came from): RUN/network.yaml's when the run recorded
    it, else the config's."""
    from pathlib import Path

    from bnn_nas.train.final_network import NETWORK

    if recorded is None:
        return config.model, source
    assert run_dir is not None
    return recorded.model, str(Path(run_dir) / NETWORK)


def layout_space(config, recorded):
    """The search space a genotype's network is built in: RUN/network.yaml's, else (no
    record, or a baseline's, which holds none) the config's."""
    from bnn_nas.space.search_space import load_search_space

    if recorded is not None and recorded.space is not None:
        return recorded.space
    return load_search_space(config.search_space)


def run_input(run_dir: str | None, image_size: int | None, classes: int | None,
              recorded=None):  # fmt: skip
    """(image size, classes): the flags where given, else what RUN/network.yaml records
    (``recorded``), else what the training run's report.json records (its images' height,
    its class count), else CIFAR-10's 32 and 10."""
    shape, counted = (None, None)
    if recorded is not None:
        counted = recorded.num_classes
        if recorded.image_size is not None:
            shape = (recorded.image_size,)
    wanted = (image_size is None and shape is None) or (classes is None and counted is None)
    if run_dir and wanted:  # report.json only for what the flags and network.yaml leave open
        from bnn_nas.rundir import report_input

        reported, reported_classes = report_input(run_dir)
        shape = reported if shape is None else shape
        counted = reported_classes if counted is None else counted
    if image_size is None:
        image_size = shape[0] if shape is not None else 32
    if classes is None:
        classes = counted if counted is not None else 10
    return image_size, classes


def cell_network(space, settings, source: str | None, genotype, search_layout: bool, sizes,
                 classes, image_size):  # fmt: skip
    """The genotype's network as `bnn-nas train` (or, ``search_layout``, the search's
    trials) builds it in ``space`` with the model ``settings`` (a config's or a run's
    network.yaml), sized by --cells/--channels, and one line naming that layout and where
    it came from."""
    from bnn_nas.config import ModelConfig
    from bnn_nas.space.architecture import Architecture
    from bnn_nas.space.network import model_layout

    cells, channels = sizes
    search = ModelConfig(cells=cells, channels=channels)
    final = ModelConfig(cells=cells or settings.cells, channels=channels or settings.channels)
    model = search if search_layout else final
    net = Architecture(model, classes, space, genotype, image_size).build(training=True)

    def shape(layout) -> str:
        reductions = ", ".join(map(str, layout.reductions)) or "none"
        return f"{layout.cells} cells x {layout.channels} channels (reductions at {reductions})"

    layout = model_layout(model, space)
    flags = " with --cells/--channels" if cells or channels else ""
    if source is None:
        where = (
            f"the defaults: search space {space.name}{flags}; --config or --run-dir takes a "
            "run's layout"
        )
    elif search_layout:
        where = f"{source}{flags}, as the search's trials build it"
    else:
        where = f"{source}{flags}, as `bnn-nas train` builds it"
        other = model_layout(search, space)
        if other != layout:
            where += f"; the search's trials: {other.cells} x {other.channels}, --layout search"
    return net, f"layout: {shape(layout)}, {image_size} px, {classes} classes ({where})"


@click.command("show")
@click.argument("genotype", required=False)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write a drawing: .png, .svg or .dot."
)
@config_option
@run_dir_option
@plugin_option
@user_errors
def show_command(
    genotype: str | None,
    output: str | None,
    config_path: str | None,
    run_dir: str | None,
    plugins: tuple[str, ...],
) -> None:
    """Print and draw GENOTYPE (DARTS text, or a .yaml/.json/.txt file holding one), and its
    network's cost in the layout of --config or --run-dir (else the defaults).

    With --config the genotype is checked against the config's search space.
    """
    from pathlib import Path

    from bnn_nas.cost import count_cost
    from bnn_nas.errors import BnnNasError
    from bnn_nas.space.drawing import render
    from bnn_nas.space.genotype import load_genotype
    from bnn_nas.space.search_space import load_search_space

    if output:  # a drawing it cannot write: one line before anything is printed
        from bnn_nas.io import check_output_path
        from bnn_nas.space.drawing import check_drawing_path

        check_output_path(output)
        check_drawing_path(output)
    explicit_config = config_path
    config, source = layout_config(config_path, run_dir, plugins)
    recorded = run_record(run_dir)
    settings, source = run_layout(config, source, recorded, run_dir)
    if genotype is None and recorded is not None and recorded.genotype is not None:
        g = recorded.genotype
    else:
        genotype = genotype_argument(genotype, run_dir)
        if genotype is None:
            fail("give a GENOTYPE (text or file), or a --run-dir holding genotype.yaml")
        g = load_genotype(genotype)
    if explicit_config:
        load_search_space(config.search_space).validate(g)
    click.echo(str(g))
    click.echo(f"hash: {g.hash}")
    click.echo(f"steps: normal {g.normal_steps}, reduce {g.reduce_steps}")
    click.echo(f"ops: {', '.join(sorted(g.ops()))}")
    image_size, classes = run_input(run_dir, None, None, recorded)
    try:
        space = layout_space(config, recorded)
        net, layout = cell_network(space, settings, source, g, False, (None, None), classes,
                                   image_size)  # fmt: skip
        cost = count_cost(net, (1, 3, image_size, image_size))
    except BnnNasError as err:  # e.g. an op no loaded plugin registers: printed, not refused
        reason = err.line()
        if "unknown op" in reason and "; allowed: " in reason:  # the registry's whole list
            reason = reason.split("; allowed: ", 1)[0] + "; see `bnn-nas primitives`"
        click.echo(f"cost: not counted ({reason})")
    else:
        click.echo(layout)
        click.echo(cost.table().splitlines()[-1].replace("total: ", "cost: ", 1))
    if output:
        drawing = render(g, Path(output))
        if drawing.note:
            click.echo(drawing.note)
        click.echo(f"wrote {drawing.path}")


@click.command("profile")
@click.argument("genotype", required=False)
@click.option(
    "--model",
    type=RegisteredName("BASELINES"),
    help="Profile a hand-designed baseline instead of a genotype.",
)
@click.option("--family", type=RegisteredName("FAMILIES"), default="xnor")
@click.option(
    "--image-size",
    type=int,
    default=None,
    help="Input size; it picks a baseline's layout (>= 128 px: ImageNet). Default: the "
    "training images' size that --run-dir's report.json records, else 32.",
)
@click.option(
    "--classes",
    type=int,
    default=None,
    help="Default: the class count of --run-dir's report.json, else 10.",
)
@click.option("--cells", type=int, default=None, help="Cells of a genotype's network.")
@click.option("--channels", type=int, default=None, help="Initial channels of its cells.")
@click.option(
    "--layout",
    "layout_kind",
    type=click.Choice(["final", "search"]),
    default="final",
    show_default=True,
    help="With --config/--run-dir: the network `bnn-nas train` builds (model.cells/channels) "
    "or the one the search's trials train (the search space's network).",
)
@config_option
@run_dir_option
@plugin_option
@user_errors
def profile_command(
    genotype: str | None,
    model: str | None,
    family: str,
    image_size: int | None,
    classes: int | None,
    cells: int | None,
    channels: int | None,
    layout_kind: str,
    config_path: str | None,
    run_dir: str | None,
    plugins: tuple[str, ...],
) -> None:
    """Per-layer cost table of GENOTYPE (or --model) and totals: BOPs, FLOPs, OPs, params, bytes.

    The first line names the layout: from --config or --run-dir (a search or training run
    directory; its genotype.yaml when GENOTYPE is left out, or its baseline model), else
    the defaults.
    """
    from bnn_nas.config import ModelConfig
    from bnn_nas.cost import count_cost
    from bnn_nas.extensions import get_baseline, get_family
    from bnn_nas.space.architecture import Architecture
    from bnn_nas.space.genotype import load_genotype

    config, source = layout_config(config_path, run_dir, plugins)
    recorded = run_record(run_dir)
    settings, source = run_layout(config, source, recorded, run_dir)
    image_size, classes = run_input(run_dir, image_size, classes, recorded)
    g = None
    if model is None and genotype is None and recorded is not None:
        g = recorded.genotype  # the network the run trained (None: a baseline's run)
    elif model is None:
        genotype = genotype_argument(genotype, run_dir)
    if genotype is not None:
        g = load_genotype(genotype)
    baseline = model
    if g is None and model is None and source and settings.type != "cells":
        baseline, family = settings.type, settings.family
    if (g is None) == (baseline is None):
        fail("give either a GENOTYPE (text or file) or --model NAME")
    sizes = (
        ("--cells", cells), ("--channels", channels), ("--image-size", image_size),
        ("--classes", classes),
    )  # fmt: skip
    for label, value in sizes:
        if value is not None and value < 1:
            fail(f"{label} must be a positive integer, not {value}")
    if baseline is not None:
        if cells is not None or channels is not None:
            fail("--cells/--channels size a GENOTYPE's network, not a --model baseline")
        get_family(family)
        get_baseline(baseline)
        chosen = ModelConfig(type=baseline, family=family, options=dict(settings.options))
        net = Architecture(chosen, classes, image_size=image_size).build(training=True)
        where = f" (model of {source})" if model is None else ""
        click.echo(f"network: {baseline} ({family}), {image_size} px, {classes} classes{where}")
    else:
        net, layout = cell_network(
            layout_space(config, recorded), settings, source, g, layout_kind == "search",
            (cells, channels), classes, image_size,
        )  # fmt: skip
        click.echo(layout)
    click.echo(count_cost(net, (1, 3, image_size, image_size)).table())
