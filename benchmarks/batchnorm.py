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

import sys
from collections.abc import Callable

import torch
from torch import Tensor, nn

from benchmarks.common import cuda_kernel_arguments, emit, graph_time_us

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


def main() -> None:
    args, device = cuda_kernel_arguments(__doc__, "batchnorm")
    results = {}
    for channels, size in SHAPES:
        bn = nn.BatchNorm2d(channels).to(device)
        x = torch.randn(args.batch_size, channels, size, size, device=device)
        x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        row = {}
        for name, fn in variants(bn).items():
            row[name] = round(graph_time_us(fn, x, args.iters, tuple(bn.parameters())), 1)
        key = f"{channels}x{size}x{size}"
        results[key] = row
        print(key, row, file=sys.stderr)
    emit("batchnorm", device, batch_size=args.batch_size, us_per_forward_backward=results)


if __name__ == "__main__":
    main()
