"""Folding a trained binary conv and the BNs around it into what the packed engine runs.

In eval mode a BN is the per-channel affine ``bn(x) = s * x + t`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - s * mean``.

* BN -> sign (order ``bn_conv``): ``sign(bn(x)) = +1`` iff ``s * x + t >= 0`` (sign(0) = +1),
  i.e. ``x >= tau`` when ``s > 0`` and ``x <= tau`` when ``s < 0`` (a negative scale flips
  the comparison), ``tau = -t / s``; with ``s = 0`` the sign is that of beta for every x.
  The engine computes ``m * x >= thr`` with ``m = +-1``; thr is ``m * tau`` rounded up to
  the next float32, which keeps the comparison exact for every float32 x.
* RSign (ReActNet): ``sign(bn(x) - b)`` is the same comparison with ``t - b`` for ``t``
  (and ``s = 1, t = 0`` without a BN), so the learnt threshold b costs the engine nothing.
* binary conv -> BN (order ``conv_bn``) and the weight scale alpha:
  ``bn(alpha * dot + b) = (s * alpha) * dot + (s * b + t)``, one affine per output channel.
  A channel shuffle between the conv and the BN only says which BN channel that is.
* grouped convs fold the same way: thresholds are per input channel, affines per output
  channel, whatever group the channel is in.

Everything is computed in float64 and rounded once; the float32 BN of PyTorch rounds
differently only within an ulp of a threshold (the "ties" of the agreement test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from bnn_nas.binary import BinaryConv2d, RSign
from bnn_nas.export.kernels import ConvGeometry

_PROBE = torch.tensor([-2.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 1.0, 2.0])
_PROBE_SIGNS = torch.tensor([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0])


@dataclass(frozen=True)
class FoldedConv:
    """A binary conv ready to pack: weight signs, input threshold, output affine."""

    geometry: ConvGeometry
    signs: Tensor  # bool [O, C / groups, kh, kw], True = +1
    input_mul: Tensor  # float32 [C], +1 or -1
    input_threshold: Tensor  # float32 [C]
    output_scale: Tensor  # float32 [O]
    output_bias: Tensor  # float32 [O]


def geometry_of(conv: nn.Conv2d) -> ConvGeometry:
    pair = lambda v: (int(v[0]), int(v[1])) if isinstance(v, tuple) else (int(v), int(v))  # noqa: E731
    return ConvGeometry(
        in_channels=conv.in_channels,
        out_channels=conv.out_channels,
        kernel=pair(conv.kernel_size),
        stride=pair(conv.stride),
        padding=pair(conv.padding),
        dilation=pair(conv.dilation),
        groups=int(conv.groups),
    )


@torch.no_grad()
def _signs_and_alpha(conv: BinaryConv2d) -> tuple[Tensor, Tensor] | None:
    """sign(W) and alpha when the weight binarizer's output is exactly sign(W) * alpha[o]."""
    binarized = conv.weight_binarizer(conv.weight).detach()
    signs = conv.weight.detach() >= 0  # sign(0) = +1, as bnn_nas.binary
    alpha = binarized.abs().flatten(1).amax(1)
    expected = torch.where(signs, 1.0, -1.0).to(binarized.dtype) * alpha.view(-1, 1, 1, 1)
    if not torch.equal(binarized, expected):
        return None
    return signs, alpha.double()


@torch.no_grad()
def _act_is_sign(conv: BinaryConv2d) -> bool:
    act = conv.act
    if isinstance(act, RSign):  # sign(x - b): the threshold folds (input_threshold)
        return True
    was_training = act.training
    act.eval()
    try:
        out = act(_PROBE.to(conv.weight.dtype))
    finally:
        act.train(was_training)
    return torch.equal(out.to(_PROBE_SIGNS.dtype), _PROBE_SIGNS)


