"""Shared pieces of the benchmarks (dataset argument, device, JSON line) and the test
networks that tests use too."""

from __future__ import annotations

import datetime
import json
import platform
from typing import Any

import torch

from bnn_nas.data import Dataset, DataSettings, load_dataset

# the same network with both binarizers off: what binarization costs is the difference
FLOAT_TWIN = {"act": "identity", "weight": "identity"}

# A cell network mixing both families, a binary (xnor) preprocess, factorized reduces,
# dilated convs, PReLU and binary-conv shortcuts: every folding path of the exporter.
MIXED_OPS = [
    "skip_connect", "max_pool_3x3", "xnor_conv_3x3", "bireal_conv_3x3_skip_connect",
    "xnor_dil_conv_5x5", "bireal_resnet_block",
    {"name": "xnor_nin", "downsample": "binary_conv", "activation": "prelu"},
    {"name": "bireal_conv_5x5", "reduce": "factorized"},
]  # fmt: skip
MIXED_GENOTYPE = (
    "Genotype(normal=[('xnor_conv_3x3', 0), ('bireal_conv_3x3_skip_connect', 1), "
    "('xnor_dil_conv_5x5', 0), ('xnor_nin', 2), ('bireal_resnet_block', 1), "
    "('skip_connect', 3)], normal_concat=[2, 3, 4], reduce=[('bireal_conv_5x5', 0), "
    "('xnor_nin', 1), ('max_pool_3x3', 0), ('xnor_conv_3x3', 2), "
    "('bireal_resnet_block', 3), ('skip_connect', 1)], reduce_concat=[2, 3, 4])"
)


def load_data(root: str | None) -> Dataset:
    """Full CIFAR-10 from an image folder when ``root`` is given, else the packaged sample."""
    if root:
        return load_dataset(DataSettings(name="image_folder", root=root))
    return load_dataset(DataSettings(name="cifar10_sample"))


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def emit(name: str, device: torch.device, **figures: Any) -> None:
    """Print the benchmark's one JSON line."""
    line = {
        "benchmark": name,
        "device": device_label(device),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        **figures,
    }
    print(json.dumps(line), flush=True)
