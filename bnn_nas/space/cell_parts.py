"""The parts around a cell network's cells: stems, preprocessing, cell shortcuts, the
auxiliary head. Each is a setting of the search space's ``network`` section.

* ``stem``: ``cifar`` (float 3x3 conv + BN, DARTS), ``bnas`` (BN -> float 3x3 conv ->
  ReLU, Kim et al.'s BNAS code) or ``imagenet`` (DARTS's NetworkImageNet: three stride-2
  float 3x3 convs in two stems, so the cells start at 1/8 of the input).
* ``preprocess``: ``float`` (1x1 conv + BN; factorized reduce after a reduction), a binary
  1x1 unit of the ``xnor`` / ``bireal`` family (factorized after a reduction), or ``bnas``
  (Kim et al.: BN -> sign -> binary 1x1 conv -> ReLU; after a reduction BN without affine
  -> sign -> binary 3x3 stride-2 conv -> ReLU).
* ``cell_shortcut: identity`` (BNAS): every cell but the first adds its input s1 to its
  output; reduction cells pass s1 through BN and a float 2x2 stride-2 conv (with bias).
* ``auxiliary_head`` (DARTS): a float classifier on the output of cell ``2 * cells // 3``,
  run in training only; its loss weight is ``train.auxiliary_weight``. It is declared
  ``training_only``: the cost model leaves it out, as DARTS's parameter counts do.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bnn_nas.primitives import family_defaults
from bnn_nas.primitives.blocks import BinaryUnit, float_conv_bn, float_factorized_reduce

STEMS = ("cifar", "bnas", "imagenet")
PREPROCESS_CHOICES = ("float", "xnor", "bireal", "bnas")
CELL_SHORTCUTS = ("none", "identity")
IMAGENET_MIN_SIZE = 128  # inputs this large take ImageNet layouts; smaller ones CIFAR's


def cifar_stem(in_channels: int, C: int, kind: str) -> nn.Sequential:
    """One float 3x3 conv + BN (``cifar``, DARTS), or BN -> conv -> ReLU (``bnas``)."""
    conv = nn.Conv2d(in_channels, C, 3, padding=1, bias=False)
    if kind == "bnas":
        return nn.Sequential(nn.BatchNorm2d(in_channels), conv, nn.ReLU())
    return nn.Sequential(conv, nn.BatchNorm2d(C))


class ImageNetStem(nn.Module):
    """DARTS's ImageNet stems: s0 at 1/4 of the input (two stride-2 convs), s1 at 1/8."""

    def __init__(self, in_channels: int, C: int) -> None:
        super().__init__()
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


def bnas_preprocess(C_in: int, C_out: int, stride: int) -> BinaryUnit:
    """Kim et al.'s preprocessing: binary 1x1 unit, or 3x3 stride 2 after a reduction."""
    opts = family_defaults("xnor").with_overrides({"activation": "relu"}, "bnas preprocess")
    if stride == 1:
        return BinaryUnit(C_in, C_out, 1, opts, kernel=1)
    unit = BinaryUnit(C_in, C_out, 2, opts, kernel=3)
    unit.bn = nn.BatchNorm2d(C_in, affine=False)  # their reduction preprocess: affine=False
    return unit


def preprocess(C_in: int, C_out: int, stride: int, kind: str) -> nn.Module:
    """Adapt a cell input: 1x1 conv-BN, or a factorized reduce when ``stride`` is 2."""
    if kind == "float":
        return float_factorized_reduce(C_in, C_out) if stride == 2 else float_conv_bn(C_in, C_out)
    if kind == "bnas":
        return bnas_preprocess(C_in, C_out, stride)
    opts = family_defaults(kind).with_overrides({"reduce": "factorized"}, f"{kind} preprocess")
    return BinaryUnit(C_in, C_out, stride, opts, kernel=1)


class ReductionShortcut(nn.Module):
    """BNAS's shortcut around a reduction cell: BN -> float 2x2 stride-2 conv (with bias).

    An odd input is zero-padded by one pixel first, so it gives ceil(H / 2) like the cell.
    """

    def __init__(self, C_in: int, C_out: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(C_in)
        self.conv = nn.Conv2d(C_in, C_out, 2, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(x)
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2))
        return self.conv(x)


def cell_shortcut(C_prev: int, C_out: int, reduction: bool) -> nn.Module:
    """The shortcut of ``cell_shortcut: identity``: identity in normal cells (a float 1x1
    conv + BN where a genotype's concat changes the width), BNAS's 2x2 conv in reductions."""
    if reduction:
        return ReductionShortcut(C_prev, C_out)
    return nn.Identity() if C_prev == C_out else float_conv_bn(C_prev, C_out)


class AuxiliaryHead(nn.Module):
    """DARTS's auxiliary classifier (CIFAR: on 8x8 maps; ImageNet: on 7x7 maps, and as in
    DARTS's ImageNet head without the BN after the 768-channel conv)."""

    training_only = True  # not part of the deployed network: the cost model skips it

    def __init__(self, C: int, num_classes: int, imagenet: bool) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(),
            nn.AvgPool2d(5, stride=2 if imagenet else 3, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Conv2d(128, 768, 2, bias=False),
            *([] if imagenet else [nn.BatchNorm2d(768)]),
            nn.ReLU(),
            # 1x1 already on the maps DARTS made it for (a no-op there); other sizes work too
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryLoss(nn.Module):
    """``criterion(logits, ...) + weight * aux_criterion(auxiliary logits, target)`` (DARTS:
    weight 0.4, cross-entropy). Extra arguments (a teacher's logits) go to ``criterion``.

    The network leaves its auxiliary logits in ``auxiliary_logits`` during a training
    forward; the loss takes them (the attribute is cleared: a tensor of the autograd graph
    left on the module would make it impossible to deep-copy and keep a captured CUDA
    graph's memory alive). Evaluation (the model in eval mode) gets the plain criterion.
    """

    def __init__(
        self, criterion: nn.Module, model: nn.Module, weight: float, aux_criterion: nn.Module
    ) -> None:
        super().__init__()
        self.criterion, self.aux_criterion, self.weight = criterion, aux_criterion, weight
        self._model = [model]  # not a submodule: the loss owns no parameters

    def forward(self, logits: Tensor, target: Tensor, *rest: Tensor) -> Tensor:
        loss = self.criterion(logits, target, *rest)
        model = self._model[0]
        aux = getattr(model, "auxiliary_logits", None)
        if aux is not None:
            model.auxiliary_logits = None
        if model.training and aux is not None:
            loss = loss + self.weight * self.aux_criterion(aux.float(), target)
        return loss


def with_auxiliary_loss(
    criterion: nn.Module, model: nn.Module, weight: float, aux_criterion: nn.Module | None = None
) -> nn.Module:
    """The training criterion of ``model``: wrapped when it has an auxiliary head.

    ``aux_criterion``: the auxiliary head's loss (default: ``criterion``). At ``weight`` 0
    the head is switched off (``model.auxiliary_enabled``): it does not run at all.
    """
    if getattr(model, "auxiliary", None) is None:
        return criterion
    model.auxiliary_enabled = weight != 0
    if weight == 0:
        return criterion
    return AuxiliaryLoss(criterion, model, weight, aux_criterion or criterion)
