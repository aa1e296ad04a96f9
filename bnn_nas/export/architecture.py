"""What an export file says about the network and its input.

The network is described by :class:`bnn_nas.space.architecture.Architecture` (the one
description `bnn-nas train` records and builds from; re-exported here); the input by
:class:`InputSpec`: the normalisation, the image size and the class names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bnn_nas.space.architecture import Architecture, space_to_dict

__all__ = ["Architecture", "InputSpec", "space_to_dict"]


@dataclass(frozen=True)
class InputSpec:
    """How raw images become the network's input, and what its outputs mean."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    height: int | None = None  # the training images' size, when known
    width: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "height": self.height,
            "width": self.width,
            "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        return cls(
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            classes=tuple(str(c) for c in data["classes"]),
            height=None if data.get("height") is None else int(data["height"]),
            width=None if data.get("width") is None else int(data["width"]),
        )
