"""Batch norm forward + backward time per activation shape, three ways, on a CUDA GPU.

Batch norm is the largest part of a search candidate's step on an H200 (BN forward and
backward ~9 of ~20 ms at batch 256; docs/results/profile_candidate_h200.log). With bf16
activations PyTorch takes its native kernels (cuDNN's batch norm is not used for bf16
input), and their channels_last backward reduction ran at ~100 us per call on tensors of a
few MB. This times, per shape, inside a CUDA graph (GPU time, no launch overhead):

- ``native_bf16``: nn.BatchNorm2d on bf16 channels_last input (what training does now);
- ``cudnn_fp32``: the input cast to float32 first, so cuDNN's NHWC kernels run;
- ``var_mean_fp32``: batch norm written with torch.var_mean and elementwise ops.

    python -m benchmarks.batchnorm [--batch-size 256] [--iters 50]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch
from torch import Tensor, nn

from benchmarks.common import emit
from bnn_nas.train import resolve_device

# (channels, size): a search candidate (8 cells x 16 ch, stem x3) and binary ResNet-18
SHAPES = [(48, 32), (16, 32), (32, 16), (64, 8), (64, 32), (128, 16), (256, 8), (512, 4)]


def var_mean_norm(bn: nn.BatchNorm2d, x: Tensor) -> Tensor:
    """Training-mode batch norm from generic reductions (running stats not updated)."""
    var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), correction=0, keepdim=True)
    scale = bn.weight.view(1, -1, 1, 1) * torch.rsqrt(var + bn.eps)
    shift = bn.bias.view(1, -1, 1, 1) - mean * scale
    return (x * scale + shift).to(x.dtype)


def variants(bn: nn.BatchNorm2d) -> dict[str, Callable[[Tensor], Tensor]]:
    return {
        "native_bf16": bn,
        "cudnn_fp32": lambda x: bn(x.float()),
        "var_mean_fp32": lambda x: var_mean_norm(bn, x),
    }


def graph_time_us(fn: Callable[[Tensor], Tensor], x: Tensor, iters: int) -> float:
    """GPU time of forward + backward, captured once and replayed ``iters`` times."""
    grad = torch.randn_like(x)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn(x).backward(grad.to(x.dtype))
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            fn(x).backward(grad.to(x.dtype))
    torch.cuda.current_stream().wait_stream(side)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    start.record()
    for _ in range(iters):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type != "cuda":
        sys.exit("benchmarks.batchnorm times CUDA kernels: run it on a GPU")
    results = {}
    for channels, size in SHAPES:
        bn = nn.BatchNorm2d(channels).to(device)
        x = torch.randn(args.batch_size, channels, size, size, device=device)
        x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        row = {}
        for name, fn in variants(bn).items():
            row[name] = round(graph_time_us(fn, x, args.iters), 1)
        key = f"{channels}x{size}x{size}"
        results[key] = row
        print(key, row, file=sys.stderr)
    emit("batchnorm", device, batch_size=args.batch_size, us_per_forward_backward=results)


if __name__ == "__main__":
    main()
