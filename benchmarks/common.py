"""Shared pieces of the benchmarks (dataset argument, device, JSON line) and the test
networks that tests use too."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from bnn_nas.data import Dataset, DataSettings, load_dataset
from bnn_nas.train import resolve_device

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


def cuda_kernel_arguments(doc: str, name: str) -> tuple[argparse.Namespace, torch.device]:
    """Arguments of the benchmarks that time CUDA kernels (batch size, graph replays,
    device), and the device: they exit with a message on a machine without a GPU."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type != "cuda":
        sys.exit(f"benchmarks.{name} times CUDA kernels: run it on a GPU")
    return args, device


def graph_time_us(
    fn: Callable[[Tensor], Tensor], x: Tensor, iters: int, params: tuple[Tensor, ...] = ()
) -> float:
    """GPU time of forward + backward, captured once and replayed ``iters`` times.

    The backward computes the gradients of ``x`` and ``params`` as training would, without
    accumulating them into ``.grad`` (training never accumulates into an activation).
    """
    grad = torch.randn_like(x)
    inputs = (x, *params)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            torch.autograd.grad(fn(x), inputs, grad)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            torch.autograd.grad(fn(x), inputs, grad)
    torch.cuda.current_stream().wait_stream(side)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    start.record()
    for _ in range(iters):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / iters
