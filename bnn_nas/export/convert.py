"""Rewrite a bnn-nas network for the packed engine: binary convs out, packed convs in.

The rewrite is a pure function of the module tree's structure, so it runs twice: on the
trained network at export (folding real values) and on a freshly built skeleton at load
(making the same slots, which the file's tensors then fill). The list of rewritten
layers goes into the file so that a loader whose builders disagree fails loudly.

Patterns, in order:
  1. ``BinaryUnit`` with ``bn_conv``: its BN becomes the threshold of the conv's sign;
     with ``conv_bn``: its BN becomes the conv's output affine. A factorized reduce
     inside gets both halves folded (the BN split by channels in ``conv_bn``). The unit
     becomes a ``PackedUnit``, whose shortcut is added by the kernel. A channel shuffle
     after a grouped conv stays a module of the unit (a permutation in the graph); in
     ``conv_bn`` the BN after it is folded channel by channel through that permutation.
  2. ``Sequential(BinaryConv2d, BatchNorm2d)`` (the ``binary_conv`` shortcut): BN folded.
  3. Any other factorized reduce of binary convs, and any other binary conv: packed with
     threshold 0 (the plain sign) and alpha as the output scale.
Grouped convs (``groups > 1``, depthwise included) are packed like any other. Folded BNs
become ``nn.Identity``. Non-packable convs (a float operand, an unusual binarizer, padding
other than zeros) stay torch modules; ``pack_model`` lists them as skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bnn_nas.binary import BinaryConv2d
from bnn_nas.export.fold import bn_foldable, fold_conv, not_packable
from bnn_nas.export.kernels import ConvGeometry
from bnn_nas.export.modules import PackedConv2d, PackedFactorizedReduce, PackedUnit
from bnn_nas.primitives.blocks import BinaryUnit, FactorizedReduce


@dataclass(frozen=True)
class PackedLayer:
    """One rewritten conv, as recorded in the export file."""

    path: str
    geometry: ConvGeometry
    shift_input: bool
    folded: str  # "pre_bn", "post_bn" or "none"

    def to_dict(self) -> dict[str, Any]:
        """The file's flat record: path, the geometry's fields, shift_input, folded.

        ``groups`` is written only when it is not 1, so the records of ungrouped layers are
        those of files written before grouped convs were packed (and those files load)."""
        geometry = asdict(self.geometry)
        if geometry["groups"] == 1:
            del geometry["groups"]
        flat = {"path": self.path, **geometry, "shift_input": self.shift_input,
                "folded": self.folded}  # fmt: skip
        return {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}


@dataclass(frozen=True)
class Conversion:
    """What ``pack_model`` did: the packed layers and the binary convs it left alone."""

    layers: tuple[PackedLayer, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, reason)


def _set(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, name, module)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


KEPT = "kept in torch, as in the file (written before this bnn-nas packed such convs)"


@torch.no_grad()
def bn_order(permutation: nn.Module, channels: int) -> Tensor | None:
    """For each channel of a permutation's input, the index of the output channel it lands
    on (what a BN after the permutation applies to it); None if it is no permutation."""
    probe = torch.arange(channels, dtype=torch.float64).view(1, channels, 1, 1)
    source = permutation(probe).flatten().round().long()
    if source.numel() != channels or not torch.equal(source.sort().values, probe.flatten().long()):
        return None
    order = torch.empty(channels, dtype=torch.long)
    order[source] = torch.arange(channels)
    return order


class _Packer:
    def __init__(self, root: nn.Module, keep: set[int]) -> None:
        self.root = root
        self.keep = keep  # ids of binary convs to leave in torch
        self.layers: list[PackedLayer] = []

    def packable(self, module: nn.Module) -> bool:
        return (
            isinstance(module, BinaryConv2d)
            and id(module) not in self.keep
            and not_packable(module) is None
        )

    def packable_reduce(self, module: nn.Module) -> bool:
        return (
            isinstance(module, FactorizedReduce)
            and self.packable(module.conv_a)
            and self.packable(module.conv_b)
        )

    def reason(self, conv: BinaryConv2d) -> str | None:
        """Why ``conv`` stays in torch, or None when it is packed."""
        reason = not_packable(conv)
        return KEPT if reason is None and id(conv) in self.keep else reason

    def conv(
        self, path: str, conv: BinaryConv2d, folded: str, shift: bool = False, **kw: Any
    ) -> PackedConv2d:
        packed = PackedConv2d.from_folded(fold_conv(conv, **kw), shift_input=shift)
        self.layers.append(PackedLayer(path, packed.geometry, shift, folded))
        _set(self.root, path, packed)
        return packed

    def reduce(self, path: str, fr: FactorizedReduce, folded: str, **kw: Any) -> None:
        split = fr.conv_a.out_channels
        kw_a, kw_b = dict(kw), dict(kw)
        if "post_bn" in kw:
            kw_a["post_channels"] = slice(0, split)
            kw_b["post_channels"] = slice(split, None)
        a = self.conv(_join(path, "conv_a"), fr.conv_a, folded, **kw_a)
        b = self.conv(_join(path, "conv_b"), fr.conv_b, folded, shift=True, **kw_b)
        _set(self.root, path, PackedFactorizedReduce(a, b))

    def unit(self, path: str, unit: BinaryUnit) -> None:
        bn = unit.bn
        if not bn_foldable(bn):
            return
        key, folded = ("pre_bn", "pre_bn") if unit.bn_first else ("post_bn", "post_bn")
        kw: dict[str, Any] = {key: bn}
        shuffle = getattr(unit, "shuffle", None)
        if shuffle is not None and not unit.bn_first:  # conv -> shuffle -> BN
            kw["post_order"] = bn_order(shuffle, bn.num_features)
            if kw["post_order"] is None:
                return
        if self.packable(unit.conv):
            self.conv(_join(path, "conv"), unit.conv, folded, **kw)
        elif self.packable_reduce(unit.conv):
            self.reduce(_join(path, "conv"), unit.conv, folded, **kw)
        else:
            return
        if path:
            packed = PackedUnit(nn.Identity(), unit.conv, unit.shortcut, unit.act, shuffle)
            _set(self.root, path, packed)
        else:  # the unit is the root: keep it, its BN now folded
            unit.bn = nn.Identity()

    def sequential(self, path: str, seq: nn.Sequential) -> None:
        names = list(seq._modules)
        for first, second in itertools.pairwise(names):
            conv, bn = seq._modules[first], seq._modules[second]
            if conv is not None and self.packable(conv) and bn is not None and bn_foldable(bn):
                self.conv(_join(path, first), conv, "post_bn", post_bn=bn)  # type: ignore[arg-type]
                seq._modules[second] = nn.Identity()


def pack_model(model: nn.Module, keep: Iterable[str] = ()) -> Conversion:
    """Replace the binary convs of ``model`` (in place, eval mode) by packed modules.

    ``keep``: paths of binary convs to leave in torch although they could be packed: what
    the loader passes for the convs a file lists as skipped, so that files written before
    grouped convs were packed (they hold such convs as float weights) load as written.
    """
    model.eval()
    modules = dict(model.named_modules())
    kept = {id(modules[path]) for path in keep if isinstance(modules.get(path), BinaryConv2d)}
    packer = _Packer(model, kept)
    for path, module in list(model.named_modules()):
        if isinstance(module, BinaryUnit):
            packer.unit(path, module)
    for path, module in list(model.named_modules()):
        if isinstance(module, nn.Sequential):
            packer.sequential(path, module)
    for path, module in list(model.named_modules()):
        if packer.packable_reduce(module):
            packer.reduce(path, module, "none")  # type: ignore[arg-type]
    skipped = []
    for path, module in list(model.named_modules()):
        if isinstance(module, BinaryConv2d):
            reason = packer.reason(module)
            if reason is None:
                packer.conv(path, module, "none")
            else:
                skipped.append((path, reason))
    model.eval()
    return Conversion(tuple(packer.layers), tuple(skipped))
