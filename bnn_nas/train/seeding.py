"""The process-wide RNGs: one seed for Python's, NumPy's and torch's, and
:func:`seeded_build`, which keeps one trial's seeding from interleaving with another's
weight initialisation."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

# Seeding and weight initialisation use the process-wide RNGs. Trials trained in threads
# (the streams executor) hold this lock from seeding to the end of model construction,
# so one trial's seeding cannot interleave with another's initialisation. Outside this
# module, take it through seeded_build.
GLOBAL_RNG_LOCK = threading.RLock()


def seed_everything(seed: int) -> None:
    with GLOBAL_RNG_LOCK:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)


def seeded_build(build: Callable[[], T], seed: int | None = None) -> T:
    """``build()`` with the process-wide RNGs to itself: seeded with ``seed`` first (None:
    drawn from as they stand, for a network whose initial weights do not matter, one
    that is only counted or is loaded afterwards), and no other thread's seeding or
    building in between."""
    with GLOBAL_RNG_LOCK:
        if seed is not None:
            seed_everything(seed)
        return build()
