"""Which path the binarizers take, on machines without a GPU (tests/test_cuda.py checks
the fused kernels themselves against the ATen path)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from bnn_nas.binary import fused
from bnn_nas.binary.quantizers import ApproxSign, ClippedSteSign


def test_dense_means_contiguous_or_channels_last():
    x = torch.zeros(2, 3, 4, 5)
    assert fused._dense(x) and fused._dense(x.contiguous(memory_format=torch.channels_last))
    assert not fused._dense(x[:, ::2]) and not fused._dense(x.transpose(2, 3))


def test_cpu_tensors_take_the_aten_path(monkeypatch):
    def fail(x):
        raise AssertionError("fused path taken on the CPU")

    monkeypatch.setattr(fused, "clipped_ste_sign", fail)
    monkeypatch.setattr(fused, "approx_sign", fail)
    x = torch.tensor([-0.0, 0.0, -2.0, 0.5], requires_grad=True)
    assert not fused.applies(x)
    ClippedSteSign()(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 1.0]
    x.grad = None
    ApproxSign()(x).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 0.0, 1.0]


def test_without_triton_there_are_no_kernels(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton raises ImportError
    fused._kernels.cache_clear()
    try:
        assert fused._kernels() is None
    finally:
        fused._kernels.cache_clear()


def test_fused_functions_route_tensors_to_their_kernels(monkeypatch):
    """The Python around the Triton kernels (which need a GPU) on the CPU, with stand-in
    kernels that write what the real ones compute: argument order, the saved input, a
    gradient laid out unlike x."""

    def sign(x, out):
        out.copy_(torch.where(x >= 0, 1.0, -1.0))

    def clipped_ste_grad(g, x, out):
        assert g.stride() == x.stride()  # the kernels walk both storages alike
        out.copy_(g * (x.abs() <= 1))

    def approx_sign_grad(g, x, out):
        out.copy_(g * (2 - 2 * x.abs()).clamp_min(0))

    kernels = SimpleNamespace(
        launch=lambda kernel, *tensors: kernel(*tensors),
        sign=sign, clipped_ste_grad=clipped_ste_grad, approx_sign_grad=approx_sign_grad,
    )  # fmt: skip
    monkeypatch.setattr(fused, "_kernels", lambda: kernels)
    x = torch.tensor([-0.0, 0.0, -2.0, 0.5, 0.9, -1.0]).view(1, 2, 3, 1)
    grad = torch.arange(1.0, 7.0).view(1, 2, 3, 1).contiguous(memory_format=torch.channels_last)
    for function, expected in [
        (fused.clipped_ste_sign, [1.0, 2.0, 0.0, 4.0, 5.0, 6.0]),
        (fused.approx_sign, [2.0, 4.0, 0.0, 4.0, 1.0, 0.0]),
    ]:
        leaf = x.clone().requires_grad_(True)
        out = function(leaf)
        assert out.flatten().tolist() == [1.0, 1.0, -1.0, 1.0, 1.0, -1.0]
        (got,) = torch.autograd.grad(out, leaf, grad)
        assert got.flatten().tolist() == pytest.approx(expected)
