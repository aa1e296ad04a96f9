"""The process-wide RNGs: one seed for Python's, NumPy's and torch's, and the lock that
keeps one trial's seeding from interleaving with another's weight initialisation."""

from __future__ import annotations

import random
import threading

import numpy as np
import torch

# Seeding and weight initialisation use the process-wide RNGs. Trials trained in threads
# (the streams executor) hold this lock from seeding to the end of model construction,
# so one trial's seeding cannot interleave with another's initialisation.
GLOBAL_RNG_LOCK = threading.RLock()


def seed_everything(seed: int) -> None:
    with GLOBAL_RNG_LOCK:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
