"""A PyTorch reference without rounding at ties: binary convs in exact integer arithmetic.

A float32 binary conv sums +-alpha terms; where the exact sum is 0 (a dot product of 0,
common after a 1x1 conv over few channels) float32 leaves a residue of either sign, and a
following sign() with no BN or bias in between (``conv_bn`` ops, ``binary_conv``
shortcuts) turns that rounding noise into +-1. The packed engine computes the exact
integer, so sign(0) = +1 there. To tell engine bugs from such ties, this reference runs
the same network in float64 with every binary conv computed as
``alpha * conv(sign(x), sign(W))`` (integers, exact in float64) plus its bias.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnn_nas.binary import BinaryConv2d, RSign, binary_sign
from bnn_nas.export.fold import not_packable


class ExactBinaryConv2d(nn.Module):
    """``alpha * conv(sign(x), sign(W)) + bias`` in float64, the integer part exact."""

    def __init__(self, conv: BinaryConv2d) -> None:
        super().__init__()
        with torch.no_grad():
            binarized = conv.weight_binarizer(conv.weight.double())
        self.register_buffer("signs", binary_sign(conv.weight.detach().double()))
        self.register_buffer("alpha", binarized.abs().flatten(1).amax(1).view(1, -1, 1, 1))
        bias = conv.bias.detach().double() if conv.bias is not None else None
        self.register_buffer("bias", None if bias is None else bias.view(1, -1, 1, 1))
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.groups = conv.groups
        # RSign: sign(x - b); b and x are float32 values, so x - b >= 0 is exact in float64
        shift = conv.act.threshold.detach().double() if isinstance(conv.act, RSign) else None
        self.register_buffer("shift", None if shift is None else shift.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = x.double() if self.shift is None else x.double() - self.shift
        dot = F.conv2d(
            binary_sign(x), self.signs, stride=self.stride, padding=self.padding,
            dilation=self.dilation, groups=self.groups,
        )  # fmt: skip
        out = self.alpha * dot
        return out if self.bias is None else out + self.bias


def exact_reference(model: nn.Module) -> nn.Module:
    """A float64 copy of ``model`` (eval mode) whose packable binary convs are exact."""
    ref = copy.deepcopy(model).double().eval()
    for path, module in list(ref.named_modules()):
        if isinstance(module, BinaryConv2d) and not_packable(module) is None:
            parent_path, _, name = path.rpartition(".")
            parent = ref.get_submodule(parent_path) if parent_path else ref
            setattr(parent, name, ExactBinaryConv2d(module))
    return ref
