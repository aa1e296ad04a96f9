"""`bnn-nas export` and `bnn-nas infer`: the bit-packed CPU engine from the command line."""

from __future__ import annotations

from typing import Any

import click

from bnn_nas.cli.options import (
    RegisteredName,
    load_user_plugins,
    plugin_option,
    plural,
    repeated,
    run_plugins_trusted,
    shell_words,
    user_errors,
)


def _floats(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not comma-separated numbers") from None


@click.command("export")
@click.argument("source", type=click.Path())
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Default: RUN_DIR/model.bnn (.onnx)."
)
@click.option(
    "--format", "file_format", type=click.Choice(["bnn", "onnx"]), default="bnn",
    show_default=True,
    help="bnn: bit-packed, for `bnn-nas infer`; onnx: a standard graph with the binary "
    "convs float-simulated, for onnxruntime and Netron ([onnx] extra).",
)  # fmt: skip
@click.option(
    "--mean", callback=_floats, help="Input mean per channel, e.g. 0.49,0.48,0.45 (default: "
    "computed from the run's training set, as training did).",
)  # fmt: skip
@click.option("--std", callback=_floats, help="Input std per channel (with --mean).")
@plugin_option
@user_errors
def export_command(
    source: str,
    output: str | None,
    file_format: str,
    mean: tuple[float, ...] | None,
    std: tuple[float, ...] | None,
    plugins: tuple[str, ...],
) -> None:
    """Pack the trained network of SOURCE (a `bnn-nas train` run directory or its
    checkpoint) into a .bnn file: BN folded into thresholds, binary weights 1 bit each;
    or write it as ONNX with --format onnx."""
    from pathlib import Path

    from bnn_nas.export.exporter import export_run

    if output:
        from bnn_nas.io import check_output_path

        check_output_path(output)
    load_user_plugins(plugins)
    summary = export_run(
        Path(source), Path(output) if output else None, file_format=file_format, mean=mean,
        std=std, plugins=plugins, trust_run_plugins=run_plugins_trusted(),
    )  # fmt: skip
    click.echo(summary.describe())
    if file_format == "bnn":
        click.echo(_infer_hint(Path(source), summary.path, plugins))


def _infer_hint(source: Any, model: Any, plugins: tuple[str, ...]) -> str:
    """The `infer` command of ``model`` on the data set its run trained on (the run's
    config.yaml, checked by the export already); the generic form where that is unknown."""
    import yaml

    run_dir = source if source.is_dir() else source.parent
    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))["data"]
        name, root = data["name"], data.get("root")
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError):
        name, root = None, None
    if name == "cifar10_sample":
        where = ["--dataset", name]
    elif name in ("cifar10", "image_folder") and isinstance(root, str):
        where = ["--dataset", name, "--data-root", root]
    else:
        return f"next: bnn-nas infer {model} --dataset ... | --images DIR"
    return "next: " + shell_words(["bnn-nas", "infer", str(model), *where,
                                   *repeated("--plugin", plugins)])  # fmt: skip


@click.command("infer")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--images", type=click.Path(file_okay=False), help="Class subfolders or images.")
@click.option(
    "--dataset",
    type=RegisteredName("DATASETS"),
    help="A registered data set (with --data-root unless cifar10_sample).",
)
@click.option("--data-root", type=click.Path(file_okay=False), help="Folder of --dataset.")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Only the first N images.")
@click.option("--batch-size", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--threads", type=click.IntRange(min=1), default=1, show_default=True,
    help="CPU threads of the packed kernels and of torch.",
)  # fmt: skip
@click.option(
    "--portable", is_flag=True, help="Use the portable torch fallback, not the native kernels."
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write predictions to this CSV."
)
@plugin_option
@user_errors
def infer_command(
    model: str,
    images: str | None,
    dataset: str | None,
    data_root: str | None,
    split: str,
    limit: int | None,
    batch_size: int,
    threads: int,
    portable: bool,
    output: str | None,
    plugins: tuple[str, ...],
) -> None:
    """Classify images with an exported MODEL (.bnn) on the CPU; accuracy when labelled."""
    from dataclasses import replace
    from pathlib import Path

    import torch

    from bnn_nas.errors import DataError
    from bnn_nas.export.infer import images_from_dataset, images_from_folder, run_inference
    from bnn_nas.export.loader import load_packed
    from bnn_nas.io import write_csv_atomic

    if (images is None) == (dataset is None):
        raise DataError("give either --images DIR or --dataset NAME")
    if output:
        from bnn_nas.io import check_output_path

        check_output_path(output)
    load_user_plugins(plugins)
    network = load_packed(Path(model), native=not portable, threads=threads)
    if images is not None:
        data = images_from_folder(Path(images), network.input.classes)
    else:
        assert dataset is not None
        try:
            data = images_from_dataset(dataset, data_root, split)
        except DataError as err:  # the data set's own words name its config key, data.root
            if data_root is None and "needs data.root" in str(err):
                raise DataError(f"--dataset {dataset} needs --data-root DIR, the folder "
                                "holding it") from None  # fmt: skip
            raise
    # said once the inputs are known good: an error is then the only line on stderr
    click.echo(f"engine: {network.backend.describe()}", err=True)
    if limit is not None:
        labels = None if data.labels is None else data.labels[:limit]
        data = replace(data, images=data.images[:limit], labels=labels, names=data.names[:limit])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # the float parts (stem, classifier, ...) too
    try:
        result = run_inference(network, data, batch_size)
    finally:
        torch.set_num_threads(previous)
    classes = network.input.classes
    if output:
        rows = (
            {"image": name, "prediction": classes[p], "label": "" if data.labels is None
             else classes[int(data.labels[i])]}
            for i, (name, p) in enumerate(zip(data.names, result.predictions, strict=True))
        )  # fmt: skip
        write_csv_atomic(Path(output), ["image", "prediction", "label"], rows)
    elif result.accuracy is None:
        for name, p in zip(data.names, result.predictions, strict=True):
            click.echo(f"{name}\t{classes[p]}")
    timing = f"{result.ms_per_image:.3f} ms/image (batch {batch_size}, {plural(threads, 'thread')})"
    if result.accuracy is not None:
        correct = round(result.accuracy * len(result.predictions))
        click.echo(
            f"accuracy {result.accuracy:.4f} ({correct}/{len(result.predictions)}) on "
            f"{data.source}; {timing}"
        )
    else:
        click.echo(f"{len(result.predictions)} images of {data.source}; {timing}")
    if output:
        click.echo(f"wrote {output}")