def not_packable(module: nn.Module) -> str | None:
    """Why ``module`` cannot run as a packed binary conv, or None when it can."""
    if not isinstance(module, BinaryConv2d):
        return "not a BinaryConv2d"
    if not module.is_binary:
        return "not binary in both operands"
    if module.padding_mode != "zeros" or isinstance(module.padding, str):
        return "padding other than explicit zero padding"
    if not _act_is_sign(module):
        return f"activation binarizer {module.act.name!r} is not sign() in eval mode"
    if _signs_and_alpha(module) is None:
        return f"weight binarizer {module.weight_binarizer.name!r} is not sign(W) * alpha"
    return None


def bn_foldable(module: nn.Module) -> bool:
    """A BatchNorm2d that is a fixed affine in eval mode (it keeps running statistics)."""
    return (
        isinstance(module, nn.BatchNorm2d)
        and module.track_running_stats
        and module.running_mean is not None
        and module.running_var is not None
    )


@torch.no_grad()
def bn_affine(bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(s, t) in float64 with ``bn(x) = s * x + t`` in eval mode."""
    assert bn.running_mean is not None and bn.running_var is not None
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    s = gamma / torch.sqrt(var + bn.eps)
    return s, beta - s * mean


def _round_up_f32(values: np.ndarray) -> np.ndarray:
    """The smallest float32 >= each float64 value."""
    out = values.astype(np.float32)
    low = out.astype(np.float64) < values
    out[low] = np.nextafter(out[low], np.float32(np.inf))
    return out


def input_threshold(
    bn: nn.BatchNorm2d | None, channels: int, shift: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(mul, thr), float32 [C]: the engine's bit is ``mul * x >= thr``, the sign of
    ``bn(x) - shift`` (``shift``: RSign's learnt threshold b; none: 0)."""
    if bn is None and shift is None:
        return torch.ones(channels), torch.zeros(channels)
    if bn is None:
        s, t = torch.ones(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64)
    else:
        s, t = bn_affine(bn)
    if shift is not None:
        t = t - shift.detach().double().cpu()
    mul = torch.where(s < 0, -1.0, 1.0).double()
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = (-t / s).numpy()
    thr = mul.numpy() * tau
    constant = (s == 0).numpy()
    # s = 0: bn(x) = t for every x, so the bit is sign(t): always (-inf) or never (+inf)
    thr[constant] = np.where(t.numpy()[constant] >= 0, -np.inf, np.inf)
    return mul.float(), torch.from_numpy(_round_up_f32(thr))


def fold_conv(
    conv: BinaryConv2d,
    *,
    pre_bn: nn.BatchNorm2d | None = None,
    post_bn: nn.BatchNorm2d | None = None,
    post_channels: slice | None = None,
    post_order: Tensor | None = None,
) -> FoldedConv:
    """Fold ``pre_bn`` (before the sign) and ``post_bn`` (after the conv; ``post_channels``
    of it when the conv makes part of its channels) into one packed conv.

    ``post_order``: the BN channel that each of the conv's output channels (before the
    ``post_channels`` slice) meets, when a permutation (a channel shuffle) sits between
    the conv and the BN."""
    reason = not_packable(conv)
    if reason is not None:
        raise ValueError(f"cannot pack {conv}: {reason}")
    found = _signs_and_alpha(conv)
    assert found is not None
    signs, alpha = found
    geometry = geometry_of(conv)
    shift = conv.act.threshold if isinstance(conv.act, RSign) else None
    mul, thr = input_threshold(pre_bn, geometry.in_channels, shift)
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(alpha)
    scale = alpha
    if post_bn is not None:
        s, t = bn_affine(post_bn)
        if post_order is not None:
            s, t = s[post_order], t[post_order]
        part = post_channels if post_channels is not None else slice(None)
        s, t = s[part], t[part]
        scale, bias = s * alpha, s * bias + t
    return FoldedConv(
        geometry=geometry,
        signs=signs.cpu(),
        input_mul=mul,
        input_threshold=thr,
        output_scale=scale.float().cpu(),
        output_bias=bias.float().cpu(),
    )
