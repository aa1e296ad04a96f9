"""Small datasets and configs that tests build themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bnn_nas.data.cifar10 import CIFAR10_CLASSES


def make_image_folder(
    root: Path, train_per_class: int = 20, test_per_class: int = 6, size: int = 32
) -> Path:
    """A learnable 10-class image folder: each class has its own colour and noise
    (``size`` x ``size`` px)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(CIFAR10_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            base = np.array([(label * 25) % 256, (label * 70) % 256, (255 - label * 25) % 256])
            for i in range(count):
                pixels = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root


TINY_SPACE = """\
search_space:
  steps: 2
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3, bireal_conv_3x3_skip_connect]
  network: {cells: 3, channels: 8, stem_multiplier: 2}
"""


def write_config(path: Path, body: str) -> Path:
    path.write_text(TINY_SPACE + body)
    return path
