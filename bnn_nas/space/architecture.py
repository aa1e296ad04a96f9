"""The description of a network: what is built, from which genotype, search space and
model settings. One builder (:meth:`Architecture.build`) serves every place that makes
"the network of a run": `bnn-nas train` (the student, and a distillation's teacher),
export to ``.bnn`` and ONNX, the ``.bnn`` loader and `bnn-nas profile`.

The network is described, never pickled: the model settings, the search space (inlined,
so the description does not depend on a YAML file next to it), the genotype in DARTS text
(parsed without eval), the class count and the input size. `bnn-nas train` records it
in its run directory (``network.yaml``); an export writes it into the file's header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bnn_nas.config import ModelConfig, config_from_dict
from bnn_nas.errors import ConfigError, PluginError
from bnn_nas.space.genotype import Genotype, parse_genotype
from bnn_nas.space.network import build_model
from bnn_nas.space.search_space import (
    NetworkLayout,
    SearchSpace,
    load_search_space,
    search_space_from_dict,
)

if TYPE_CHECKING:
    from torch import nn

    from bnn_nas.config import Config


def space_to_dict(space: SearchSpace) -> dict[str, Any]:
    """The mapping form of a search space (what ``search_space_from_dict`` reads)."""
    layout = space.network
    data: dict[str, Any] = {
        "name": space.name,
        "normal_ops": [{"name": op.name, **op.options_dict} for op in space.normal_ops],
        "reduce_ops": [{"name": op.name, **op.options_dict} for op in space.reduce_ops],
        "steps": space.steps,
        "distinct_inputs": space.distinct_inputs,
        "network": {
            "cells": layout.cells,
            "channels": layout.channels,
            "stem_multiplier": layout.stem_multiplier,
            "reduction_cells": (
                None if layout.reduction_cells is None else list(layout.reduction_cells)
            ),
            "preprocess": layout.preprocess,
        },
    }
    # settings added later are written only when set, so older files stay as they were
    defaults = NetworkLayout()
    for key in ("stem", "cell_shortcut", "auxiliary_head"):
        if getattr(layout, key) != getattr(defaults, key):
            data["network"][key] = getattr(layout, key)
    if space.reduce_skip != "float":
        data["reduce_skip"] = space.reduce_skip
    return data


def _model_to_dict(model: ModelConfig) -> dict[str, Any]:
    return {
        "type": model.type,
        "family": model.family,
        "options": dict(model.options),
        "cells": model.cells,
        "channels": model.channels,
    }


@dataclass(frozen=True)
class Architecture:
    """A buildable network: a genotype's cells, or a hand-designed baseline."""

    model: ModelConfig
    num_classes: int
    space: SearchSpace | None = None
    genotype: Genotype | None = None
    # the input's height where known: it picks a baseline's layout (ImageNet from 128 px)
    # and is checked against a cell network's stem; None: the CIFAR layout, no check
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.genotype is not None and self.space is None:
            raise ConfigError("a cell network needs its search space to be rebuilt")
        if self.genotype is None and self.model.type == "cells":
            raise ConfigError("no genotype given; pass --genotype FILE_OR_TEXT or --model NAME")

    @classmethod
    def from_config(
        cls,
        config: Config,
        genotype: Genotype | None,
        num_classes: int,
        image_size: int | None = None,
    ) -> Architecture:
        """The network `bnn-nas train` builds from ``config``: ``genotype`` in the config's
        search space at the final size (``model.cells`` / ``model.channels``), or the
        config's baseline (``genotype`` None)."""
        space = load_search_space(config.search_space)
        return cls(
            config.model, num_classes, space if genotype is not None else None, genotype,
            image_size,
        )  # fmt: skip

    def build(self, *, training: bool = False) -> nn.Module:
        """A freshly initialised network of this architecture: in eval mode, or as
        constructed (train mode) with ``training``. Its initial weights come from the
        global RNGs: seed them for a training (:func:`bnn_nas.train.seeding.seeded_build`)."""
        net = build_model(
            self.model, self.space, self.num_classes, self.genotype, image_size=self.image_size
        )  # a baseline needs no space: build_model does not read it then
        return net if training else net.eval()

    def to_dict(self) -> dict[str, Any]:
        data = {
            "model": _model_to_dict(self.model),
            "num_classes": self.num_classes,
            "search_space": None if self.space is None else space_to_dict(self.space),
            "genotype": None if self.genotype is None else str(self.genotype),
        }
        if self.image_size is not None:  # written only when set: older files stay the same
            data["image_size"] = self.image_size
        plugins = self.plugins()
        if plugins:  # written only when a plugin's op is used: older files stay the same
            data["plugins"] = plugins
        return data

    def plugins(self) -> dict[str, str]:
        """Primitive name -> the plugin that registered it, for the space's ops that come
        from plugins (a reader without that plugin is told which one to load)."""
        from bnn_nas.primitives import REGISTRY
        from bnn_nas.primitives.plugins import plugin_providing

        if self.space is None:
            return {}
        out = {}
        for op in (*self.space.normal_ops, *self.space.reduce_ops):
            spec = REGISTRY.get(op.name)
            if spec.source != "builtin":
                out[op.name] = plugin_providing(spec.factory) or spec.source
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Architecture:
        """Rebuild the description; bad content is a ConfigError naming ``where``."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: the architecture must be a mapping")
        model = config_from_dict({"model": data.get("model", {})}, where).model
        num_classes = data.get("num_classes")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"{where}: num_classes must be a positive integer")
        space_data = data.get("search_space")
        _check_plugins(data.get("plugins"), where)
        space = None if space_data is None else search_space_from_dict(space_data, where)
        text = data.get("genotype")
        genotype = None if text is None else parse_genotype(str(text))
        image_size = data.get("image_size")
        if image_size is not None and (
            isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
        ):
            raise ConfigError(f"{where}: image_size must be a positive integer")
        return cls(
            model=model, num_classes=num_classes, space=space, genotype=genotype,
            image_size=image_size,
        )  # fmt: skip


def _check_plugins(plugins: Any, where: str) -> None:
    """A primitive of the file's network that no loaded plugin registers: one line naming
    the plugin to pass (its code is never loaded from the file's say-so)."""
    from bnn_nas.primitives import REGISTRY

    if not isinstance(plugins, Mapping):
        return
    for name, plugin in plugins.items():
        if str(name) in REGISTRY:
            continue
        name, plugin = _printable(name, 80), _printable(plugin, 200)
        if plugin.startswith("entry-point:"):
            fix = f"install the package whose entry point is {plugin.split(':', 1)[1]}"
        else:
            fix = f"pass --plugin {plugin}"
        raise PluginError(
            f"{where}: its network uses primitive {name} from plugin {plugin}, "
            f"which is not loaded; {fix}"
        )


def _printable(value: Any, limit: int) -> str:
    """``value`` from a file, fit for a one-line message: control characters (a newline,
    a terminal escape) shown escaped, at most ``limit`` characters."""
    text = str(value)[:limit]
    return text if text.isprintable() else ascii(text)[1:-1]
