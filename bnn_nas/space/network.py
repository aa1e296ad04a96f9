"""Networks built from a genotype (DARTS-style cells); the baselines live in baselines.py.

Float stem and classifier, binary (or float) cells in between. The cell network is
exactly the genotype: an op per edge, a sum per node, a concat of the listed nodes. The
space's ``network`` section picks the parts around the cells (bnn_nas/space/cell_parts.py).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor, nn

from bnn_nas import extensions
from bnn_nas.config import ModelConfig
from bnn_nas.errors import ConfigError
from bnn_nas.primitives import REGISTRY, build_primitive
from bnn_nas.space.cell_parts import (
    IMAGENET_MIN_SIZE,
    AuxiliaryHead,
    ImageNetStem,
    cell_shortcut,
    cifar_stem,
    preprocess,
)
from bnn_nas.space.genotype import Genotype, validate_genotype
from bnn_nas.space.plain_networks import BASELINES, PlainNetwork, build_baseline
from bnn_nas.space.search_space import NetworkLayout, SearchSpace

__all__ = [
    "BASELINES",
    "Cell",
    "CellNetwork",
    "PlainNetwork",
    "build_baseline",
    "build_model",
    "check_image_size",
    "model_layout",
    "preprocess",
]


def drop_path(x: Tensor, drop_prob: float) -> Tensor:
    """Zero whole samples with probability ``drop_prob``, rescaling the rest (DARTS)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class Cell(nn.Module):
    """One DARTS cell: two preprocessed inputs, ``steps`` summed pairs of ops, a concat.

    ``shortcut`` (``cell_shortcut: identity``, BNAS): the input s1 is added to the output.
    """

    def __init__(
        self,
        genotype: Genotype,
        space: SearchSpace,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        shortcut: bool = False,
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
        self.shortcut = cell_shortcut(C_prev, self.multiplier * C, reduction) if shortcut else None

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
        out = torch.cat([states[i] for i in self.concat], dim=1)
        return out if self.shortcut is None else out + self.shortcut(s1)


class CellNetwork(nn.Module):
    """Stem -> cells -> global pool -> float classifier (+ DARTS's auxiliary head).

    ``drop_path_prob`` is set by the trainer (it ramps over epochs, as in DARTS). With an
    auxiliary head, a training forward leaves its logits in ``auxiliary_logits`` for the
    training loss (:class:`~bnn_nas.space.cell_parts.AuxiliaryLoss`), which takes them
    away again: a trained network holds no autograd-graph tensor, so it deep-copies (the
    exporters copy it) and keeps no CUDA-graph memory alive. Every other forward (eval
    mode, or ``auxiliary_enabled`` off: loss weight 0) runs no head and clears them.
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
        self.two_stems = layout.stem == "imagenet"
        if self.two_stems:  # DARTS NetworkImageNet: the first cell reads reduced maps
            self.stem: nn.Module = ImageNetStem(in_channels, C)
            C_prev_prev, C_prev, C_curr, reduction_prev = C, C, C, True
        else:
            C_stem = layout.stem_multiplier * C
            self.stem = cifar_stem(in_channels, C_stem, layout.stem)
            C_prev_prev, C_prev, C_curr, reduction_prev = C_stem, C_stem, C, False
        cells = []
        self.auxiliary: nn.Module | None = None
        self.auxiliary_at = 2 * layout.cells // 3 if layout.auxiliary_head else -1
        for i in range(layout.cells):
            reduction = i in layout.reductions
            if reduction:
                C_curr *= 2
            shortcut = layout.cell_shortcut == "identity" and i > 0
            cell = Cell(
                genotype, space, C_prev_prev, C_prev, C_curr, reduction, reduction_prev, shortcut
            )
            cells.append(cell)
            reduction_prev = reduction
            C_prev_prev, C_prev = C_prev, cell.multiplier * C_curr
            if i == self.auxiliary_at:
                self.auxiliary = AuxiliaryHead(C_prev, num_classes, self.two_stems)
        self.cells = nn.ModuleList(cells)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_prev, num_classes)
        self.drop_path_prob = 0.0
        self.auxiliary_logits: Tensor | None = None
        self.auxiliary_enabled = True  # with_auxiliary_loss turns it off at weight 0

    def regions(self) -> list[nn.Module]:
        """The pieces ``compile_scope: ops`` compiles one by one: stem, every cell's
        preprocess units, edge ops and shortcut. Why: a whole cell network is one long
        graph (1,621 operators forward and backward at 8 cells) that takes minutes to
        compile; its ops repeat in kind and shape, so their graphs are few and small. The
        cells' sums and concats, pooling and classifier stay eager."""
        pieces: list[nn.Module] = [self.stem]
        for cell in self.cells:
            pieces += [cell.preprocess0, cell.preprocess1, *cell.ops]
            if cell.shortcut is not None:
                pieces.append(cell.shortcut)
        return pieces

    def forward(self, x: Tensor) -> Tensor:
        self.auxiliary_logits = None
        run_head = self.training and self.auxiliary is not None and self.auxiliary_enabled
        if self.two_stems:
            s0, s1 = self.stem(x)
        else:
            s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.auxiliary_at and run_head:
                self.auxiliary_logits = self.auxiliary(s1)  # taken by the training loss
        return self.classifier(torch.flatten(self.pool(s1), 1))


def check_image_size(layout: NetworkLayout, image_size: int | None) -> None:
    """Refuse an input size the stem was not made for (None: not known, no check)."""
    if image_size is None:
        return
    if layout.stem == "imagenet" and image_size < IMAGENET_MIN_SIZE:
        raise ConfigError(
            f"network.stem imagenet is made for ImageNet-size images (>= {IMAGENET_MIN_SIZE} "
            f"px), not {image_size} px; use stem: cifar"
        )
    if layout.stem != "imagenet" and image_size >= IMAGENET_MIN_SIZE:
        raise ConfigError(
            f"network.stem {layout.stem} is made for CIFAR-size images (< {IMAGENET_MIN_SIZE} "
            f"px), not {image_size} px; use stem: imagenet"
        )


def model_layout(model: ModelConfig, space: SearchSpace) -> NetworkLayout:
    """The layout a genotype's network gets: the space's, sized by ``model.cells`` /
    ``model.channels`` when set (a new depth puts the reductions at 1/3 and 2/3)."""
    return replace(
        space.network,
        cells=model.cells or space.network.cells,
        channels=model.channels or space.network.channels,
        reduction_cells=None if model.cells else space.network.reduction_cells,
    )


def build_model(
    model: ModelConfig,
    space: SearchSpace | None,
    num_classes: int,
    genotype: Genotype | None = None,
    image_size: int | None = None,
) -> nn.Module:
    """The network a config asks for: a genotype's cells or a hand-designed baseline.

    ``image_size`` (the input's height, when known) picks a baseline's layout (CIFAR or
    ImageNet) and is checked against a cell network's stem. A baseline reads no ``space``.
    """
    if genotype is not None:
        if space is None:
            raise ConfigError("a cell network needs its search space to be built")
        layout = model_layout(model, space)
        check_image_size(layout, image_size)
        return CellNetwork(genotype, replace(space, network=layout), num_classes)
    if model.type == "cells":
        raise ConfigError("no genotype given; pass --genotype FILE_OR_TEXT or --model NAME")
    baseline = extensions.get_baseline(model.type).obj  # registered: built-in or a plugin's
    extensions.get_family(model.family)
    return baseline(model.family, num_classes, image_size=image_size, **model.options)
