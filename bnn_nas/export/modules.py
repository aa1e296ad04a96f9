"""The packed modules that replace binary convs (and their folded BNs) in a network.

They are ordinary ``nn.Module``s, so the float rest of the network (stem, shortcuts,
pools, concat, classifier) runs around them unchanged. Their state is what the export
file stores: the dense sign bits and the per-channel threshold and affine terms. The
kernel layout of the weights and the padding corrections are derived on load.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bnn_nas.export.bits import (
    block_diagonal,
    grouped_kernel_weights,
    kernel_weights,
    pack_dense,
    tap_sums,
    unpack_dense,
)
from bnn_nas.export.fold import FoldedConv
from bnn_nas.export.kernels import (
    Backend,
    ConvGeometry,
    PackedParams,
    masked_is_cheaper,
    select_backend,
)

_DEFAULT: list[Backend] = []


def default_backend() -> Backend:
    """The process-wide backend used by packed modules that were given none."""
    if not _DEFAULT:
        _DEFAULT.append(select_backend())
    return _DEFAULT[0]


class PackedConv2d(nn.Module):
    """A binary conv as XNOR-popcount on packed bits: ``scale * dot(sign bits) + bias``.

    The input bit of channel c is ``input_mul[c] * x >= input_threshold[c]`` (a BN before
    the sign, folded); zero padding stays ternary through a correction map per input
    size. ``shift_input``: the input is first moved up-left by one pixel with +1 filled in,
    the offset grid of a factorized reduce. A grouped geometry computes each group's
    outputs from its own input channels (torch's ``groups``; groups = C is depthwise).
    After changing the buffers call ``prepare()``.
    """

    def __init__(self, geometry: ConvGeometry, *, shift_input: bool = False) -> None:
        super().__init__()
        self.geometry = geometry
        self.shift_input = shift_input
        g = geometry
        count = g.out_channels * g.group_in * g.kernel[0] * g.kernel[1]
        self.register_buffer("weight_bits", torch.zeros(-(-count // 64), dtype=torch.int64))
        self.register_buffer("input_mul", torch.ones(g.in_channels))
        self.register_buffer("input_threshold", torch.zeros(g.in_channels))
        self.register_buffer("output_scale", torch.ones(g.out_channels))
        self.register_buffer("output_bias", torch.zeros(g.out_channels))
        self.backend: Backend | None = None
        self._params: PackedParams | None = None

    @classmethod
    def from_folded(cls, folded: FoldedConv, *, shift_input: bool = False) -> PackedConv2d:
        module = cls(folded.geometry, shift_input=shift_input)
        module.weight_bits.copy_(pack_dense(folded.signs))
        module.input_mul.copy_(folded.input_mul)
        module.input_threshold.copy_(folded.input_threshold)
        module.output_scale.copy_(folded.output_scale)
        module.output_bias.copy_(folded.output_bias)
        module.prepare()
        return module

    def signs(self) -> Tensor:
        """The +-1 weights as bool [O, C / groups, kh, kw] (True = +1)."""
        g = self.geometry
        return unpack_dense(self.weight_bits, (g.out_channels, g.group_in, *g.kernel))

    def prepare(self, masked: bool | None = None) -> PackedParams:
        """Derive the kernels' operands from the stored buffers (after loading a state dict).

        ``masked``: run a grouped conv as one dense conv with a mask per output channel
        (True) or as ``groups`` narrow convs (False); None: whichever is cheaper."""
        signs, g = self.signs(), self.geometry
        if masked is None:
            masked = masked_is_cheaper(g)
        mask = None
        if masked and g.groups > 1:
            dense, member = block_diagonal(signs, g.groups)
            weights = kernel_weights(dense).unsqueeze(0)
            mask = kernel_weights(member)[0].contiguous()  # [K, Opad]
        else:
            weights = grouped_kernel_weights(signs, g.groups)
        self._params = PackedParams(
            geometry=self.geometry,
            weights=weights,
            mask=mask,
            tap_sums=tap_sums(signs),
            mul=self.input_mul.float().contiguous(),
            thr=self.input_threshold.float().contiguous(),
            scale=self.output_scale.float().contiguous(),
            bias=self.output_bias.float().contiguous(),
            shift=self.shift_input,
        )
        return self._params

    def extra_repr(self) -> str:
        g = self.geometry
        text = (
            f"{g.in_channels}, {g.out_channels}, kernel={g.kernel}, stride={g.stride}, "
            f"padding={g.padding}, dilation={g.dilation}"
        )
        text += f", groups={g.groups}" if g.groups != 1 else ""
        return text + (", shift_input=True" if self.shift_input else "")

    def _run(self, x: Tensor, integer: bool, residual: Tensor | None = None) -> Tensor:
        params = self._params if self._params is not None else self.prepare()
        backend = self.backend or default_backend()
        return backend.run(params, x, integer, residual)  # NCHW, channels_last memory

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """``scale * dot + bias``, plus ``residual`` (added in the kernel) when given."""
        return self._run(x, False, residual)

    def dot(self, x: Tensor) -> Tensor:
        """The integer dot products (int32 NCHW), before the affine: for tests."""
        return self._run(x, integer=True)


class PackedFactorizedReduce(nn.Module):
    """A factorized reduce of two packed convs; ``conv_b`` reads the shifted grid."""

    def __init__(self, conv_a: PackedConv2d, conv_b: PackedConv2d) -> None:
        super().__init__()
        if not conv_b.shift_input or conv_a.shift_input:
            raise ValueError("conv_b must read the shifted grid and conv_a the plain one")
        self.conv_a, self.conv_b = conv_a, conv_b

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv_a(x), self.conv_b(x)], dim=1)


class PackedUnit(nn.Module):
    """A ``BinaryUnit`` whose BN is folded into its packed conv: ``act(conv(x) + shortcut(x))``
    with the shortcut added as the kernel writes its output (one pass less over memory);
    with a channel ``shuffle`` (after a grouped conv) ``act(shuffle(conv(x)) + shortcut(x))``,
    the shortcut added after the shuffle. Children keep the unit's names, so its state
    dict keys stay the same."""

    def __init__(
        self,
        bn: nn.Module,
        conv: nn.Module,
        shortcut: nn.Module | None,
        act: nn.Module,
        shuffle: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.bn, self.conv, self.shuffle = bn, conv, shuffle
        self.shortcut, self.act = shortcut, act

    def forward(self, x: Tensor) -> Tensor:
        residual = None if self.shortcut is None else self.shortcut(x)
        if isinstance(self.conv, PackedConv2d) and self.shuffle is None:
            return self.act(self.conv(x, residual))
        y = self.conv(x)
        y = y if self.shuffle is None else self.shuffle(y)
        return self.act(y if residual is None else y + residual)


def set_backend(model: nn.Module, backend: Backend) -> None:
    """Run every packed conv of ``model`` on ``backend``."""
    for module in model.modules():
        if isinstance(module, PackedConv2d):
            module.backend = backend
