"""BinaryConv2d against an independent bit-packed XNOR-popcount computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnn_nas.binary import BinaryConv2d, BinaryLinear

POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def packed_xnor_conv(x: np.ndarray, w: np.ndarray, stride: int, dilation: int) -> np.ndarray:
    """Integer output of a +-1 conv (no padding) as n - 2 * popcount(a XOR b) on packed bits.

    x: [N, C, H, W] float, w: [O, C, k, k] float; bit = 1 encodes +1 (sign(0) = +1).
    """
    n_img, c, h, wd = x.shape
    o, _, k, _ = w.shape
    span = dilation * (k - 1) + 1
    out_h, out_w = (h - span) // stride + 1, (wd - span) // stride + 1
    w_bits = np.packbits((w >= 0).reshape(o, -1), axis=1)  # [O, bytes]
    n = c * k * k
    out = np.empty((n_img, o, out_h, out_w), dtype=np.int64)
    for i in range(out_h):
        for j in range(out_w):
            r, s = i * stride, j * stride
            patch = x[:, :, r : r + span : dilation, s : s + span : dilation]  # [N, C, k, k]
            p_bits = np.packbits((patch >= 0).reshape(n_img, -1), axis=1)  # [N, bytes]
            mismatches = POPCOUNT8[p_bits[:, None, :] ^ w_bits[None, :, :]].sum(axis=2)
            out[:, :, i, j] = n - 2 * mismatches
    return out


CASES = [
    # (C_in, C_out, kernel, stride, dilation)
    (1, 3, 1, 1, 1),
    (3, 5, 3, 1, 1),
    (5, 7, 3, 2, 1),
    (13, 6, 5, 1, 1),
    (70, 9, 3, 1, 2),
    (9, 65, 5, 2, 2),
    (67, 4, 1, 2, 1),
]


@pytest.mark.parametrize(("C_in", "C_out", "k", "stride", "dil"), CASES)
@pytest.mark.parametrize("weight", ["sign", "xnor", "bireal"])
def test_binary_conv_equals_packed_xnor_popcount(C_in, C_out, k, stride, dil, weight):
    g = torch.Generator().manual_seed(C_in * 100 + C_out)
    pad = dil * (k - 1) // 2
    conv = BinaryConv2d(C_in, C_out, k, stride=stride, padding=pad, dilation=dil, weight=weight)
    conv = conv.double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=torch.float64))
        if C_in * k * k > 1:  # exercise sign(0) = +1 on weights (alpha stays > 0)
            conv.weight[0, 0, 0, 0] = 0.0
    x = torch.randn(3, C_in, 11, 12, generator=g, dtype=torch.float64)
    x[:, :, 4, 4] = 0.0  # and on activations
    y = conv(x).detach().numpy()
    # interior outputs: receptive field fully inside the unpadded input. Output i reads
    # input rows from i * stride - pad, so the first interior one is ceil(pad / stride).
    off = -(-pad // stride)
    first = off * stride - pad
    w = conv.weight.detach().numpy()
    ref = packed_xnor_conv(x.numpy()[:, :, first:, first:], w, stride, dil)
    interior = y[:, :, off : off + ref.shape[2], off : off + ref.shape[3]]
    assert interior.shape == ref.shape
    assert interior.size > 0
    alpha = (
        np.ones((1, C_out, 1, 1))
        if weight == "sign"
        else np.abs(w).reshape(C_out, -1).mean(axis=1).reshape(1, -1, 1, 1)
    )
    # the integer part is exact; the scale is one multiplication
    np.testing.assert_array_equal(np.rint(interior / alpha).astype(np.int64), ref)
    np.testing.assert_allclose(interior, alpha * ref, rtol=1e-12, atol=1e-12)


def test_binary_linear_equals_packed_popcount():
    g = torch.Generator().manual_seed(0)
    lin = BinaryLinear(77, 5, weight="sign").double()
    x = torch.randn(4, 77, generator=g, dtype=torch.float64)
    y = lin(x).detach().numpy()
    ref = packed_xnor_conv(
        x.numpy()[:, :, None, None], lin.weight.detach().numpy()[:, :, None, None], 1, 1
    )[:, :, 0, 0]
    np.testing.assert_array_equal(y.astype(np.int64), ref)


@pytest.mark.parametrize(
    ("C_in", "C_out", "groups", "k", "stride", "dil"),
    [(12, 8, 4, 3, 1, 1), (12, 24, 12, 3, 2, 1), (14, 28, 14, 5, 1, 2), (70, 10, 2, 1, 2, 1)],
)
def test_grouped_binary_conv_equals_packed_xnor_popcount_per_group(
    C_in, C_out, groups, k, stride, dil
):
    g = torch.Generator().manual_seed(C_in + groups)
    pad = dil * (k - 1) // 2
    conv = BinaryConv2d(
        C_in, C_out, k, stride=stride, padding=pad, dilation=dil, groups=groups, weight="xnor"
    ).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g, dtype=torch.float64))
    x = torch.randn(2, C_in, 11, 12, generator=g, dtype=torch.float64)
    y = conv(x).detach().numpy()
    off = -(-pad // stride)
    first = off * stride - pad
    w = conv.weight.detach().numpy()
    cin, cout = C_in // groups, C_out // groups
    ref = np.concatenate(
        [
            packed_xnor_conv(
                x.numpy()[:, i * cin : (i + 1) * cin, first:, first:],
                w[i * cout : (i + 1) * cout],
                stride,
                dil,
            )
            for i in range(groups)
        ],
        axis=1,
    )
    interior = y[:, :, off : off + ref.shape[2], off : off + ref.shape[3]]
    assert interior.shape == ref.shape and interior.size > 0
    alpha = np.abs(w).reshape(C_out, -1).mean(axis=1).reshape(1, -1, 1, 1)
    np.testing.assert_array_equal(np.rint(interior / alpha).astype(np.int64), ref)
