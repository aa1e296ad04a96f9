"""In-memory image sets: the one shape every loader returns and every consumer reads.

Images stay uint8 NHWC in host memory (the layout files decode to); the device loader
turns them into NCHW tensors once. Keeping one small value type here means CIFAR-10
pickles, image folders and the packaged sample are interchangeable downstream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bnn_nas.errors import DataError


@dataclass(frozen=True, eq=False, repr=False)
class ImageSet:
    """Images ``uint8 [N, H, W, 3]`` (NHWC), labels ``int64 [N]`` and the class names.

    ``labels[i]`` indexes ``classes``. Arrays are validated on construction so a
    malformed set fails where it is made, not deep inside training.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(
                f"images must be a uint8 array [N, H, W, C], got {_describe(images)}; "
                "decode images to uint8 NHWC before building an ImageSet"
            )
        if images.shape[3] not in (1, 3):
            raise DataError(
                f"images must have 1 or 3 channels last (NHWC), got shape {images.shape}; "
                "transpose CHW images to HWC"
            )
        if not isinstance(labels, np.ndarray) or labels.ndim != 1:
            raise DataError(f"labels must be a 1-D array, got {_describe(labels)}; pass int64 [N]")
        if labels.dtype != np.int64:
            if not np.issubdtype(labels.dtype, np.integer):
                raise DataError(f"labels must be integers, got dtype {labels.dtype}; pass int64")
            object.__setattr__(self, "labels", labels.astype(np.int64))
        if len(labels) != len(images):
            raise DataError(
                f"{len(images)} images but {len(labels)} labels; pass one label per image"
            )
        classes = tuple(self.classes)
        if not classes or not all(isinstance(c, str) for c in classes):
            raise DataError(f"classes must be a non-empty tuple of names, got {self.classes!r}")
        if len(set(classes)) != len(classes):
            raise DataError(f"class names must be unique, got {classes!r}")
        object.__setattr__(self, "classes", classes)
        if len(labels) and (labels.min() < 0 or labels.max() >= len(classes)):
            raise DataError(
                f"labels must lie in [0, {len(classes) - 1}] for {len(classes)} classes, got "
                f"[{labels.min()}, {labels.max()}]; fix the labels or the class list"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"ImageSet(n={len(self)}, image_shape={self.image_shape}, classes={self.classes})"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """The examples at ``indices`` (in that order), e.g. one side of a split."""
        idx = np.asarray(indices)
        if idx.dtype == bool or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise DataError(f"subset indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DataError(
                f"subset index out of range for a set of {len(self)} examples; "
                "take indices from this set's own split"
            )
        return ImageSet(self.images[idx], self.labels[idx], self.classes)

    def class_counts(self) -> np.ndarray:
        """Examples per class, ``int64 [len(classes)]``."""
        return np.bincount(self.labels, minlength=len(self.classes)).astype(np.int64)

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the pixels scaled to [0, 1], for normalisation."""
        if not len(self):
            raise DataError("cannot compute channel statistics of an empty image set")
        flat = self.images.reshape(-1, self.images.shape[3])
        mean = np.zeros(flat.shape[1])
        sq = np.zeros(flat.shape[1])
        step = 1 << 20  # bounded float64 temporaries on large sets
        for start in range(0, len(flat), step):
            block = flat[start : start + step].astype(np.float64) / 255.0
            mean += block.sum(0)
            sq += np.square(block).sum(0)
        mean /= len(flat)
        std = np.sqrt(np.maximum(sq / len(flat) - np.square(mean), 0.0))
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A named train/test pair with shared classes; validation splits come from ``train``."""

    train: ImageSet
    test: ImageSet
    name: str

    def __post_init__(self) -> None:
        if self.train.classes != self.test.classes:
            raise DataError(
                f"dataset {self.name!r}: train classes {self.train.classes} differ from test "
                f"classes {self.test.classes}; use the same class folders in both splits"
            )

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, train={self.train!r}, test={self.test!r})"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__
