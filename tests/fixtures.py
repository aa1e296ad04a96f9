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


# A 3-cell, 8-channel space of two ops: trains a step on the CPU in well under a second
TWO_OP_SPACE = {"steps": 2, "ops": ["xnor_conv_3x3", "skip_connect"],
              "network": {"cells": 3, "channels": 8, "stem_multiplier": 2}}  # fmt: skip


def tiny_space():
    """:data:`TWO_OP_SPACE` as a search space."""
    from bnn_nas.space.search_space import search_space_from_dict

    return search_space_from_dict(TWO_OP_SPACE, "test")


def tiny_search_data(train: int = 40, valid: int = 20):
    """The packaged sample's first ``train`` training images to train on and the next
    ``valid`` to score on, as a search's trials see them."""
    from bnn_nas.data import load_cifar10_sample
    from bnn_nas.search.evaluator import SearchData

    sample = load_cifar10_sample().train
    small, held_out = sample.subset(range(train)), sample.subset(range(train, train + valid))
    return SearchData(train=small, valid=held_out, stats=small.channel_stats(), num_classes=10,
                      image_shape=(3, 32, 32))  # fmt: skip


def trial_loaders(settings):
    """One search trial of the tiny space (the Evaluator, as every executor runs it) with
    ``settings``: the DeviceLoaders it made (search-train first) and its result."""
    import random

    import pytest
    import torch

    from bnn_nas.search.evaluator import Evaluator
    from bnn_nas.train import trainer

    space, data = tiny_space(), tiny_search_data()
    made = []
    real = trainer.DeviceLoader
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "DeviceLoader", lambda *a, **k: made.append(real(*a, **k))
                      or made[-1])  # fmt: skip
        result = Evaluator(space, data, settings, torch.device("cpu"), seed=0)(
            space.random_sample(random.Random(1)))
    return made, result


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    """The rows of a run directory's metrics.csv, one per epoch."""
    import csv

    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def kill_after_epochs(command: list[str], run_dir: Path, epochs: int, env: dict) -> int:
    """Start ``command`` (a training into ``run_dir``), SIGKILL it once metrics.csv holds
    ``epochs`` rows (or after 120 s), and return its exit status."""
    import signal

    return signal_after_epochs(command, run_dir, epochs, env, signal.SIGKILL)[0]


def signal_after_epochs(
    command: list[str], run_dir: Path, epochs: int, env: dict, sig: int
) -> tuple[int, str]:
    """Start ``command`` (a training into ``run_dir``), send it ``sig`` once metrics.csv
    holds ``epochs`` rows (or after 120 s): its exit status and its stderr."""
    import subprocess
    import tempfile
    import time

    with tempfile.TemporaryFile("w+") as stderr:  # a file: a pipe left unread could fill
        proc = subprocess.Popen(command, env=env, stderr=stderr, text=True)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and not (
                (run_dir / "metrics.csv").exists() and len(metrics_rows(run_dir)) >= epochs
            ):
                time.sleep(0.02)
            proc.send_signal(sig)
            code = proc.wait(timeout=120)
        finally:
            proc.kill()  # a failing test leaves no training running
        stderr.seek(0)
        return code, stderr.read()
