"""``bnn-nas infer``: images in, predictions (and accuracy, when labels are known) out."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnn_nas.data import DataSettings, load_dataset
from bnn_nas.data.image_folder import IMAGE_EXTENSIONS, decode_images
from bnn_nas.errors import DataError
from bnn_nas.export.loader import PackedNetwork


@dataclass(frozen=True)
class Images:
    """Images to classify (uint8 NHWC), their labels when known, and a name for each."""

    images: np.ndarray
    labels: np.ndarray | None
    names: tuple[str, ...]
    source: str


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )  # fmt: skip


def images_from_folder(folder: Path, classes: tuple[str, ...]) -> Images:
    """Class subfolders named like the model's classes (labelled), or loose image files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist; pass --images DIR")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        files = _image_files(folder)
        if not files:
            raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        return Images(decode_images(files), None, tuple(p.name for p in files), str(folder))
    paths, labels = [], []
    for sub in subdirs:
        if sub.name not in classes:
            raise DataError(
                f"folder {sub} is not one of the model's classes ({', '.join(classes)}); "
                "pass a folder of class subfolders, or of images"
            )
        files = _image_files(sub)
        paths += files
        labels += [classes.index(sub.name)] * len(files)
    if not paths:
        raise DataError(f"the class folders of {folder} hold no images")
    names = tuple(str(p.relative_to(folder)) for p in paths)
    return Images(decode_images(paths), np.asarray(labels, np.int64), names, str(folder))


def images_from_dataset(name: str, root: str | None, split: str) -> Images:
    """One split of a data set bnn-nas knows (``cifar10``, ``image_folder``, the sample)."""
    dataset = load_dataset(DataSettings(name=name, root=root))
    part = dataset.test if split == "test" else dataset.train
    names = tuple(f"{split}/{i}" for i in range(len(part)))
    return Images(part.images, part.labels, names, f"{split} split of {dataset.name}")


@dataclass(frozen=True)
class InferenceResult:
    """Predictions, logits, and the accuracy when labels were given."""

    predictions: np.ndarray
    logits: np.ndarray
    accuracy: float | None
    seconds: float

    @property
    def ms_per_image(self) -> float:
        return 1e3 * self.seconds / max(len(self.predictions), 1)


def run_inference(network: PackedNetwork, images: Images, batch_size: int) -> InferenceResult:
    """Classify every image; the time covers normalisation and the network, not decoding."""
    tic = time.perf_counter()
    logits = network.predict(images.images, batch_size)
    seconds = time.perf_counter() - tic
    predictions = logits.argmax(1)
    accuracy = None
    if images.labels is not None and len(images.labels):
        accuracy = float((predictions == images.labels).mean())
    return InferenceResult(predictions, logits, accuracy, seconds)
