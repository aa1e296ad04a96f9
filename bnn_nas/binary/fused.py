"""Fused CUDA binarizers: clipped STE and ApproxSign as one Triton kernel per direction.

Why: in ATen, clipped STE's forward is three elementwise kernels (|x|, <= 1, where) and
ApproxSign's backward five; each reads and writes the whole activation. A binary network
binarizes every conv input, so on a GPU those chains cost memory traffic on large
tensors and launches on small ones. Here each binarizer is one kernel forward (the sign)
and one backward (the surrogate gradient). Measured on an H200 (``python -m
benchmarks.fused_binarizer``, binary ResNet-18's activations, batch 256, bf16, forward +
backward per step): clipped STE 1163 -> 363 us, ApproxSign 1187 -> 365 us; whole
steps in docs/benchmarks.md.

The kernels give the ATen path's outputs and gradients bit for bit (signed zeros and NaN
included; tests/test_cuda.py checks it), so they are not a setting: ``applies`` picks
them for dense CUDA tensors when Triton is installed (it ships with PyTorch's CUDA
builds). Everything else takes the ATen path in bnn_nas/binary/quantizers.py; under a
compiler trace the binarizers never get here (bnn_nas/binary/compiled_sign.py).
"""

from __future__ import annotations

import functools
import threading
from types import SimpleNamespace

import torch
from torch import Tensor

BLOCK = 1024
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Triton compiles a kernel on its first launch for each dtype and alignment; trials on
# several threads (bnn_nas.search.streams) would otherwise compile the same kernel at once
_LAUNCH_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _kernels() -> SimpleNamespace | None:
    """The Triton kernels, or None where Triton is missing (CPU builds of PyTorch) or
    cannot load (a broken install): then every binarizer takes the ATen path."""
    try:
        import triton
        import triton.language as tl
    except Exception:  # any failure to load means: no fused kernels
        return None

    @triton.jit
    def sign_kernel(x_ptr, sign_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = offsets < n
        x = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        sign = tl.where(x >= 0.0, 1.0, -1.0)  # -0.0 >= 0 holds: +1, as binary_sign
        tl.store(sign_ptr + offsets, sign.to(sign_ptr.dtype.element_ty), mask=valid)

    @triton.jit
    def clipped_ste_grad_kernel(g_ptr, x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = offsets < n
        g = tl.load(g_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        # a product, not a select, as ATen's g * mask: -g * 0 is -0.0 and NaN * 0 is NaN
        inside = tl.where(tl.abs(x) <= 1.0, 1.0, 0.0)
        tl.store(out_ptr + offsets, (g * inside).to(out_ptr.dtype.element_ty), mask=valid)

    @triton.jit
    def approx_sign_grad_kernel(g_ptr, x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        valid = offsets < n
        g = tl.load(g_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + offsets, mask=valid, other=0.0).to(tl.float32)
        # ATen rounds 2 - 2|x| to x's dtype before the clamp and the product: so here
        slope = (2.0 - 2.0 * tl.abs(x)).to(x_ptr.dtype.element_ty).to(tl.float32)
        slope = tl.maximum(slope, 0.0, propagate_nan=tl.PropagateNan.ALL)  # as clamp_min
        tl.store(out_ptr + offsets, (g * slope).to(out_ptr.dtype.element_ty), mask=valid)

    def launch(kernel, *tensors: Tensor) -> None:
        """One program per BLOCK elements of the first tensor (all are laid out alike)."""
        n = tensors[0].numel()
        # Triton launches on the current device: make it the tensors' (a worker given
        # cuda:1 need not have made cuda:1 current)
        with _LAUNCH_LOCK, torch.cuda.device(tensors[0].device):
            kernel[(triton.cdiv(n, BLOCK),)](*tensors, n, BLOCK=BLOCK)

    return SimpleNamespace(
        launch=launch,
        sign=sign_kernel,
        clipped_ste_grad=clipped_ste_grad_kernel,
        approx_sign_grad=approx_sign_grad_kernel,
    )


def _dense(x: Tensor) -> bool:
    """The kernels index storage 0..numel-1 with int32 offsets: x must fill it."""
    return x.numel() < 2**31 and (
        x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
    )


@functools.cache
def _capable(device_index: int) -> bool:
    """Ampere or newer: bf16 in Triton needs it; older GPUs keep the ATen path."""
    return torch.cuda.get_device_capability(device_index) >= (8, 0)


def applies(x: Tensor) -> bool:
    """Whether the fused kernels take x (else the caller uses the ATen path)."""
    return (
        x.is_cuda
        and x.dtype in _DTYPES
        and _dense(x)
        and _capable(x.device.index)
        and _kernels() is not None
    )


def _laid_out_as(g: Tensor, x: Tensor) -> Tensor:
    """g with x's strides: the kernels walk the storage of both in the same order."""
    return g if g.stride() == x.stride() else torch.empty_like(x).copy_(g)


def sign(x: Tensor) -> Tensor:
    """sign(x) (sign(+-0) = +1) in x's dtype and layout; x must pass ``applies``."""
    out = torch.empty_like(x)
    _kernels().launch(_kernels().sign, x, out)
    return out


def surrogate_grad(grad_kernel, g: Tensor, x: Tensor) -> Tensor:
    """The surrogate gradient ``grad_kernel`` computes from g and x, laid out as x."""
    # autograd hands in g with the output's dtype, which is x's; the layout may differ
    g = _laid_out_as(g, x)
    grad = torch.empty_like(x)
    _kernels().launch(grad_kernel, g, x, grad)
    return grad


def clipped_ste_grad(g: Tensor, x: Tensor) -> Tensor:
    """g * 1{|x| <= 1}, bit for bit as ATen; x must pass ``applies``."""
    return surrogate_grad(_kernels().clipped_ste_grad, g, x)


def approx_sign_grad(g: Tensor, x: Tensor) -> Tensor:
    """g * max(0, 2 - 2|x|), bit for bit as ATen; x must pass ``applies``."""
    return surrogate_grad(_kernels().approx_sign_grad, g, x)


class _FusedSign(torch.autograd.Function):
    """sign(x) forward (sign(+-0) = +1); backward the surrogate gradient kernel given.

    Saves x, not the bool mask ATen's clipped STE saves: one kernel each way, at the
    cost of keeping x (2 bytes per element in bf16 against the mask's 1).
    """

    @staticmethod
    def forward(ctx, x: Tensor, grad_kernel) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.grad_kernel = grad_kernel
        return sign(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return surrogate_grad(ctx.grad_kernel, g, x), None


def clipped_ste_sign(x: Tensor) -> Tensor:
    """BinaryNet's sign with the clipped straight-through gradient; x must pass ``applies``."""
    return _FusedSign.apply(x, _kernels().clipped_ste_grad)


def approx_sign(x: Tensor) -> Tensor:
    """Bi-Real's ApproxSign; x must pass ``applies``."""
    return _FusedSign.apply(x, _kernels().approx_sign_grad)
