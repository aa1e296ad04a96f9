"""ONNX export: onnxruntime predicts what the PyTorch network predicts.

Networks train one short epoch on the packaged CIFAR-10 sample (real BN statistics and
weights) and run on its 1,000 test images, as the .bnn agreement tests do.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnn_nas.cli.export_commands import export_command
from bnn_nas.config import ModelConfig, TrainConfig
from bnn_nas.export import Architecture, InputSpec
from bnn_nas.space.genotype import parse_genotype
from bnn_nas.space.search_space import search_space_from_dict
from bnn_nas.train import fit
from tests.test_export_cli import invoke, run  # noqa: F401  (the trained run directory)
from tests.test_export_model import (
    REACT,
    REACT_OPS,
    XNOR,
    XNOR_OPS,
    cells,
    predictions,
    train_and_export,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def onnx_predictions(path, images: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    chunks = [session.run(None, {"images": images[i : i + 250]})[0]
              for i in range(0, len(images), 250)]  # fmt: skip
    return np.concatenate(chunks).argmax(1)


@pytest.mark.parametrize(
    "network",
    ["resnet20-xnor", "resnet20-bireal", "cells-xnor"],
)
def test_onnxruntime_predicts_what_pytorch_predicts(network, sample, tmp_path):
    from bnn_nas.export.onnx_format import export_onnx

    if network == "cells-xnor":
        arch = cells(XNOR_OPS, XNOR, "float")
    else:
        model_type, family = network.split("-")
        arch = Architecture(ModelConfig(type=model_type, family=family), 10)
    model, _ = train_and_export(arch, sample, tmp_path / "m.bnn")
    stats = sample.train.channel_stats()
    spec = InputSpec(stats[0], stats[1], sample.classes, 32, 32)
    summary = export_onnx(model, spec, tmp_path / "m.onnx")
    assert not list(tmp_path.glob(".*.part"))  # written aside, then renamed into place
    onnx.checker.check_model(onnx.load(str(summary.path)))
    # the binary convs are Where(x >= 0, 1, -1) + Conv; no custom or unknown ops
    assert summary.nodes["Where"] >= 1 and summary.nodes["Conv"] >= 1
    images = sample.test.images  # uint8 NHWC, as the ONNX graph takes them
    ours = onnx_predictions(summary.path, images)
    mean = torch.tensor(stats[0]).view(1, 3, 1, 1)
    std = torch.tensor(stats[1]).view(1, 3, 1, 1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    theirs = predictions(model, (x / 255 - mean) / std)
    # float32 in two libraries: a value at a sign's threshold may round either way
    assert (ours == theirs).mean() >= 0.995, (ours == theirs).mean()
    assert (theirs == sample.test.labels).mean() > 0.15  # it learned: not vacuous


# Grouped binary convs, with and without the channel shuffle after them (ShuffleNet)
GROUPED_OPS = [
    "skip_connect", "max_pool_3x3",
    {"name": "xnor_conv_3x3", "groups": 4, "shuffle": True},
    {"name": "bireal_conv_3x3_skip_connect", "groups": 2},
    {"name": "xnor_dil_conv_3x3", "groups": 2, "shuffle": True},
]  # fmt: skip
GROUPED = (
    "Genotype(normal=[('xnor_conv_3x3', 0), ('bireal_conv_3x3_skip_connect', 1), "
    "('xnor_dil_conv_3x3', 2), ('skip_connect', 0)], normal_concat=[2, 3], "
    "reduce=[('xnor_conv_3x3', 0), ('max_pool_3x3', 1), ('xnor_dil_conv_3x3', 2), "
    "('bireal_conv_3x3_skip_connect', 1)], reduce_concat=[2, 3])"
)


def small_cells(ops: list, genotype: str, steps: int, **network) -> Architecture:
    space = search_space_from_dict(
        {"steps": steps, "ops": ops, "network": {"cells": 3, "channels": 8, **network}},
        "onnx test space",
    )
    return Architecture(ModelConfig(), 10, space, parse_genotype(genotype))


SMALL_NETWORKS = {
    # RSign before the binary convs, RPReLU after, a grouped + shuffled conv
    "react": lambda: cells(REACT_OPS, REACT, "xnor"),
    "grouped-shuffled": lambda: small_cells(GROUPED_OPS, GROUPED, 2, preprocess="xnor"),
    # the auxiliary head is training-only: the graph holds the main classifier alone
    "aux-head-cell-shortcut": lambda: small_cells(
        XNOR_OPS, XNOR, 3, auxiliary_head=True, cell_shortcut="identity"
    ),
}


@pytest.mark.parametrize("network", list(SMALL_NETWORKS))
def test_onnxruntime_agrees_on_the_space_templates_and_op_options(network, sample, tmp_path):
    """Two training steps (100 images: real BN statistics, learnt RSign thresholds and
    RPReLU shifts; agreement is measured, not accuracy), 300 test images."""
    from bnn_nas.data.splits import class_balanced_split
    from bnn_nas.export.onnx_format import export_onnx

    arch = SMALL_NETWORKS[network]()
    torch.manual_seed(0)
    model = arch.build()
    stats = sample.train.channel_stats()
    settings = TrainConfig(epochs=1, batch_size=50, lr=5e-3, auxiliary_weight=0.4)
    idx, _ = class_balanced_split(sample.train.labels, n_train=100, seed=0)
    fit(model, sample.train.subset(idx), settings, device=torch.device("cpu"), seed=0,
        stats=stats)  # fmt: skip
    model.eval()
    if network == "aux-head-cell-shortcut":
        assert model.auxiliary is not None and model.cells[1].shortcut is not None
    spec = InputSpec(stats[0], stats[1], sample.classes, 32, 32)
    summary = export_onnx(model, spec, tmp_path / "m.onnx")
    images = sample.test.images[:300]
    ours = onnx_predictions(summary.path, images)
    mean = torch.tensor(stats[0]).view(1, 3, 1, 1)
    std = torch.tensor(stats[1]).view(1, 3, 1, 1)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    theirs = predictions(model, (x / 255 - mean) / std)
    assert (ours == theirs).mean() >= 0.995, (ours == theirs).mean()
    assert len(set(theirs.tolist())) > 1  # not a constant network: the check is not vacuous


def test_onnx_of_an_imagenet_stem_run_takes_the_run_s_image_size(imagenet_run, tmp_path):
    """--mean/--std read no data: the traced input is the size report.json records (it was
    32x32 whatever the layout), and onnxruntime predicts what PyTorch predicts there."""
    from bnn_nas.config import load_config
    from bnn_nas.data.image_folder import load_image_folder
    from bnn_nas.space.genotype import load_genotype
    from bnn_nas.space.network import build_model
    from bnn_nas.space.search_space import load_search_space
    from bnn_nas.train.checkpoint import load_checkpoint

    run_dir, data = imagenet_run
    normalisation = ("--mean", "0.5,0.4,0.3", "--std", "0.25,0.25,0.25")
    target = tmp_path / "m.onnx"
    result = invoke(export_command, run_dir, "--format", "onnx", "-o", target, *normalisation)
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [128, 128, 3]
    config = load_config(run_dir / "config.yaml")
    space = load_search_space(config.search_space)
    genotype = load_genotype(str(run_dir / "genotype.yaml"))
    model = build_model(config.model, space, 10, genotype, image_size=128).eval()
    model.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt")["model"])
    test = load_image_folder(data).test
    ours = onnx_predictions(target, test.images)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    x = torch.from_numpy(test.images).permute(0, 3, 1, 2).float()
    theirs = predictions(model, (x / 255 - mean) / 0.25)
    assert (ours == theirs).mean() >= 0.995, (ours == theirs).mean()


def test_onnx_input_size_without_a_known_image_size_follows_the_layout():
    """A spec that does not know the image size (an InputSpec built in code): the ImageNet
    layouts are traced at 224 px, the CIFAR ones at 32."""
    from bnn_nas.export.onnx_format import _input_size
    from bnn_nas.space.network import build_baseline

    unknown = InputSpec((0.5,) * 3, (0.25,) * 3, tuple(map(str, range(10))))
    stem = small_cells(XNOR_OPS, XNOR, 3, stem="imagenet").build()
    assert _input_size(stem, unknown) == (224, 224)
    imagenet_r18 = build_baseline("resnet18", "xnor", 10, image_size=224)
    assert _input_size(imagenet_r18, unknown) == (224, 224)
    assert _input_size(build_baseline("resnet18", "xnor", 10), unknown) == (32, 32)
    assert _input_size(small_cells(XNOR_OPS, XNOR, 3).build(), unknown) == (32, 32)
    known = InputSpec((0.5,) * 3, (0.25,) * 3, tuple(map(str, range(10))), 160, 128)
    assert _input_size(stem, known) == (160, 128)


@pytest.fixture(scope="module")
def imagenet_run(tmp_path_factory):
    """A `bnn-nas train` run of a tiny ImageNet-stem network on 128 px images (1 epoch)."""
    from bnn_nas.config import load_config
    from bnn_nas.space.genotype import parse_genotype
    from bnn_nas.train.run import train_run
    from tests.fixtures import make_image_folder
    from tests.test_export_cli import GENOTYPE

    tmp = tmp_path_factory.mktemp("imagenet")
    data = make_image_folder(tmp / "images", train_per_class=3, test_per_class=10, size=128)
    body = (
        "search_space:\n  steps: 2\n"
        "  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3, bireal_conv_3x3_skip_connect,"
        " xnor_dil_conv_3x3]\n  network: {cells: 2, channels: 8, stem: imagenet}\n"
        f"seed: 1\ndevice: cpu\ndata: {{name: image_folder, root: {data}}}\n"
        "final: {epochs: 1, batch_size: 10, lr: 0.01}\n"
    )
    (tmp / "config.yaml").write_text(body)
    config = load_config(tmp / "config.yaml")
    train_run(config, tmp / "run", genotype=parse_genotype(GENOTYPE), resume=False,
              progress=False)  # fmt: skip
    return tmp / "run", data


def test_export_format_onnx_from_a_run_directory(run, tmp_path):  # noqa: F811
    run_dir, data, report = run
    result = invoke(export_command, run_dir, "--format", "onnx", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    assert "ONNX (opset" in result.output and "next: bnn-nas infer" not in result.output
    from bnn_nas.data.image_folder import load_image_folder

    test = load_image_folder(data).test
    ours = onnx_predictions(tmp_path / "m.onnx", test.images)
    accuracy = float((ours == test.labels).mean())
    # 50 test images: the same evaluation as training's, up to one threshold tie
    assert abs(accuracy - report["test_accuracy"]) <= 1 / 50 + 1e-9


