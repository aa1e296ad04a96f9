"""Datasets as uint8 arrays (CIFAR-10, image folders, the packaged sample), seeded
class-balanced splits and a device-resident loader with batched augmentation.

``load_dataset(DataSettings(...))`` is the one entry point a config needs; the loaders
behind it are importable on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bnn_nas.data.arrays import Dataset, ImageSet
from bnn_nas.data.cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_MD5,
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR10_URL,
    download_cifar10,
    load_cifar10,
)
from bnn_nas.data.image_folder import load_image_folder
from bnn_nas.data.loader import (
    DeviceLoader,
    apply_crop_flip,
    crop_flip_params,
    normalize,
    random_crop_flip,
)
from bnn_nas.data.sample import load_cifar10_sample
from bnn_nas.data.splits import class_balanced_split
from bnn_nas.errors import DataError

DATASET_NAMES = ("cifar10", "image_folder", "cifar10_sample")


@dataclass(frozen=True)
class DataSettings:
    """Which dataset to load and from where; validated on construction.

    ``root`` is required for ``cifar10`` and ``image_folder``; ``download`` applies to
    ``cifar10`` only and ``cache_dir`` to ``image_folder`` only.
    """

    name: str
    root: str | None = None
    download: bool = False
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.name not in DATASET_NAMES:
            raise DataError(
                f"unknown dataset {self.name!r}; valid names: {', '.join(DATASET_NAMES)}"
            )
        for key in ("root", "cache_dir"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise DataError(f"data.{key} must be a non-empty path string, got {value!r}")
        if not isinstance(self.download, bool):
            raise DataError(f"data.download must be true or false, got {self.download!r}")
        if self.root is None and self.name in ("cifar10", "image_folder"):
            raise DataError(f"dataset {self.name!r} needs data.root: the folder holding the data")
        if self.download and self.name != "cifar10":
            raise DataError(f"data.download applies to cifar10 only, not {self.name!r}; drop it")
        if self.cache_dir is not None and self.name != "image_folder":
            raise DataError(f"data.cache_dir applies to image_folder only, not {self.name!r}")


def load_dataset(settings: DataSettings) -> Dataset:
    """Load the dataset ``settings`` names."""
    if not isinstance(settings, DataSettings):
        raise DataError(f"load_dataset takes DataSettings, got {type(settings).__name__}")
    if settings.name == "cifar10_sample":
        return load_cifar10_sample()
    assert settings.root is not None  # guaranteed by DataSettings
    root = Path(settings.root).expanduser()
    if settings.name == "cifar10":
        return load_cifar10(root, download=settings.download)
    cache_dir = None if settings.cache_dir is None else Path(settings.cache_dir).expanduser()
    return load_image_folder(root, cache_dir)


__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_URL",
    "DATASET_NAMES",
    "DataSettings",
    "Dataset",
    "DeviceLoader",
    "ImageSet",
    "apply_crop_flip",
    "class_balanced_split",
    "crop_flip_params",
    "download_cifar10",
    "load_cifar10",
    "load_cifar10_sample",
    "load_dataset",
    "load_image_folder",
    "normalize",
    "random_crop_flip",
]
