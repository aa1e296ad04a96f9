"""An example plugin: a binary depthwise-separable 3x3 conv registered as a primitive.

Load it with `--plugin search_spaces/example_plugin.py` or `plugins:` in a config (see
configs/cifar_tiny_plugin.yaml). Every primitive has the signature
(C_in, C_out, stride, **options) -> nn.Module.
"""

from __future__ import annotations

from torch import nn

from bnn_nas import register_primitive
from bnn_nas.binary import BinaryConv2d


@register_primitive("xnor_sep_conv_3x3", family="example", precision="binary")
def xnor_sep_conv_3x3(C_in: int, C_out: int, stride: int, act: str = "clipped_ste",
                      weight: str = "xnor") -> nn.Module:  # fmt: skip
    """Binary depthwise 3x3 then binary pointwise 1x1, BN before each (XNOR-Net order)."""
    return nn.Sequential(
        nn.BatchNorm2d(C_in),
        BinaryConv2d(C_in, C_in, 3, stride=stride, padding=1, groups=C_in, act=act, weight=weight),
        nn.BatchNorm2d(C_in),
        BinaryConv2d(C_in, C_out, 1, act=act, weight=weight),
    )
