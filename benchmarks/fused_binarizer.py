"""What fused activation binarizers would save: ATen kernels vs one Triton kernel each.

Before writing fused kernels into bnn_nas.binary, measure what they buy. bnn-nas's
activation binarizers are ATen elementwise chains: clipped STE's forward is four kernels
(|x|, <= 1, >= 0, where: the sign and the mask for backward) and its backward one;
ApproxSign's forward is two and its backward five. Each reads and writes the whole
activation tensor, so on big tensors they are bound by memory traffic, and on small ones
by kernel count. Here the forwards and ApproxSign's backward are written as one Triton
kernel each (clipped STE's backward stays ATen's one ``g * mask``), with the same outputs
and gradients bit for bit (checked: ``differing_elements``, expected 0), and forward +
backward are timed inside a CUDA graph per activation shape (batch 256, bf16,
channels_last). The JSON line gives microseconds per shape and the sum over the 16
binary convs of binary ResNet-18 (CIFAR layout) per training step.

Experiment only: the product's binarizers are unchanged.

    python -m benchmarks.fused_binarizer [--batch-size 256] [--iters 50]
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor

from benchmarks.common import cuda_kernel_arguments, emit, graph_time_us
from bnn_nas.binary.quantizers import ApproxSign, ClippedSteSign

# (channels, size) of the inputs of binary ResNet-18's 16 binary convs, and how many
RESNET18_INPUTS = {(64, 32): 5, (128, 16): 4, (256, 8): 4, (512, 4): 3}
# a search candidate's cells (8 x 16 channels) see these too
CANDIDATE_INPUTS = [(16, 32), (32, 16), (64, 8)]
BLOCK = 1024


def triton_binarizers() -> dict:
    """The Triton kernels and autograd Functions; imported here: CUDA builds only."""
    import triton
    import triton.language as tl

    @triton.jit
    def sign_kernel(x_ptr, sign_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = offsets < n
        x = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        sign = tl.where(x >= 0.0, 1.0, -1.0)  # -0.0 >= 0: +1, as binary_sign
        tl.store(sign_ptr + offsets, sign.to(sign_ptr.dtype.element_ty), mask=valid)

    @triton.jit
    def sign_and_mask_kernel(x_ptr, sign_ptr, mask_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = offsets < n
        x = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        sign = tl.where(x >= 0.0, 1.0, -1.0)
        tl.store(sign_ptr + offsets, sign.to(sign_ptr.dtype.element_ty), mask=valid)
        tl.store(mask_ptr + offsets, (tl.abs(x) <= 1.0).to(tl.uint8), mask=valid)

    @triton.jit
    def approx_sign_grad_kernel(g_ptr, x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = offsets < n
        g = tl.load(g_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        # ATen rounds 2 - 2|x| to x's dtype before the clamp and the product: so here
        slope = (2.0 - 2.0 * tl.abs(x)).to(x_ptr.dtype.element_ty).to(tl.float32)
        slope = tl.maximum(slope, 0.0, propagate_nan=tl.PropagateNan.ALL)  # NaN: as clamp_min
        tl.store(out_ptr + offsets, (g * slope).to(out_ptr.dtype.element_ty), mask=valid)

    def grid(n: int) -> tuple[int]:
        return (triton.cdiv(n, BLOCK),)

    def dense(x: Tensor) -> Tensor:
        """The kernels index storage 0..numel-1: x must fill it in one of these layouts."""
        if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
            raise ValueError("fused binarizers take contiguous or channels_last tensors")
        return x

    def like(g: Tensor, x: Tensor) -> Tensor:
        """g laid out as x (elementwise kernels index the storage of both alike)."""
        return g if g.stride() == x.stride() else torch.empty_like(x).copy_(g)

    class ClippedSte(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
            sign = torch.empty_like(dense(x))
            mask = torch.empty_like(x, dtype=torch.uint8)
            sign_and_mask_kernel[grid(x.numel())](x, sign, mask, x.numel(), BLOCK=BLOCK)
            ctx.save_for_backward(mask)
            return sign

        @staticmethod
        def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
            (mask,) = ctx.saved_tensors
            return g * mask

    class Approx(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
            sign = torch.empty_like(dense(x))
            sign_kernel[grid(x.numel())](x, sign, x.numel(), BLOCK=BLOCK)
            ctx.save_for_backward(x)
            return sign

        @staticmethod
        def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
            (x,) = ctx.saved_tensors
            g = like(g, x)
            out = torch.empty_like(x)
            approx_sign_grad_kernel[grid(x.numel())](g, x, out, x.numel(), BLOCK=BLOCK)
            return out

    return {
        "clipped_ste": (ClippedSteSign(), ClippedSte.apply),
        "approx_sign": (ApproxSign(), Approx.apply),
    }


def differing_elements(aten, fused, x: Tensor) -> int:
    """How many elements of the outputs and input gradients differ in their bits (0: the
    same results, signed zeros and NaNs included)."""
    grad = torch.randn_like(x)
    results = []
    for fn in (aten, fused):
        leaf = x.detach().clone().requires_grad_(True)
        out = fn(leaf)
        (grad_x,) = torch.autograd.grad(out, leaf, grad)
        results.append((out.detach(), grad_x))
    (out_a, grad_a), (out_f, grad_f) = results
    bits = torch.int16  # bf16 and fp16 alike

    def count(a: Tensor, b: Tensor) -> int:
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
    binarizers = triton_binarizers()
    shapes = list(RESNET18_INPUTS) + CANDIDATE_INPUTS
    per_shape: dict[str, dict] = {}
    resnet18_step_us = {name: {"aten": 0.0, "triton": 0.0} for name in binarizers}
    for channels, size in shapes:
        x = activation(args.batch_size, channels, size, device)
        key = f"{channels}x{size}x{size}"
        per_shape[key] = {}
        for name, (aten, fused) in binarizers.items():
            row = {
                "aten_us": round(graph_time_us(aten, x, args.iters), 1),
                "triton_us": round(graph_time_us(fused, x, args.iters), 1),
                "differing_elements": differing_elements(aten, fused, x),
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
