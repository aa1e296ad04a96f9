"""``bnn-nas export``: a trained network -> a ``.bnn`` file of packed bits and float parts.

The trained model is copied, rewritten by :func:`pack_model` (BNs folded, binary weights
packed 1 bit each) and its state written with the description needed to rebuild it.
"""

from __future__ import annotations

import copy
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from bnn_nas import __version__
from bnn_nas.config import load_config
from bnn_nas.errors import BnnNasError, CheckpointError, DataError
from bnn_nas.export.architecture import Architecture, InputSpec
from bnn_nas.export.convert import pack_model
from bnn_nas.export.fileformat import write_bnn
from bnn_nas.export.modules import PackedConv2d
from bnn_nas.units import plural, size

if TYPE_CHECKING:
    from bnn_nas.export.onnx_format import OnnxSummary

FORMAT_NAME = "bnn-nas-packed"


@dataclass(frozen=True)
class ExportSummary:
    """What was written, and how its size splits between the binary and the float parts."""

    path: Path
    file_bytes: int
    binary_bytes: int  # packed convs: sign bits plus per-channel threshold / affine terms
    binary_weight_bytes: int  # the sign bits alone
    binary_float32_bytes: int  # the same weights as float32 (what a float checkpoint holds)
    float_bytes: int  # everything else: stem, classifier, float convs, BN, PReLU
    packed_layers: int
    skipped: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        ratio = self.binary_float32_bytes / max(self.binary_bytes, 1)
        packed = plural(self.packed_layers, "binary conv")
        line = (
            f"wrote {self.path}: {size(self.file_bytes)}; {packed} packed into "
            f"{size(self.binary_bytes)} ({ratio:.1f}x smaller than "
            f"their {size(self.binary_float32_bytes)} of float32 weights); "
            f"float parts {size(self.float_bytes)}"
        )  # sizes and counts as every command writes them (bnn_nas/units.py)
        if self.skipped:
            left = plural(len(self.skipped), "binary conv")
            line += f"; {left} left in torch ({self.skipped[0][1]})"
        return line


def _arrays(state: dict[str, torch.Tensor], packed: set[str]) -> dict[str, np.ndarray]:
    arrays = {}
    for name, tensor in state.items():
        t = tensor.detach().cpu()
        if name.rpartition(".")[0] in packed and name.endswith(".weight_bits"):
            arrays[name] = t.numpy().view(np.uint64)
        elif t.is_floating_point():
            arrays[name] = t.float().numpy()
        else:
            arrays[name] = t.numpy()
    return arrays


def export_network(
    model: nn.Module,
    architecture: Architecture,
    input_spec: InputSpec,
    output: Path,
    *,
    source: dict[str, Any] | None = None,
) -> ExportSummary:
    """Pack a trained ``model`` of ``architecture`` and write it to ``output``."""
    net = copy.deepcopy(model).cpu().eval()
    conversion = pack_model(net)
    packed = {path for path, m in net.named_modules() if isinstance(m, PackedConv2d)}
    arrays = _arrays(net.state_dict(), packed)
    binary = {k: a for k, a in arrays.items() if k.rpartition(".")[0] in packed}
    header = {
        "format": FORMAT_NAME,
        "bnn_nas": __version__,
        "torch": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "architecture": architecture.to_dict(),
        "input": input_spec.to_dict(),
        "packed_layers": [layer.to_dict() for layer in conversion.layers],
        "skipped": [list(s) for s in conversion.skipped],
        "source": source or {},
    }
    size = write_bnn(Path(output), header, arrays)
    weights = sum(a.nbytes for k, a in binary.items() if k.endswith(".weight_bits"))
    float32 = sum(
        4
        * layer.geometry.group_in
        * layer.geometry.out_channels
        * layer.geometry.kernel[0]
        * layer.geometry.kernel[1]
        for layer in conversion.layers
    )
    binary_bytes = sum(a.nbytes for a in binary.values())
    return ExportSummary(
        path=Path(output),
        file_bytes=size,
        binary_bytes=binary_bytes,
        binary_weight_bytes=weights,
        binary_float32_bytes=float32,
        float_bytes=sum(a.nbytes for a in arrays.values()) - binary_bytes,
        packed_layers=len(conversion.layers),
        skipped=conversion.skipped,
    )


@dataclass(frozen=True)
class RunFiles:
    """The files of a training run that an export reads."""

    checkpoint: Path
    config: Path
    genotype: Path | None


