"""Hand-designed binary baselines: stem -> blocks of ``{family}_*`` primitives -> pool -> FC.

Each baseline has a CIFAR layout (3x3 float stem, no max-pool; for inputs under
``IMAGENET_MIN_SIZE`` px) and ResNet-18/34 also an ImageNet layout (Bi-Real Net, Liu et al.
2018: float 7x7 stride-2 stem + BN + ReLU + 3x3 max-pool, stride-2 shortcuts as 2x2
avg-pool + float 1x1 conv + BN, i.e. ``downsample: avgpool_conv`` unless options say
otherwise). The input size picks the layout; a size no layout is made for is an error.
Counted at 224 px with 1,000 classes: ResNet-18 1.64e8 OPs, ResNet-34 1.93e8 (Bi-Real's
Table 4: 1.63e8 and 1.93e8), tests/test_cost.py.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bnn_nas.errors import ConfigError
from bnn_nas.extensions import FAMILIES
from bnn_nas.primitives import build_primitive
from bnn_nas.space.cell_parts import IMAGENET_MIN_SIZE

Stages = list[tuple[int, int, int]]  # (channels, blocks, first stride)


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


def _imagenet_stem(C_in: int, C_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(C_in, C_out, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(C_out),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


def _resnet(blocks: tuple[int, ...]) -> Stages:
    return [(c, n, 1 if c == 64 else 2) for c, n in zip((64, 128, 256, 512), blocks, strict=True)]


# name -> (block suffix, stem channels, stages): the CIFAR layouts
BASELINES: dict[str, tuple[str, int, Stages]] = {
    # ResNet-18, CIFAR layout (3x3 stem, no max-pool): 4 stages x 2 basic blocks
    "resnet18": ("resnet_block", 64, _resnet((2, 2, 2, 2))),
    # ResNet-34, CIFAR layout: 3-4-6-3 basic blocks
    "resnet34": ("resnet_block", 64, _resnet((3, 4, 6, 3))),
    # ResNet-20 (He et al. 2016, CIFAR): 3 stages x 3 basic blocks, 16-32-64 channels
    "resnet20": ("resnet_block", 16, [(16, 3, 1), (32, 3, 2), (64, 3, 2)]),
    # VGG-small (LQ-Nets / XNOR-Net CIFAR): 128-128P-256-256P-512-512P, stem conv in float
    "vgg_small": (
        "vgg_block",
        128,
        [(128, 1, 2), (256, 1, 1), (256, 1, 2), (512, 1, 1), (512, 1, 2)],
    ),
}
# the ImageNet layouts (Bi-Real Net): same blocks behind the 7x7 stem and max-pool
IMAGENET_BASELINES: dict[str, tuple[str, int, Stages]] = {
    "resnet18": BASELINES["resnet18"],
    "resnet34": BASELINES["resnet34"],
}
IMAGENET_OPTIONS = {"downsample": "avgpool_conv"}  # Bi-Real's stride-2 shortcut


def baseline_layout(name: str, image_size: int | None) -> str:
    """``cifar`` or ``imagenet``: the layout of ``name`` made for ``image_size`` px inputs."""
    if image_size is None or image_size < IMAGENET_MIN_SIZE:
        return "cifar"
    if name not in IMAGENET_BASELINES:
        raise ConfigError(
            f"model {name} is laid out for CIFAR-size images (< {IMAGENET_MIN_SIZE} px), not "
            f"{image_size} px; ImageNet layouts: {', '.join(IMAGENET_BASELINES)}"
        )
    return "imagenet"


def build_baseline(
    name: str,
    family: str,
    num_classes: int,
    in_channels: int = 3,
    image_size: int | None = None,
    **options: object,
) -> PlainNetwork:
    """A hand-designed binary network from the ``{family}_*`` primitives, for comparison.

    ``image_size`` picks the layout (None: the CIFAR one).
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(BASELINES)}")
    if family not in FAMILIES.names():
        raise ConfigError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES.names())}")
    imagenet = baseline_layout(name, image_size) == "imagenet"
    suffix, stem_channels, stages = (IMAGENET_BASELINES if imagenet else BASELINES)[name]
    if imagenet:
        options = {**IMAGENET_OPTIONS, **options}
    blocks: list[nn.Module] = []
    C_prev = stem_channels
    for channels, count, first_stride in stages:
        for i in range(count):
            stride = first_stride if i == 0 else 1
            blocks.append(
                build_primitive(f"{family}_{suffix}", C_prev, channels, stride, **options)
            )
            C_prev = channels
    stem = (_imagenet_stem if imagenet else _float_stem)(in_channels, stem_channels)
    return PlainNetwork(stem, blocks, C_prev, num_classes)
