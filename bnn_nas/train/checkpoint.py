"""Checkpoints written atomically and read back with clear errors.

A checkpoint holds everything an exact resume needs: model, optimiser and scheduler
state, every RNG state, the epoch reached and the metrics so far.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnn_nas.errors import CheckpointError
from bnn_nas.io import write_atomic

FORMAT = "bnn-nas-checkpoint"
VERSION = 1


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore every RNG; the states go back to the CPU first, because a checkpoint
    loaded with ``map_location="cuda"`` moves them to the GPU and torch takes only a
    CPU ByteTensor."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        # as many GPUs as both machines have: a run may resume on a smaller one
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a crash leaves the old file or the new one."""
    document = {"format": FORMAT, "version": VERSION, **payload}
    write_atomic(Path(path), lambda handle: torch.save(document, handle))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, or fail in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; check the run directory")
    try:
        # weights_only=False: our own file holds RNG states (numpy arrays, tuples);
        # the format tag below rejects foreign files before anything uses them.
        data = torch.load(path, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({reason[:120]}); delete it to "
            "restart from the previous one, or train without --resume"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a bnn-nas checkpoint; point at a run's checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {data.get('version')}, this bnn-nas "
            f"reads {VERSION}; use the bnn-nas version that wrote it"
        )
    return data
