"""ONNX export: onnxruntime predicts what the PyTorch network predicts.

Networks train one short epoch on the packaged CIFAR-10 sample (real BN statistics and
weights) and run on its 1,000 test images, as the .bnn agreement tests do.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnn_nas.cli.export_commands import export_command
from bnn_nas.config import ModelConfig
from bnn_nas.export import Architecture, InputSpec
from tests.test_export_cli import invoke, run  # noqa: F401  (the trained run directory)
from tests.test_export_model import XNOR, XNOR_OPS, cells, predictions, train_and_export

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


@pytest.fixture(scope="module")
def sample():
    from bnn_nas.data import load_cifar10_sample

    return load_cifar10_sample()
