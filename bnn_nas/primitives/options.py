"""Settings of the binary primitive families, validated once and frozen.

The variants that papers disagree on (BN before or after the binary conv, the
stride-2 shortcut, ...) are values of :class:`BinaryOptions`, never new code.
A family is its defaults; a caller's options override them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from bnn_nas.binary import ACTIVATION_BINARIZERS, WEIGHT_BINARIZERS
from bnn_nas.errors import PrimitiveError
from bnn_nas.extensions import get_family, register_family

ORDERS = ("bn_conv", "conv_bn")
ACTIVATIONS = ("none", "relu", "prelu", "rprelu")
DOWNSAMPLES = ("avgpool_concat", "avgpool_conv", "binary_conv", "none")
REDUCES = ("strided", "factorized")
SHORTCUTS = ("none", "identity")


@dataclass(frozen=True)
class BinaryOptions:
    """How a binary primitive is built.

    act / weight: binarizer names (see ``bnn_nas.binary``).
    order: ``bn_conv`` (BN -> binary conv, XNOR-Net) or ``conv_bn`` (binary conv -> BN, Bi-Real).
    activation: applied after the block (after the shortcut is added): ``rprelu`` is
      ReActNet's PReLU between learnable per-channel shifts.
    downsample: the shortcut when the shape changes: ``avgpool_concat`` (2x2 avg-pool, channels
      doubled by concatenation; parameter-free), ``avgpool_conv`` (2x2 avg-pool + float 1x1
      conv + BN, BMXNet-v2 / Real-to-Binary), ``binary_conv`` (binary 1x1 conv + BN), ``none``
      (no projection: a shortcut is only allowed where the shapes already match).
    reduce: a stride-2 binary conv is ``strided`` or ``factorized`` (two stride-2 convs on
      grids offset by one pixel, each making half the channels, concatenated).
    groups: the binary convs are grouped (BATS, EBNAS); it must divide both channel counts.
    shuffle: a channel shuffle (ShuffleNet) after each grouped conv; needs ``groups`` > 1.
    shortcut: ``identity`` puts a real-valued shortcut around the conv (Bi-Real), shaped
      by ``downsample`` when the shape changes; ``none``: no shortcut.
    """

    act: str
    weight: str
    order: str
    activation: str
    downsample: str
    reduce: str
    groups: int = 1
    shuffle: bool = False
    shortcut: str = "none"

    def __post_init__(self) -> None:
        allowed = {
            "act": tuple(ACTIVATION_BINARIZERS),
            "weight": tuple(WEIGHT_BINARIZERS),
            "order": ORDERS,
            "activation": ACTIVATIONS,
            "downsample": DOWNSAMPLES,
            "reduce": REDUCES,
            "shortcut": SHORTCUTS,
        }
        for key, values in allowed.items():
            value = getattr(self, key)
            if value not in values:
                raise PrimitiveError(
                    f"option {key}={value!r} is invalid; choose one of: {', '.join(values)}"
                )
        groups = self.groups
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise PrimitiveError(f"option groups={groups!r} is invalid; give a positive integer")
        if not isinstance(self.shuffle, bool):
            raise PrimitiveError(f"option shuffle={self.shuffle!r} is invalid; give true or false")
        if self.shuffle and groups == 1:
            raise PrimitiveError("option shuffle=True needs groups > 1 (it follows a grouped conv)")

    def with_overrides(self, options: dict[str, Any], primitive: str) -> BinaryOptions:
        """These defaults with the caller's options applied; unknown keys are errors."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise PrimitiveError(
                f"primitive {primitive!r} has no option {unknown[0]!r}; "
                f"its options are: {', '.join(sorted(known))}"
            )
        try:
            return replace(self, **options)
        except PrimitiveError as err:
            raise PrimitiveError(f"primitive {primitive!r}: {err}") from None


# The built-in families, filed as bnn_nas.extensions.FAMILIES entries (``model.family``):
# an entry's object is the family's default BinaryOptions, the one source every builder
# reads (family_defaults).
register_family(
    "xnor",
    BinaryOptions(
        act="clipped_ste",
        weight="xnor",
        order="bn_conv",
        activation="none",
        downsample="avgpool_concat",
        reduce="strided",
    ),
    doc="XNOR-Net: BN -> sign -> binary conv (scaled weights) -> (+ shortcut)",
)
# Bi-Real Net: the paper's stride-2 shortcut is avg-pool + real 1x1 conv + BN.
register_family(
    "bireal",
    BinaryOptions(
        act="approx_sign",
        weight="bireal",
        order="conv_bn",
        activation="none",
        downsample="avgpool_conv",
        reduce="strided",
    ),
    doc="Bi-Real Net: sign -> binary conv -> BN -> + real-valued shortcut",
)


def family_defaults(name: str) -> BinaryOptions:
    """The default options of the registered family ``name`` (an unknown name: a one-line
    error with close names)."""
    return get_family(name).obj
