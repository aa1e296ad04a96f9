"""The built-in baseline models, as registry entries.

``model.type`` names a baseline (``bnn_nas.extensions.BASELINES``); the table it comes
from stays in ``space/plain_networks.py`` (``BASELINES``). ``model.family`` names a
primitive family (``bnn_nas.extensions.FAMILIES``, registered in ``primitives/options.py``).
A plugin registers another baseline with ``@register_baseline("name")`` on
``build(family, num_classes, in_channels=3, image_size=None, **options) -> nn.Module``
(``image_size``: the input's height when known; it may pick the layout).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bnn_nas.extensions import BASELINES, register_baseline
from bnn_nas.space import plain_networks

_DOCS = {
    "resnet18": "binary ResNet-18 (CIFAR: 3x3 stem, no max-pool; ImageNet from 128 px)",
    "resnet34": "binary ResNet-34 (CIFAR: 3x3 stem, no max-pool; ImageNet from 128 px)",
    "resnet20": "binary ResNet-20 (He et al. 2016, CIFAR): 3 stages x 3 basic blocks",
    "vgg_small": "binary VGG-small (LQ-Nets / XNOR-Net CIFAR)",
}


def _builder(name: str) -> Callable[..., nn.Module]:
    def build(
        family: str,
        num_classes: int,
        in_channels: int = 3,
        image_size: int | None = None,
        **options: object,
    ) -> nn.Module:
        return plain_networks.build_baseline(
            name, family, num_classes, in_channels, image_size=image_size, **options
        )

    build.__doc__ = _DOCS.get(name, f"the {name} baseline")
    return build


for _name in plain_networks.BASELINES:
    if _name not in BASELINES:
        register_baseline(_name)(_builder(_name))
