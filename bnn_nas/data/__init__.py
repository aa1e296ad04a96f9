"""Datasets as uint8 arrays (CIFAR-10, image folders, the packaged sample), seeded
class-balanced splits and a device-resident loader with batched augmentation.

``load_dataset(DataSettings(...))`` is the one entry point a config needs; the loaders
behind it are importable on their own. Datasets are registered by name
(``@register_dataset("name", settings=...)`` on ``load(settings) -> Dataset``); a plugin
dataset is one such function.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    apply_cutout,
    crop_flip_params,
    cutout_mask,
    cutout_params,
    normalize,
    random_crop_flip,
    random_cutout,
)
from bnn_nas.data.mix import (
    MIX_KINDS,
    MixedTargets,
    apply_cutmix,
    apply_mixup,
    cutmix_box,
    mix_params,
    random_mix,
)
from bnn_nas.data.sample import load_cifar10_sample
from bnn_nas.data.splits import class_balanced_split
from bnn_nas.errors import DataError
from bnn_nas.extensions import DATASETS, register_dataset


@dataclass(frozen=True)
class Cifar10Settings:
    """``data`` settings of ``cifar10``: the canonical cifar-10-batches-py folder."""

    root: str | None = None
    download: bool = False

    def __post_init__(self) -> None:
        if self.root is None:
            raise DataError("dataset 'cifar10' needs data.root: the folder holding the data")


@dataclass(frozen=True)
class ImageFolderSettings:
    """``data`` settings of ``image_folder``: train/<class>/*, test/<class>/* images."""

    root: str | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.root is None:
            raise DataError(
                "dataset 'image_folder' needs data.root: the folder holding the data"
            )


@register_dataset("cifar10", settings=Cifar10Settings)
def _cifar10(settings: Cifar10Settings) -> Dataset:
    """CIFAR-10 in its canonical format (optionally downloaded)."""
    assert settings.root is not None  # checked by Cifar10Settings
    return load_cifar10(Path(settings.root).expanduser(), download=settings.download)


@register_dataset("image_folder", settings=ImageFolderSettings)
def _image_folder(settings: ImageFolderSettings) -> Dataset:
    """Images in class folders (train/ and test/), decoded once into a cache."""
    assert settings.root is not None  # checked by ImageFolderSettings
    cache_dir = None if settings.cache_dir is None else Path(settings.cache_dir).expanduser()
    return load_image_folder(Path(settings.root).expanduser(), cache_dir)


@register_dataset("cifar10_sample")
def _cifar10_sample(settings: None) -> Dataset:
    """The CIFAR-10 sample packaged with bnn-nas (5,000 train / 1,000 test images)."""
    return load_cifar10_sample()


_COMMON_DEFAULTS = {"root": None, "download": False, "cache_dir": None}


@dataclass(frozen=True)
class DataSettings:
    """Which dataset to load and from where; validated on construction.

    ``name`` is a registered dataset (``bnn_nas.extensions.DATASETS``); ``root``,
    ``download`` and ``cache_dir`` apply to the datasets whose settings declare them
    (``root``: ``cifar10`` and ``image_folder``, ``download``: ``cifar10``, ``cache_dir``:
    ``image_folder``); ``extra`` holds a plugin dataset's own settings.
    """

    name: str
    root: str | None = None
    download: bool = False
    cache_dir: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        entry = DATASETS.get(self.name)
        for key in ("root", "cache_dir"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise DataError(f"data.{key} must be a non-empty path string, got {value!r}")
        if not isinstance(self.download, bool):
            raise DataError(f"data.download must be true or false, got {self.download!r}")
        own = entry.setting_names()
        for key, default in _COMMON_DEFAULTS.items():
            if getattr(self, key) != default and key not in own:
                users = [e.name for e in DATASETS.list() if key in e.setting_names()]
                raise DataError(
                    f"data.{key} applies to {', '.join(users)} only, not {self.name!r}; drop it"
                )
        self.entry_settings()  # the dataset's own checks

    def entry_settings(self) -> Any:
        """The settings object the dataset's registry entry declared (None if none)."""
        entry = DATASETS.get(self.name)
        if entry.settings is None:
            return None
        values = {k: getattr(self, k) for k in _COMMON_DEFAULTS if k in entry.setting_names()}
        values.update({k: v for k, v in self.extra.items() if k in entry.setting_names()})
        return entry.settings(**values)


def data_settings(data: Any) -> DataSettings:
    """The :class:`DataSettings` of a config's ``data`` section."""
    return DataSettings(
        name=data.name, root=data.root, download=data.download, cache_dir=data.cache_dir,
        extra=dict(getattr(data, "extra", {}) or {}),
    )  # fmt: skip


def load_dataset(settings: DataSettings) -> Dataset:
    """Load the dataset ``settings`` names, through its registry entry."""
    if not isinstance(settings, DataSettings):
        raise DataError(f"load_dataset takes DataSettings, got {type(settings).__name__}")
    return DATASETS.get(settings.name).obj(settings.entry_settings())


__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_URL",
    "MIX_KINDS",
    "Cifar10Settings",
    "DataSettings",
    "Dataset",
    "DeviceLoader",
    "ImageFolderSettings",
    "ImageSet",
    "MixedTargets",
    "apply_crop_flip",
    "apply_cutmix",
    "apply_cutout",
    "apply_mixup",
    "class_balanced_split",
    "crop_flip_params",
    "cutmix_box",
    "cutout_mask",
    "cutout_params",
    "data_settings",
    "download_cifar10",
    "load_cifar10",
    "load_cifar10_sample",
    "load_dataset",
    "load_image_folder",
    "mix_params",
    "normalize",
    "random_crop_flip",
    "random_cutout",
    "random_mix",
]
