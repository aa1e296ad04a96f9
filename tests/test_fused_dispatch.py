"""Which path the binarizers take, on machines without a GPU (tests/test_cuda.py checks
the fused kernels themselves against the ATen path)."""

from __future__ import annotations

import sys

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
