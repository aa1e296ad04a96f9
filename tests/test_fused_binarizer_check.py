"""benchmarks.fused_binarizer's test input and bitwise comparison (the Triton kernels
need a GPU; these parts do not)."""

from __future__ import annotations

import torch

from benchmarks.fused_binarizer import activation, differing_elements
from bnn_nas.binary.quantizers import ApproxSign, ClippedSteSign


def test_test_input_holds_the_branch_points_in_bf16_channels_last():
    x = activation(2, 4, 3, torch.device("cpu"))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)
    values = x.detach().contiguous().view(-1)[:4]
    assert values.tolist() == [0.0, 0.0, 1.0, -1.0] and bool(torch.signbit(values[1]))
    assert x.requires_grad and x.is_leaf


def test_differing_elements_counts_bits_signed_zeros_included():
    x = activation(2, 4, 3, torch.device("cpu"))
    assert differing_elements(ApproxSign(), ApproxSign(), x) == 0
    # the same forward, other gradients: only gradient elements differ
    assert 0 < differing_elements(ClippedSteSign(), ApproxSign(), x) <= x.numel()
    # a given gradient is the one that flows back: zero makes both gradients zero
    assert differing_elements(ClippedSteSign(), ApproxSign(), x, torch.zeros_like(x)) == 0
    # +0.0 and -0.0 are equal numbers but other bits
    assert differing_elements(lambda t: t * 0.0, lambda t: t * -0.0, x) >= x.numel()
    # float32 elements are compared as 32-bit words
    x32 = x.detach().float().requires_grad_(True)
    assert differing_elements(lambda t: t * 0.0, lambda t: t * -0.0, x32) >= x32.numel()
