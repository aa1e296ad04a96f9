"""Checkpoints written atomically and read back safely, with clear errors.

A checkpoint holds everything an exact resume needs: model, optimiser and scheduler
state, every RNG state, the epoch reached and the metrics so far.

Reading one runs no code: files are read with ``torch.load(weights_only=True)``, which
unpickles only tensors and plain containers, so RNG states are stored as tensors and
lists, never as numpy objects. A SHA-256 over every saved value (tensors byte for byte,
plus the structure around them) is stored beside them, so a flipped bit anywhere is
detected on load. Checkpoints of format version 1 (numpy RNG states) are still read,
with numpy's array reconstruction the only extra name allowed to the unpickler.
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import random
import struct
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bnn_nas.errors import CheckpointError
from bnn_nas.io import write_atomic

FORMAT = "bnn-nas-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)
CHECKSUM_KEY = "sha256"


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain lists (what ``weights_only`` loading reads)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [int(version), [int(w) for w in words], gauss],
        "numpy": [str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos),
                  int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore every RNG; the states go back to the CPU first, because a checkpoint
    loaded with ``map_location="cuda"`` moves them to the GPU and torch takes only a
    CPU ByteTensor. Reads the states of :func:`rng_state` and of version-1 files."""
    version, words, gauss = state["python"]
    random.setstate((int(version), tuple(int(w) for w in words), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.cpu().numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((str(kind), keys.astype(np.uint32), int(pos), int(has_gauss),
                         float(cached)))  # fmt: skip
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        # as many GPUs as both machines have: a run may resume on a smaller one
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)


def _feed(digest: Any, value: Any, where: str) -> None:
    """Hash ``value`` with its structure; refuse what ``weights_only`` could not read."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{t.dtype}{tuple(value.shape)}:".encode())
        if t.numel():
            digest.update(t.view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}:".encode())
        for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
            _feed(digest, key, where)
            _feed(digest, value[key], f"{where}.{key}")
    elif isinstance(value, list | tuple):
        digest.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}:".encode())
        for i, item in enumerate(value):
            _feed(digest, item, f"{where}[{i}]")
    elif isinstance(value, float):
        digest.update(b"F" + struct.pack("<d", value))
    elif value is None or isinstance(value, bool | int | str):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, torch.Size):  # pragma: no cover - a tuple subclass, caught above
        _feed(digest, tuple(value), where)
    else:
        raise TypeError(
            f"checkpoint value {where} is a {type(value).__name__}; store tensors, numbers, "
            "strings, lists or dicts (weights_only loading reads nothing else)"
        )


def checksum(payload: Mapping[str, Any]) -> str:
    """SHA-256 over every value of ``payload`` (tensors byte for byte) and its structure."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != CHECKSUM_KEY}, "checkpoint")
    return digest.hexdigest()


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a crash leaves the old file or the new one.

    ``payload`` may hold tensors, numbers, strings, None and lists/tuples/dicts of them.
    """
    document = {"format": FORMAT, "version": VERSION, **payload}
    document[CHECKSUM_KEY] = checksum(document)
    write_atomic(Path(path), lambda handle: torch.save(document, handle))


def _v1_globals() -> list[Any]:
    """What a version-1 checkpoint's numpy RNG state needs from the unpickler."""
    try:
        from numpy._core.multiarray import _reconstruct  # type: ignore[attr-defined]
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[attr-defined,no-redef]

    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:120]


def _to(value: Any, device: str | torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return type(value)((k, _to(v, device)) for k, v in value.items())
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    return value


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, or fail in one line.

    Nothing in the file can run code (``weights_only=True``); the checksum is verified
    before anything is returned, then tensors move to ``map_location``.
    """
    path = Path(path)
    if path.exists() and not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file; remove it or pick another run")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found; check the run directory")
    corrupt = (
        "delete it to restart from the previous one, or train without --resume"
    )
    try:
        with torch.serialization.safe_globals(_v1_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # weights_only refused a name: a file made by something else, possibly hostile
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise CheckpointError(
                f"{path} is not a bnn-nas checkpoint (it holds Python objects other than "
                "tensors, refused unread); point at a run's checkpoint"
            ) from None
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({_first_line(err)}); {corrupt}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, TypeError,
            AttributeError, KeyError, IndexError, MemoryError, OverflowError) as err:  # fmt: skip
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({_first_line(err)}); {corrupt}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a bnn-nas checkpoint; point at a run's checkpoint")
    version = data.get("version")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"checkpoint {path} has format version {str(version)[:20]}, this bnn-nas reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}; use the bnn-nas version that wrote it"
        )
    if version >= 2:
        try:
            ok = data.get(CHECKSUM_KEY) == checksum(data)
        except TypeError:
            ok = False
        if not ok:
            raise CheckpointError(
                f"checkpoint {path} is corrupt (checksum mismatch: its contents changed "
                f"after it was written); {corrupt}"
            )
    if str(map_location) != "cpu":
        data = _to(data, map_location)
    return data


_REQUIRED = {"model": Mapping, "optimizer": Mapping, "scheduler": Mapping, "rng": Mapping,
             "epoch": int, "metrics": list}  # fmt: skip


def check_training_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """The keys a training resume reads, of the right kinds, or one line naming the first
    that is missing or wrong."""
    for key, kind in _REQUIRED.items():
        if key not in state:
            raise CheckpointError(
                f"checkpoint {path} has no {key!r}; it was not written by `bnn-nas train`"
            )
        value = state[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(
                f"checkpoint {path}: {key} is a {type(value).__name__}, not a "
                f"{kind.__name__}; it was not written by `bnn-nas train`"
            )
    if state["epoch"] < 0:
        raise CheckpointError(f"checkpoint {path}: epoch {state['epoch']} is negative")


@contextlib.contextmanager
def restoring(path: Path) -> Iterator[None]:
    """Turn what restoring a checkpoint into live objects raises (missing keys, wrong
    shapes, an optimiser of another kind) into one line naming the file."""
    try:
        yield
    except CheckpointError:
        raise
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as err:
        raise CheckpointError(
            f"checkpoint {path} does not fit this run ({_first_line(err)}); resume it with "
            "the config that wrote it, or train without --resume in a new --run-dir"
        ) from None


def check_weights_fit(expected: Mapping[str, Any], saved: Any, path: Path) -> None:
    """The saved model weights belong to this network: names in common, and every common
    one of the same shape; else one line naming the first difference. Checked before a
    resume writes anything. (Names one side lacks are left to the strict load of the
    resume itself: a training stage may swap binarizers that hold tensors.)"""
    if not isinstance(saved, Mapping):
        raise CheckpointError(f"checkpoint {path}: model is not a mapping of weights")
    common = [k for k in expected if k in saved]
    if expected and not common:
        raise CheckpointError(
            f"checkpoint {path} holds the weights of another network (no name in common with "
            "this one); resume it with the config and network that wrote it"
        )
    for key in common:
        got, want = saved[key], tuple(expected[key].shape)
        shape = tuple(getattr(got, "shape", ()))
        if not isinstance(got, torch.Tensor) or shape != want:
            raise CheckpointError(
                f"checkpoint {path} does not fit this network: {key} has shape {shape}, the "
                f"network {want}; resume it with the config that wrote it"
            )
