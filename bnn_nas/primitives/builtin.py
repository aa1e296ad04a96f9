"""The built-in primitives: cell basics, a float reference conv and two binary families.

Every factory has the one signature ``(C_in, C_out, stride, **options)`` and works
for any channel counts and stride 1 or 2. The ``xnor_*`` and ``bireal_*``
variants share one builder each; a family only contributes its defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from bnn_nas.errors import PrimitiveError
from bnn_nas.extensions import list_families
from bnn_nas.primitives.blocks import (
    BinaryUnit,
    Zero,
    channel_match,
    float_conv_bn,
    float_factorized_reduce,
    shortcut,
)
from bnn_nas.primitives.options import BinaryOptions, family_defaults
from bnn_nas.primitives.registry import register_primitive


def _no_options(name: str, options: dict[str, Any]) -> None:
    if options:
        raise PrimitiveError(f"primitive {name!r} takes no options, got {sorted(options)}")


@register_primitive("none", family="basic", precision="free")
def zero(C_in: int, C_out: int, stride: int, **options: Any) -> nn.Module:
    """Zero: the absent edge (cell search only)."""
    _no_options("none", options)
    return Zero(C_out, stride)


REDUCE_SKIPS = ("float", "binary")


@register_primitive("skip_connect", family="basic", precision="free")
def skip_connect(C_in: int, C_out: int, stride: int, **options: Any) -> nn.Module:
    """Identity; stride 2: full-precision factorized reduce (or binary: ``reduce_skip``)."""
    reduce_skip = options.pop("reduce_skip", "float")
    _no_options("skip_connect", options)
    if reduce_skip not in REDUCE_SKIPS:
        raise PrimitiveError(
            f"skip_connect: reduce_skip={reduce_skip!r} is invalid; "
            f"choose one of: {', '.join(REDUCE_SKIPS)}"
        )
    if stride == 2 and reduce_skip == "binary":
        # EBNAS / BATS: BN -> sign -> two 1x1 binary convs on offset grids, concatenated
        opts = family_defaults("xnor").with_overrides({"reduce": "factorized"}, "skip_connect")
        return BinaryUnit(C_in, C_out, 2, opts, kernel=1)
    if stride == 2:
        return float_factorized_reduce(C_in, C_out)
    return nn.Identity() if C_in == C_out else float_conv_bn(C_in, C_out)


def _pool(name: str, pool: nn.Module, C_in: int, C_out: int, options: dict[str, Any]) -> nn.Module:
    bn = options.pop("bn", True)
    _no_options(name, options)
    if not isinstance(bn, bool):
        raise PrimitiveError(f"{name}: option bn={bn!r} is invalid; give true or false")
    # bn: false is the pooling of DARTS's and BNAS's final networks (their searches add BN)
    norm = [nn.BatchNorm2d(C_in, affine=False)] if bn else []
    return nn.Sequential(pool, *norm, channel_match(C_in, C_out))


@register_primitive("avg_pool_3x3", family="basic", precision="free")
def avg_pool_3x3(C_in: int, C_out: int, stride: int, **options: Any) -> nn.Module:
    """3x3 average pooling + BN (option bn: false: without)."""
    pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    return _pool("avg_pool_3x3", pool, C_in, C_out, options)


@register_primitive("max_pool_3x3", family="basic", precision="free")
def max_pool_3x3(C_in: int, C_out: int, stride: int, **options: Any) -> nn.Module:
    """3x3 max pooling + BN (option bn: false: without)."""
    return _pool("max_pool_3x3", nn.MaxPool2d(3, stride=stride, padding=1), C_in, C_out, options)


@register_primitive("conv_3x3", family="float", precision="float")
def conv_3x3(C_in: int, C_out: int, stride: int, **options: Any) -> nn.Module:
    """Full-precision 3x3 conv + BN + ReLU (reference baselines)."""
    _no_options("conv_3x3", options)
    return nn.Sequential(
        nn.Conv2d(C_in, C_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(C_out),
        nn.ReLU(),
    )


class Chain(nn.Sequential):
    """Units applied one after another (blocks of several binary convs)."""


class PoolAfter(nn.Module):
    """A stride-1 unit followed by 2x2 max pooling (VGG-style reduction)."""

    def __init__(self, unit: nn.Module) -> None:
        super().__init__()
        self.unit = unit
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.unit(x))


def _conv(kernel: int, dilation: int = 1) -> Callable[..., nn.Module]:
    def build(C_in: int, C_out: int, stride: int, o: BinaryOptions) -> nn.Module:
        return BinaryUnit(C_in, C_out, stride, o, kernel=kernel, dilation=dilation)

    return build


def _skip(C_in: int, C_out: int, stride: int, o: BinaryOptions) -> nn.Module:
    return shortcut(C_in, C_out, stride, o)


def _resnet_block(C_in: int, C_out: int, stride: int, o: BinaryOptions) -> nn.Module:
    return Chain(
        BinaryUnit(C_in, C_out, stride, o, kernel=3),
        BinaryUnit(C_out, C_out, 1, o, kernel=3),
    )


def _vgg_block(C_in: int, C_out: int, stride: int, o: BinaryOptions) -> nn.Module:
    unit = BinaryUnit(C_in, C_out, 1, o, kernel=3)
    return PoolAfter(unit) if stride == 2 else unit


def _nin(C_in: int, C_out: int, stride: int, o: BinaryOptions) -> nn.Module:
    return Chain(
        BinaryUnit(C_in, C_out, stride, o, kernel=3),
        BinaryUnit(C_out, C_out, 1, o, kernel=1),
        BinaryUnit(C_out, C_out, 1, o, kernel=1),
    )


# suffix -> (builder, precision, one-line doc)
FAMILY_SHAPES: dict[str, tuple[Callable[..., nn.Module], str, str]] = {
    "conv_1x1": (_conv(1), "binary", "one binary 1x1 conv, no shortcut"),
    "conv_3x3": (_conv(3), "binary", "one binary 3x3 conv, no shortcut"),
    "conv_5x5": (_conv(5), "binary", "one binary 5x5 conv, no shortcut"),
    "dil_conv_3x3": (_conv(3, 2), "binary", "one binary 3x3 conv, dilation 2, no shortcut"),
    "dil_conv_5x5": (_conv(5, 2), "binary", "one binary 5x5 conv, dilation 2, no shortcut"),
    "conv_1x1_skip_connect": (
        _conv(1),
        "binary",
        "one binary 1x1 conv plus a real-valued shortcut",
    ),
    "conv_3x3_skip_connect": (
        _conv(3),
        "binary",
        "one binary 3x3 conv plus a real-valued shortcut",
    ),
    "conv_5x5_skip_connect": (
        _conv(5),
        "binary",
        "one binary 5x5 conv plus a real-valued shortcut",
    ),
    "dil_conv_3x3_skip_connect": (
        _conv(3, 2),
        "binary",
        "one binary 3x3 conv, dilation 2, plus a real-valued shortcut",
    ),
    "dil_conv_5x5_skip_connect": (
        _conv(5, 2),
        "binary",
        "one binary 5x5 conv, dilation 2, plus a real-valued shortcut",
    ),
    "skip_connect": (
        _skip,
        "free",
        "parameter-free shortcut: identity; stride 2: avg-pool + channel concat",
    ),
    "resnet_block": (
        _resnet_block,
        "binary",
        "two binary 3x3 convs, each with its real-valued shortcut",
    ),
    "vgg_block": (
        _vgg_block,
        "binary",
        "binary 3x3 conv, no shortcut (unless asked); stride 2: then 2x2 pool",
    ),
    "nin": (_nin, "binary", "binary 3x3 conv then two binary 1x1 convs, each with a shortcut"),
}

# Per-shape defaults on top of the family's: a skip connection is parameter-free by name.
SHAPE_DEFAULTS: dict[str, dict[str, str]] = {"skip_connect": {"downsample": "avgpool_concat"}}
# Options a shape's name fixes: a `*_skip_connect` conv and the multi-conv blocks always
# have their shortcuts (the plain `*_conv_*` names are the same convs without).
_WITH_SHORTCUT = ("skip_connect", "resnet_block", "nin")
SHAPE_FIXED: dict[str, dict[str, str]] = {
    suffix: {"shortcut": "identity"}
    for suffix in FAMILY_SHAPES
    if suffix.endswith("skip_connect") or suffix in _WITH_SHORTCUT
}


def _family_variant(
    name: str,
    family: str,
    builder: Callable[..., nn.Module],
    defaults: dict[str, str],
    fixed: dict[str, str],
) -> Callable[..., nn.Module]:
    base = family_defaults(family).with_overrides({**defaults, **fixed}, name)

    def factory(C_in: int, C_out: int, stride: int, **options: Any) -> nn.Module:
        for key, value in fixed.items():
            if key in options and options[key] != value:
                raise PrimitiveError(
                    f"primitive {name!r} always has {key}={value!r} (its name says so); "
                    f"got {key}={options[key]!r}"
                )
        opts = base.with_overrides(options, name)
        try:
            return builder(C_in, C_out, stride, opts)
        except PrimitiveError as err:
            if str(err).startswith("primitive "):
                raise
            raise PrimitiveError(f"primitive {name!r}: {err}") from None

    factory.__name__ = factory.__qualname__ = name
    return factory


def _register_families() -> None:
    for family in [entry.name for entry in list_families()]:  # the built-in ones, now
        for suffix, (builder, precision, doc) in FAMILY_SHAPES.items():
            name = f"{family}_{suffix}"
            factory = _family_variant(
                name, family, builder, SHAPE_DEFAULTS.get(suffix, {}), SHAPE_FIXED.get(suffix, {})
            )
            register_primitive(name, family=family, precision=precision, doc=doc)(factory)  # type: ignore[arg-type]


_register_families()
