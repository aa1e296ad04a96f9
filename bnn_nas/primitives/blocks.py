"""Building pieces shared by the primitives: binary conv units, shortcuts, reductions.

Shapes follow one rule: a stride-2 op maps H to ceil(H / 2), so any two edges
that meet at a cell node agree on shape whatever their kind.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnn_nas.binary import BinaryConv2d, RPReLU
from bnn_nas.errors import PrimitiveError
from bnn_nas.primitives.options import BinaryOptions


def reduced_size(size: int, stride: int) -> int:
    """Spatial size after an op of ``stride`` (padding keeps ceil(size / stride))."""
    return -(-size // stride)


class Zero(nn.Module):
    """The ``none`` op: zeros of the output shape (no gradient path)."""

    def __init__(self, C_out: int, stride: int) -> None:
        super().__init__()
        self.C_out, self.stride = C_out, stride

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        s = self.stride
        return x.new_zeros(n, self.C_out, reduced_size(h, s), reduced_size(w, s))

    def extra_repr(self) -> str:
        return f"C_out={self.C_out}, stride={self.stride}"


class ConcatSelf(nn.Module):
    """Doubles channels parameter-free by concatenating the input with itself."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, x], dim=1)


def _shift_one(x: Tensor) -> Tensor:
    """x moved up-left by one pixel, zero-filled, same size (the offset grid)."""
    return F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]


class FactorizedReduce(nn.Module):
    """Two stride-2 convs on grids offset by one pixel, concatenated (DARTS).

    Each conv makes half of C_out (the first takes the odd one out), so nothing
    of the input is skipped by the stride. ``conv_a`` and ``conv_b`` may be binary
    or float.
    """

    def __init__(self, conv_a: nn.Module, conv_b: nn.Module) -> None:
        super().__init__()
        self.conv_a, self.conv_b = conv_a, conv_b

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv_a(x), self.conv_b(_shift_one(x))], dim=1)


def split_channels(C_out: int) -> tuple[int, int]:
    return C_out - C_out // 2, C_out // 2


def float_conv_bn(C_in: int, C_out: int, stride: int = 1) -> nn.Sequential:
    """Full-precision 1x1 conv + BN: the channel adapter of shortcuts and preprocessing."""
    return nn.Sequential(
        nn.Conv2d(C_in, C_out, 1, stride=stride, bias=False), nn.BatchNorm2d(C_out)
    )


def float_factorized_reduce(C_in: int, C_out: int) -> nn.Sequential:
    """Full-precision factorized reduce + BN (``skip_connect`` at stride 2, preprocess)."""
    a, b = split_channels(C_out)
    return nn.Sequential(
        FactorizedReduce(
            nn.Conv2d(C_in, a, 1, stride=2, bias=False), nn.Conv2d(C_in, b, 1, stride=2, bias=False)
        ),
        nn.BatchNorm2d(C_out),
    )


def channel_match(C_in: int, C_out: int) -> nn.Module:
    """Identity, parameter-free doubling when C_out = 2 C_in, else a float 1x1 conv + BN."""
    if C_in == C_out:
        return nn.Identity()
    if C_out == 2 * C_in:
        return ConcatSelf()
    return float_conv_bn(C_in, C_out)


def avg_pool_2x2() -> nn.AvgPool2d:
    return nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False)


def shortcut(C_in: int, C_out: int, stride: int, opts: BinaryOptions) -> nn.Module:
    """The real-valued shortcut of a binary unit, per ``opts.downsample`` when shapes change."""
    if stride == 1 and C_in == C_out:
        return nn.Identity()
    if opts.downsample == "none":
        raise PrimitiveError(
            f"a shortcut from {C_in} to {C_out} channels at stride {stride} needs a projection, "
            "but downsample='none' allows none; choose another downsample or shortcut: none"
        )
    pool = [avg_pool_2x2()] if stride == 2 else []
    if opts.downsample == "avgpool_concat":
        return nn.Sequential(*pool, channel_match(C_in, C_out))
    if opts.downsample == "avgpool_conv":
        return nn.Sequential(*pool, float_conv_bn(C_in, C_out))
    conv = BinaryConv2d(C_in, C_out, 1, stride=stride, act=opts.act, weight=opts.weight)
    return nn.Sequential(conv, nn.BatchNorm2d(C_out))


def activation(kind: str, C: int) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()
    if kind == "prelu":
        return nn.PReLU(C, init=0.25)
    if kind == "rprelu":
        return RPReLU(C)
    return nn.Identity()


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: [g groups x C/g] channels read out as [C/g x g]."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        n, c, *rest = x.shape
        return x.view(n, self.groups, c // self.groups, *rest).transpose(1, 2).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


def check_groups(C_in: int, C_out: int, parts: tuple[int, ...], groups: int) -> None:
    """``groups`` divides C_in and every conv's output channels, or a one-line error."""
    if groups == 1:
        return
    bad = [c for c in (C_in, *parts) if c % groups]
    if bad:
        split = ""
        if len(parts) > 1:
            split = f" (split {'+'.join(map(str, parts))} by the factorized reduce)"
        raise PrimitiveError(
            f"groups={groups} must divide both channel counts, but C_in={C_in}, "
            f"C_out={C_out}{split} has {bad[0]}; choose a divisor of both"
        )


def binary_conv(
    C_in: int, C_out: int, kernel: int, stride: int, dilation: int, opts: BinaryOptions
) -> nn.Module:
    """A binary KxK conv keeping ceil(H / stride); factorized at stride 2 if asked."""
    padding = dilation * (kernel - 1) // 2
    factorized = stride == 2 and opts.reduce == "factorized" and C_out >= 2
    check_groups(C_in, C_out, split_channels(C_out) if factorized else (C_out,), opts.groups)

    def make(c_out: int, s: int) -> BinaryConv2d:
        return BinaryConv2d(
            C_in,
            c_out,
            kernel,
            stride=s,
            padding=padding,
            dilation=dilation,
            groups=opts.groups,
            act=opts.act,
            weight=opts.weight,
        )

    if factorized:
        a, b = split_channels(C_out)
        return FactorizedReduce(make(a, 2), make(b, 2))
    return make(C_out, stride)


class BinaryUnit(nn.Module):
    """One binary conv with its BN, optional shortcut and activation.

    ``bn_conv``: act(conv(BN(x)) + shortcut(x));  ``conv_bn``: act(BN(conv(x)) + shortcut(x)).
    The shortcut is there when ``with_shortcut`` or ``opts.shortcut == "identity"``; with
    ``opts.shuffle`` a channel shuffle follows the (grouped) conv.
    """

    def __init__(
        self,
        C_in: int,
        C_out: int,
        stride: int,
        opts: BinaryOptions,
        *,
        kernel: int = 3,
        dilation: int = 1,
        with_shortcut: bool = False,
    ) -> None:
        super().__init__()
        self.bn_first = opts.order == "bn_conv"
        self.bn = nn.BatchNorm2d(C_in if self.bn_first else C_out)
        self.conv = binary_conv(C_in, C_out, kernel, stride, dilation, opts)
        self.shuffle = ChannelShuffle(opts.groups) if opts.shuffle else None
        with_shortcut = with_shortcut or opts.shortcut == "identity"
        self.shortcut = shortcut(C_in, C_out, stride, opts) if with_shortcut else None
        self.act = activation(opts.activation, C_out)

    def _conv(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return y if self.shuffle is None else self.shuffle(y)

    def forward(self, x: Tensor) -> Tensor:
        y = self._conv(self.bn(x)) if self.bn_first else self.bn(self._conv(x))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.act(y)
