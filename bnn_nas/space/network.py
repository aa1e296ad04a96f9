"""Networks built from a genotype (DARTS-style cells) or as plain hand-designed stacks.

Full-precision stem and classifier, binary (or float) cells in between. The cell network
is exactly the genotype: an op per edge, a sum per node, a concat of the listed nodes.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from bnn_nas.config import ModelConfig
from bnn_nas.errors import ConfigError
from bnn_nas.primitives import FAMILY_DEFAULTS, REGISTRY, build_primitive
from bnn_nas.primitives.blocks import BinaryUnit, float_conv_bn, float_factorized_reduce
from bnn_nas.space.genotype import Genotype, validate_genotype
from bnn_nas.space.search_space import NetworkLayout, SearchSpace


def drop_path(x: Tensor, drop_prob: float) -> Tensor:
    """Zero whole samples with probability ``drop_prob``, rescaling the rest (DARTS)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


def preprocess(C_in: int, C_out: int, stride: int, kind: str) -> nn.Module:
    """Adapt a cell input: 1x1 conv-BN, or a factorized reduce when ``stride`` is 2."""
    if kind == "float":
        return float_factorized_reduce(C_in, C_out) if stride == 2 else float_conv_bn(C_in, C_out)
    opts = FAMILY_DEFAULTS[kind].with_overrides({"reduce": "factorized"}, f"{kind} preprocess")
    return BinaryUnit(C_in, C_out, stride, opts, kernel=1)


class Cell(nn.Module):
    """One DARTS cell: two preprocessed inputs, ``steps`` summed pairs of ops, a concat."""

    def __init__(
        self,
        genotype: Genotype,
        space: SearchSpace,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        kind = "reduce" if reduction else "normal"
        edges, concat = genotype.cell(kind)
        pre = space.network.preprocess
        self.preprocess0 = preprocess(C_prev_prev, C, 2 if reduction_prev else 1, pre)
        self.preprocess1 = preprocess(C_prev, C, 1, pre)
        self.inputs = tuple(index for _, index in edges)
        self.concat = tuple(concat)
        self.ops = nn.ModuleList(
            build_primitive(
                op, C, C, 2 if reduction and index < 2 else 1, **space.op_options(kind, op)
            )
            for op, index in edges
        )
        # drop-path applies to every op but the parameter-free identity (DARTS)
        self.droppable = tuple(not isinstance(op, nn.Identity) for op in self.ops)
        self.multiplier = len(self.concat)

    def forward(self, s0: Tensor, s1: Tensor, drop_prob: float = 0.0) -> Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for step in range(len(self.ops) // 2):
            total = None
            for j in (2 * step, 2 * step + 1):
                h = self.ops[j](states[self.inputs[j]])
                if self.training and self.droppable[j]:
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class CellNetwork(nn.Module):
    """Stem (float 3x3 conv + BN) -> cells -> global pool -> float classifier.

    ``drop_path_prob`` is set by the trainer (it ramps over epochs, as in DARTS).
    """

    def __init__(
        self, genotype: Genotype, space: SearchSpace, num_classes: int, in_channels: int = 3
    ) -> None:
        super().__init__()
        # The genotype may come from a paper: its cells may have another number of steps
        # than the space's; its ops must be registered (the space gives options and layout).
        registered = REGISTRY.names()
        validate_genotype(genotype, normal_ops=registered, reduce_ops=registered)
        layout: NetworkLayout = space.network
        C = layout.channels
        C_curr = layout.stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_prev_prev, C_prev, C_curr = C_curr, C_curr, C
        cells = []
        reduction_prev = False
        for i in range(layout.cells):
            reduction = i in layout.reductions
            if reduction:
                C_curr *= 2
            cell = Cell(genotype, space, C_prev_prev, C_prev, C_curr, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
        self.cells = nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.drop_path_prob = 0.0

    def forward(self, x: Tensor) -> Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
        return self.classifier(torch.flatten(self.pool(s1), 1))


class PlainNetwork(nn.Module):
    """A hand-designed stack: stem -> blocks -> global pool -> float classifier."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], C_out: int, num_classes: int):
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_out, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def _float_stem(C_in: int, C_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(C_in, C_out, 3, padding=1, bias=False), nn.BatchNorm2d(C_out))


# name -> (block suffix, stem channels, [(channels, blocks, first stride), ...])
BASELINES: dict[str, tuple[str, int, list[tuple[int, int, int]]]] = {
    # ResNet-18, CIFAR layout (3x3 stem, no max-pool): 4 stages x 2 basic blocks
    "resnet18": ("resnet_block", 64, [(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)]),
    # ResNet-20 (He et al. 2016, CIFAR): 3 stages x 3 basic blocks, 16-32-64 channels
    "resnet20": ("resnet_block", 16, [(16, 3, 1), (32, 3, 2), (64, 3, 2)]),
    # VGG-small (LQ-Nets / XNOR-Net CIFAR): 128-128P-256-256P-512-512P, stem conv in float
    "vgg_small": (
        "vgg_block",
        128,
        [(128, 1, 2), (256, 1, 1), (256, 1, 2), (512, 1, 1), (512, 1, 2)],
    ),
}


def build_baseline(
    name: str, family: str, num_classes: int, in_channels: int = 3, **options: object
) -> PlainNetwork:
    """A hand-designed binary network from the ``{family}_*`` primitives, for comparison."""
    if name not in BASELINES:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(BASELINES)}")
    if family not in FAMILY_DEFAULTS:
        raise ConfigError(f"unknown family {family!r}; choose one of {', '.join(FAMILY_DEFAULTS)}")
    suffix, stem_channels, stages = BASELINES[name]
    blocks: list[nn.Module] = []
    C_prev = stem_channels
    for channels, count, first_stride in stages:
        for i in range(count):
            stride = first_stride if i == 0 else 1
            blocks.append(
                build_primitive(f"{family}_{suffix}", C_prev, channels, stride, **options)
            )
            C_prev = channels
    return PlainNetwork(_float_stem(in_channels, stem_channels), blocks, C_prev, num_classes)


def build_model(
    model: ModelConfig,
    space: SearchSpace,
    num_classes: int,
    genotype: Genotype | None = None,
) -> nn.Module:
    """The network a config asks for: a genotype's cells or a hand-designed baseline."""
    if genotype is not None:
        layout = replace(
            space.network,
            cells=model.cells or space.network.cells,
            channels=model.channels or space.network.channels,
            reduction_cells=None if model.cells else space.network.reduction_cells,
        )
        return CellNetwork(genotype, replace(space, network=layout), num_classes)
    if model.type == "cells":
        raise ConfigError("no genotype given; pass --genotype FILE_OR_TEXT or --model NAME")
    return build_baseline(model.type, model.family, num_classes, **model.options)
