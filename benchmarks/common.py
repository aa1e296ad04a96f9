"""Shared helpers of the benchmarks: the dataset argument, the device, the JSON line."""

from __future__ import annotations

import datetime
import json
import platform
from typing import Any

import torch

from bnn_nas.data import Dataset, DataSettings, load_dataset

# the same network with both binarizers off: what binarization costs is the difference
FLOAT_TWIN = {"act": "identity", "weight": "identity"}


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
