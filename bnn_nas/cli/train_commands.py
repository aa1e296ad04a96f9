"""`bnn-nas train`: train a genotype or a hand-designed baseline to the end."""

from __future__ import annotations

import click

from bnn_nas.cli.options import (
    RegisteredName,
    fail,
    interrupted,
    load_run_config,
    plugin_option,
    repeated,
    run_config_plugins,
    run_plugins_trusted,
    set_option,
    shell_words,
    sigterm_interrupts,
    user_errors,
)
from bnn_nas.objectives import labelled

MODEL = RegisteredName("BASELINES")
FAMILY = RegisteredName("FAMILIES", ("float",))


@click.command("train")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True)
@click.option("--genotype", help="Genotype text or a .yaml/.json/.txt file (e.g. from derive).")
@click.option("--model", type=MODEL, help="A baseline model (registered, or a plugin's).")
@click.option(
    "--family",
    type=FAMILY,
    help="Baseline block family; float: the config's family with identity binarizers (the "
    "float twin, e.g. a distillation teacher).",
)
@click.option("--epochs", type=click.IntRange(min=1), help="Override final.epochs.")
@click.option("--run-dir", type=click.Path(file_okay=False), help="Default: runs/train-NAME.")
@click.option("--resume", is_flag=True, help="Continue from the run directory's checkpoint.")
@click.option(
    "--tensorboard",
    is_flag=True,
    help="Write per-epoch scalars to RUN_DIR/tensorboard/ (final.tensorboard; needs the "
    "[tensorboard] extra).",
)
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
    tensorboard: bool,
    overrides: tuple[str, ...],
    plugins: tuple[str, ...],
) -> None:
    """Train a genotype (or a hand-designed baseline) to the end and report test accuracy."""
    from pathlib import Path

    from bnn_nas.api import train_target
    from bnn_nas.rundir import run_kind
    from bnn_nas.space.genotype import load_genotype
    from bnn_nas.train.network_choice import network_config
    from bnn_nas.train.run import train_run
    from bnn_nas.train.teacher_spec import teacher_begun

    given = overrides
    if epochs is not None:  # checked with the rest of the config (e.g. against warm-up)
        overrides = (*overrides, f"final.epochs={epochs}")
    if tensorboard:
        overrides = (*overrides, "final.tensorboard=true")
    config = load_run_config(config_path, plugins, overrides)
    MODEL.check(model)
    FAMILY.check(family)
    if (genotype is None) == (model is None):
        fail("give either --genotype FILE_OR_TEXT or --model NAME")
    g = load_genotype(genotype) if genotype is not None else None
    config = network_config(config, g, model, family)
    target = Path(run_dir) if run_dir else train_target(config, g, family)
    from bnn_nas.train.trainer import TrainingDivergedError

    try:
        with sigterm_interrupts():  # SIGTERM stops it as Ctrl-C does, with the same hint
            report = train_run(config, target, genotype=g, resume=resume, say=click.echo)
    except TrainingDivergedError as err:  # the settings' doing, not a bug: lr, network, data
        fail(f"{err}; lower train/final lr, add grad_clip, or check the network's primitives")
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (Terminated)
        # a training stopped before its run directory was born left nothing: no --resume
        started = not target.is_file() and run_kind(target) == "train"
        teacher = teacher_begun(config, "final")  # a teacher spec's training cut off: kept
        interrupted(
            "continue from the last checkpoint with" if started else
            f"the teacher's training in {teacher} is kept; the same command resumes it"
            if teacher is not None else "nothing was saved yet; start again with",
            [
                "bnn-nas", "train", "--config", config_path,
                *(["--genotype", genotype] if genotype is not None else []),
                *(["--model", model] if model is not None else []),
                *(["--family", family] if family is not None else []),
                *(["--epochs", str(epochs)] if epochs is not None else []),
                "--run-dir", str(target), *(["--resume"] if started else []),
                *(["--tensorboard"] if tensorboard else []),
                *repeated("--set", given), *repeated("--plugin", plugins),
                *(["--trust-run-plugins"] if run_plugins_trusted() else []),
            ],
            by=err,
        )  # fmt: skip
    # the same units as the search's lines and status (bnn_nas.objectives)
    cost = "  ".join(labelled(name, report[name]) for name in ("ops", "params", "bytes"))
    click.echo(
        f"test accuracy {report['test_accuracy']:.4f}  {cost}  "
        f"train {report['train_seconds'] / 60:.1f} min  -> {target}"
    )
    # the run's config lies in the run directory: export imports its plugins only when named
    needs = repeated("--plugin", run_config_plugins(target / "config.yaml"))
    click.echo(f"next: {shell_words(['bnn-nas', 'export', str(target), *needs])}")
