"""DARTS's full-precision ops (Liu et al., ICLR 2019; quark0/darts ``operations.py``).

The float twin of a DARTS space and float reference searches need them. The layouts are
DARTS's own, so a published float genotype counts as its authors' code counts it
(DARTS V2 at 20 cells x 36 channels: 3,349,342 parameters, tests/test_space_templates.py):

* ``sep_conv_KxK``: twice ReLU -> depthwise KxK conv (stride only in the first) -> 1x1
  conv -> BN; the first 1x1 keeps C_in channels, the second maps to C_out.
* ``dil_conv_KxK``: ReLU -> depthwise KxK conv with dilation 2 -> 1x1 conv -> BN.

BNs are affine, as in DARTS's final networks. Like every primitive they take any C_in,
C_out and stride 1 or 2 (stride 2 keeps ceil(H / 2)).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from bnn_nas.errors import PrimitiveError
from bnn_nas.primitives.registry import register_primitive


def _no_options(name: str, options: dict[str, Any]) -> None:
    if options:
        raise PrimitiveError(f"primitive {name!r} takes no options, got {sorted(options)}")


def _relu_dw_pw_bn(
    C_in: int, C_out: int, kernel: int, stride: int, dilation: int
) -> list[nn.Module]:
    padding = dilation * (kernel - 1) // 2
    depthwise = nn.Conv2d(
        C_in, C_in, kernel, stride=stride, padding=padding, dilation=dilation,
        groups=C_in, bias=False,
    )  # fmt: skip
    return [
        nn.ReLU(inplace=False),
        depthwise,
        nn.Conv2d(C_in, C_out, 1, bias=False),
        nn.BatchNorm2d(C_out),
    ]


def sep_conv(C_in: int, C_out: int, stride: int, kernel: int) -> nn.Sequential:
    """DARTS ``SepConv``: two ReLU-depthwise-pointwise-BN stages."""
    return nn.Sequential(
        *_relu_dw_pw_bn(C_in, C_in, kernel, stride, 1),
        *_relu_dw_pw_bn(C_in, C_out, kernel, 1, 1),
    )


def dil_conv(C_in: int, C_out: int, stride: int, kernel: int) -> nn.Sequential:
    """DARTS ``DilConv``: ReLU, dilated depthwise conv (dilation 2), pointwise, BN."""
    return nn.Sequential(*_relu_dw_pw_bn(C_in, C_out, kernel, stride, 2))


def _register(name: str, build: Any, kernel: int, doc: str) -> None:
    def factory(C_in: int, C_out: int, stride: int, **options: Any) -> nn.Module:
        _no_options(name, options)
        return build(C_in, C_out, stride, kernel)

    factory.__name__ = factory.__qualname__ = name
    register_primitive(name, family="float", precision="float", doc=doc)(factory)


for _k in (3, 5):
    _register(
        f"sep_conv_{_k}x{_k}", sep_conv, _k,
        f"DARTS separable conv {_k}x{_k}: (ReLU, depthwise, pointwise, BN) twice",
    )  # fmt: skip
    _register(
        f"dil_conv_{_k}x{_k}", dil_conv, _k,
        f"DARTS dilated conv {_k}x{_k}, dilation 2: ReLU, depthwise, pointwise, BN",
    )  # fmt: skip