def resolve_run(source: Path) -> RunFiles:
    """A run directory, or a checkpoint file inside one -> its checkpoint, config, genotype."""
    source = Path(source)
    if source.is_dir():
        folder, checkpoint = source, source / "checkpoint.pt"
    elif source.is_file():
        folder, checkpoint = source.parent, source
    else:
        raise CheckpointError(f"{source} does not exist; pass a run directory of `bnn-nas train`")
    if not checkpoint.is_file():
        raise CheckpointError(
            f"{folder} has no checkpoint.pt; pass a run directory written by `bnn-nas train`"
        )
    config = folder / "config.yaml"
    if not config.is_file():
        raise CheckpointError(
            f"{folder} has no config.yaml next to the checkpoint; export from the run "
            "directory that `bnn-nas train` wrote"
        )
    genotype = folder / "genotype.yaml"
    return RunFiles(checkpoint, config, genotype if genotype.is_file() else None)


def _input_spec(
    config: Any, classes: int, mean: Any, std: Any, shape: tuple[int, int, int] | None = None
) -> InputSpec:
    """``shape``: the training images' HWC shape that the run's report.json records (the
    image size given with --mean/--std: it picks an ImageNet layout and the ONNX input)."""
    if (mean is None) != (std is None):
        raise DataError("give both --mean and --std, or neither (then the training data is read)")
    if mean is not None:
        if len(mean) != len(std) or not all(s > 0 for s in std):
            raise DataError("--mean and --std need one value per channel, std > 0")
        h, w = (shape[0], shape[1]) if shape is not None else (None, None)
        return InputSpec(tuple(mean), tuple(std), tuple(str(i) for i in range(classes)), h, w)
    from bnn_nas.data import data_settings, load_dataset

    try:
        dataset = load_dataset(data_settings(config.data))
    except BnnNasError as err:
        raise DataError(
            f"{err} (export reads the training set for its normalisation; or pass --mean and --std)"
        ) from None
    mean_t, std_t = dataset.train.channel_stats()
    h, w, _ = dataset.train.image_shape
    return InputSpec(mean_t, std_t, dataset.classes, h, w)


def _read_report(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def export_run(
    source: Path,
    output: Path | None = None,
    *,
    file_format: str = "bnn",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    plugins: tuple[str, ...] = (),
    trust_run_plugins: bool = False,
) -> ExportSummary | OnnxSummary:
    """Export the trained network of a run directory (or of a checkpoint inside one).

    ``file_format``: ``bnn`` (bit-packed, for bnn-nas's CPU engine) or ``onnx``.
    The plugins the run's config names are imported only when passed in ``plugins`` or
    with ``trust_run_plugins``: a run directory someone hands you is not code to run.
    """
    from bnn_nas.primitives import load_plugins
    from bnn_nas.rundir import report_input, run_plugins
    from bnn_nas.train.checkpoint import load_checkpoint
    from bnn_nas.train.final_network import run_architecture

    files = resolve_run(source)
    config = load_config(files.config)
    named = run_plugins(files.config, config.plugins, tuple(plugins), trust=trust_run_plugins)
    load_plugins(named + tuple(plugins))
    state = load_checkpoint(files.checkpoint)
    weights = state.get("model", {})
    if "classifier.weight" not in weights:
        raise CheckpointError(f"{files.checkpoint} holds no network with a classifier")
    classes = int(weights["classifier.weight"].shape[0])
    shape, _ = report_input(files.checkpoint.parent)
    spec = _input_spec(config, classes, mean, std, shape)
    # the network the run recorded (older runs: its config and genotype, for the
    # checkpoint's classes at the training images' size: a baseline trained on
    # ImageNet-size images has the ImageNet layout, as train picked it)
    architecture = run_architecture(
        files.checkpoint.parent, config, num_classes=classes, image_size=spec.height
    )
    model = architecture.build()
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0][:160]
        raise CheckpointError(
            f"{files.checkpoint} does not fit the network of {files.config} ({first}); "
            "export the run directory the checkpoint came from"
        ) from None
    if len(spec.classes) != classes:
        raise DataError(
            f"the checkpoint has {classes} classes but the data set {len(spec.classes)}; "
            "check data in config.yaml"
        )
    report = _read_report(files.checkpoint.parent / "report.json")
    source_info = {
        "checkpoint": str(files.checkpoint),
        "epoch": state.get("epoch"),
        "test_accuracy": report.get("test_accuracy"),
        "dataset": report.get("dataset", config.data.name),
    }
    default = files.checkpoint.parent / f"model.{file_format}"
    target = Path(output) if output is not None else default
    if file_format == "onnx":
        from bnn_nas.export.onnx_format import export_onnx

        return export_onnx(model, spec, target)
    return export_network(model, architecture, spec, target, source=source_info)
