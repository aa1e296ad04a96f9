"""What the fused activation binarizers save: ATen kernels vs one Triton kernel each.

bnn-nas's activation binarizers have two paths with bit-identical results: the ATen
elementwise chains of bnn_nas/binary/quantizers.py (clipped STE's forward three kernels,
|x|, <= 1 and where, its backward one; ApproxSign's forward one, its backward five) and,
on dense CUDA tensors, the Triton kernels of bnn_nas/binary/fused.py (one per
direction). Each kernel reads and writes the whole activation, so on big tensors they are
bound by memory traffic and on small ones by kernel count. Here both paths run per
activation shape (batch 256, bf16, channels_last): outputs and gradients compared bit for
bit (``differing_elements``, expected 0), forward + backward timed inside a CUDA graph.
The JSON line gives microseconds per shape and the sum over the 16 binary convs of
binary ResNet-18 (CIFAR layout) per training step.

    python -m benchmarks.fused_binarizer [--batch-size 256] [--iters 50]
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from benchmarks.common import cuda_kernel_arguments, emit, graph_time_us
from bnn_nas.binary import fused
from bnn_nas.binary.quantizers import _SignApprox, _SignClippedSTE

# (channels, size) of the inputs of binary ResNet-18's 16 binary convs, and how many
RESNET18_INPUTS = {(64, 32): 5, (128, 16): 4, (256, 8): 4, (512, 4): 3}
# a search candidate's cells (8 x 16 channels) see these too
CANDIDATE_INPUTS = [(16, 32), (32, 16), (64, 8)]
# name: (the ATen path, the fused path)
BINARIZERS = {
    "clipped_ste": (_SignClippedSTE.apply, fused.clipped_ste_sign),
    "approx_sign": (_SignApprox.apply, fused.approx_sign),
}


def differing_elements(reference, candidate, x: Tensor, grad: Tensor | None = None) -> int:
    """How many elements of the outputs and input gradients differ in their bits (0: the
    same results, signed zeros and NaNs included); ``grad`` flows back (random if None)."""
    grad = torch.randn_like(x) if grad is None else grad
    results = []
    for fn in (reference, candidate):
        leaf = x.detach().clone().requires_grad_(True)
        out = fn(leaf)
        (grad_x,) = torch.autograd.grad(out, leaf, grad)
        results.append((out.detach(), grad_x))
    (out_a, grad_a), (out_f, grad_f) = results

    def count(a: Tensor, b: Tensor) -> int:
        bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return int((a.contiguous().view(bits) != b.contiguous().view(bits)).sum())

    return count(out_a, out_f) + count(grad_a, grad_f)


def activation(batch: int, channels: int, size: int, device) -> Tensor:
    """bf16 channels_last, with the values where binarizers branch: 0, -0.0, +-1."""
    x = torch.randn(batch, channels, size, size, device=device) * 1.5
    flat = x.view(-1)
    flat[:4] = torch.tensor([0.0, -0.0, 1.0, -1.0], device=device)
    x = x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(True)


def main() -> None:
    args, device = cuda_kernel_arguments(__doc__, "fused_binarizer")
    shapes = list(RESNET18_INPUTS) + CANDIDATE_INPUTS
    per_shape: dict[str, dict] = {}
    resnet18_step_us = {name: {"aten": 0.0, "triton": 0.0} for name in BINARIZERS}
    for channels, size in shapes:
        x = activation(args.batch_size, channels, size, device)
        key = f"{channels}x{size}x{size}"
        per_shape[key] = {}
        for name, (aten, triton) in BINARIZERS.items():
            row = {
                "aten_us": round(graph_time_us(aten, x, args.iters), 1),
                "triton_us": round(graph_time_us(triton, x, args.iters), 1),
                "differing_elements": differing_elements(aten, triton, x),
            }
            per_shape[key][name] = row
            count = RESNET18_INPUTS.get((channels, size), 0)
            resnet18_step_us[name]["aten"] += count * row["aten_us"]
            resnet18_step_us[name]["triton"] += count * row["triton_us"]
        print(key, per_shape[key], file=sys.stderr)
    step_us = {k: {n: round(v, 1) for n, v in d.items()} for k, d in resnet18_step_us.items()}
    emit("fused_binarizer", device, batch_size=args.batch_size,
         us_per_forward_backward=per_shape, resnet18_step_us=step_us)  # fmt: skip


if __name__ == "__main__":
    main()
