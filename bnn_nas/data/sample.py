"""The packaged CIFAR-10 sample: real images, small enough to ship, for CPU quickstarts
and tests that need actual pictures rather than noise.

``cifar10_sample.npz`` holds 500 train and 100 test images per class, picked with a
seeded generator from the CIFAR-10 JPEG rendition (see ``make_sample``). The JPEG
bytes are stored as they were in that archive, so pixels match the full image folder
exactly; they are decoded here on every load (a fraction of a second).
"""

from __future__ import annotations

import zipfile
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from bnn_nas.data.arrays import Dataset, ImageSet
from bnn_nas.errors import DataError

SAMPLE_FILE = "cifar10_sample.npz"


def load_cifar10_sample(path: Path | str | None = None) -> Dataset:
    """Decode the packaged sample (or a file ``make_sample`` wrote at ``path``) into a
    :class:`Dataset` named ``cifar10_sample``."""
    arrays = _read_arrays(path)
    blob, offsets = arrays["blob"], arrays["offsets"]
    classes = tuple(str(c) for c in arrays["classes"])
    shape = tuple(int(v) for v in arrays["image_shape"])
    images = _decode(blob, offsets, shape, str(path or SAMPLE_FILE))
    labels = arrays["labels"].astype(np.int64)
    is_test = arrays["is_test"].astype(bool)
    return Dataset(
        train=ImageSet(images[~is_test], labels[~is_test], classes),
        test=ImageSet(images[is_test], labels[is_test], classes),
        name="cifar10_sample",
    )


def _read_arrays(path: Path | str | None) -> dict[str, np.ndarray]:
    keys = ("classes", "blob", "offsets", "labels", "is_test", "image_shape")
    try:
        with _open(path) as f, np.load(f, allow_pickle=False) as z:
            arrays = {key: z[key] for key in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        text = " ".join(str(exc).split())
        raise DataError(
            f"sample file {path or SAMPLE_FILE} is missing or corrupt ({text}); reinstall "
            "bnn-nas or regenerate it with python -m bnn_nas.data.make_sample"
        ) from exc
    n = len(arrays["labels"])
    if (
        len(arrays["offsets"]) != n + 1
        or len(arrays["is_test"]) != n
        or arrays["image_shape"].shape != (3,)
        or arrays["image_shape"][2] != 3
    ):
        raise DataError(f"sample file {path or SAMPLE_FILE} is inconsistent; regenerate it")
    return arrays


def _open(path: Path | str | None) -> BinaryIO:
    if path is None:  # importlib.resources also finds it inside a zipped install
        return resources.files("bnn_nas.data").joinpath(SAMPLE_FILE).open("rb")
    return Path(path).expanduser().open("rb")


def decode_jpeg(data: bytes, height: int, width: int) -> np.ndarray:
    """Decode a baseline JPEG of known size straight through libjpeg, ``uint8 [H, W, 3]``.

    ``Image.open`` parses the JPEG markers in Python first, which costs more than the
    decode for 32x32 images; the sample's sizes are known (and checked when it is built).
    """
    return np.asarray(Image.frombytes("RGB", (width, height), data, "jpeg", "RGB", ""))


def _decode(blob: np.ndarray, offsets: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    data = blob.tobytes()
    height, width, _ = shape
    out = np.empty((len(offsets) - 1, *shape), dtype=np.uint8)
    bounds = offsets.tolist()
    try:
        for i in range(len(out)):
            out[i] = decode_jpeg(data[bounds[i] : bounds[i + 1]], height, width)
    except (OSError, ValueError) as exc:
        text = " ".join(str(exc).split())
        raise DataError(
            f"sample file {name} has a corrupt image ({text}); reinstall bnn-nas "
            "or regenerate it with python -m bnn_nas.data.make_sample"
        ) from exc
    return out
