"""Image folders (``root/train/<class>/*``, ``root/test/<class>/*``) decoded once, then cached.

Decoding tens of thousands of small files costs seconds, every run. The decoded uint8
arrays are therefore cached in one ``.npz`` keyed by a hash of the relative file list,
sizes and modification times: any added, removed or edited file changes the key and the
cache is rebuilt. Writes are atomic (temp file + ``os.replace``) and a cache that cannot
be read is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from bnn_nas.data.arrays import Dataset, ImageSet
from bnn_nas.data.cifar10 import CIFAR10_CLASSES
from bnn_nas.errors import DataError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff"}
)
CACHE_FOLDER = ".bnn_nas_cache"
_CACHE_VERSION = "bnn_nas.image_folder.v1"
_PARALLEL_MIN_FILES = 4096  # below this a process pool costs more than it saves
_CHUNK_MIN_FILES = 256


class _Entry(NamedTuple):
    rel: str  # posix path relative to root, e.g. "train/cat/0001.jpg"
    size: int
    mtime_ns: int
    label: int


def load_image_folder(
    root: Path | str, cache_dir: Path | str | None = None, *, workers: int | None = None
) -> Dataset:
    """Load ``root/train`` and ``root/test`` (or ``root/val``) as a :class:`Dataset`.

    Classes are the sorted folder names of ``train``. The decoded arrays are cached in
    ``cache_dir`` (default ``root/.bnn_nas_cache`` if writable, else ``~/.cache/bnn_nas``).
    ``workers`` bounds the decoding processes (default: the usable CPUs; 1 = no pool).
    """
    root = Path(root).expanduser()
    train_dir, test_dir = _split_dirs(root)
    classes = _classes(train_dir)
    train_entries = _scan(root, train_dir, classes, require_every_class=True)
    test_entries = _scan(root, test_dir, classes, require_every_class=False)
    key = _cache_key(classes, train_entries + test_entries)
    cache = _cache_file(root, cache_dir, key)
    if cache is not None and cache.is_file():
        cached = _read_cache(cache, key)
        if cached is not None:
            return cached
    dataset = Dataset(
        train=_decode_split(root, train_entries, classes, workers),
        test=_decode_split(root, test_entries, classes, workers),
        name="image_folder",
    )
    if cache is not None:
        _write_cache(cache, key, dataset)
    return dataset


def decode_images(paths: Sequence[Path], workers: int | None = None) -> np.ndarray:
    """Decode image files to one ``uint8 [N, H, W, 3]`` array; all must share one size."""
    if not paths:
        raise DataError("no image files to decode; put images in the class folders")
    names = [str(p) for p in paths]
    n_workers = _usable_cpus() if workers is None else max(1, int(workers))
    if n_workers == 1 or len(names) < _PARALLEL_MIN_FILES or not sys.platform.startswith("linux"):
        return _decode_chunk(names)
    n_chunks = max(1, min(len(names) // _CHUNK_MIN_FILES, n_workers * 4))
    bounds = np.linspace(0, len(names), n_chunks + 1).astype(int)
    chunks = [names[a:b] for a, b in itertools.pairwise(bounds)]
    # fork (as torch's DataLoader on Linux): workers inherit the imported modules instead
    # of re-importing torch each; they only run Pillow and numpy.
    with ProcessPoolExecutor(min(n_workers, n_chunks), mp_context=get_context("fork")) as pool:
        parts = list(pool.map(_decode_chunk, chunks))
    first_shape = parts[0].shape[1:]
    for chunk, part in zip(chunks, parts, strict=True):
        if part.shape[1:] != first_shape:
            raise DataError(_size_message(chunk[0], part.shape[1:], chunks[0][0], first_shape))
    return np.concatenate(parts)


def _decode_chunk(names: list[str]) -> np.ndarray:
    out: np.ndarray | None = None
    for i, name in enumerate(names):
        try:
            with Image.open(name) as image:
                pixels = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            text = " ".join(str(exc).split())
            raise DataError(f"cannot decode image {name} ({text}); delete or replace it") from None
        if out is None:
            out = np.empty((len(names), *pixels.shape), dtype=np.uint8)
        elif pixels.shape != out.shape[1:]:
            raise DataError(_size_message(name, pixels.shape, names[0], out.shape[1:]))
        out[i] = pixels
    assert out is not None
    return out


def _size_message(name: str, shape: tuple, first: str, first_shape: tuple) -> str:
    return (
        f"image {name} is {shape[1]}x{shape[0]} but {first} is {first_shape[1]}x"
        f"{first_shape[0]}; all images of a split must share one size, resize them"
    )


def _split_dirs(root: Path) -> tuple[Path, Path]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; point root at a folder with train/")
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"no train/ folder in {root}; expected {root}/train/<class>/<image>")
    for name in ("test", "val"):
        if (root / name).is_dir():
            return train, root / name
    raise DataError(f"{root} has train/ but neither test/ nor val/; add {root}/test/<class>/")


def _classes(train_dir: Path) -> tuple[str, ...]:
    names = sorted(e.name for e in os.scandir(train_dir) if e.is_dir() and _visible(e.name))
    if not names:
        raise DataError(f"no class folders in {train_dir}; expected {train_dir}/<class>/<image>")
    if set(names) == set(CIFAR10_CLASSES):
        return CIFAR10_CLASSES  # CIFAR-10's label order (alphabetical too)
    return tuple(names)


def _scan(
    root: Path, split_dir: Path, classes: tuple[str, ...], *, require_every_class: bool
) -> list[_Entry]:
    present = {e.name for e in os.scandir(split_dir) if e.is_dir() and _visible(e.name)}
    unknown = sorted(present - set(classes))
    if unknown:
        raise DataError(
            f"{split_dir} has class folder(s) {', '.join(unknown)} that train/ lacks; "
            "use the same class folders in every split"
        )
    entries: list[_Entry] = []
    for label, name in enumerate(classes):
        found = _walk(root, split_dir / name, label) if name in present else []
        if not found and require_every_class:
            raise DataError(
                f"class folder {split_dir / name} holds no images "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}); add images or remove the folder"
            )
        entries.extend(found)
    if not entries:
        raise DataError(f"no images in {split_dir}; expected {split_dir}/<class>/<image>")
    return entries


def _walk(root: Path, folder: Path, label: int) -> list[_Entry]:
    found: list[_Entry] = []
    stack = [(str(folder), folder.relative_to(root).as_posix())]
    while stack:  # plain strings: Path objects per file cost more than the stat itself
        path, rel = stack.pop()
        with os.scandir(path) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    stack.append((e.path, f"{rel}/{e.name}"))
                elif _suffix(e.name) in IMAGE_EXTENSIONS:
                    st = e.stat()
                    found.append(_Entry(f"{rel}/{e.name}", st.st_size, st.st_mtime_ns, label))
    found.sort()
    return found


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _decode_split(
    root: Path, entries: list[_Entry], classes: tuple[str, ...], workers: int | None
) -> ImageSet:
    # Looked up at call time so tests (and callers) can swap in another decoder.
    images = decode_images([root / e.rel for e in entries], workers)
    labels = np.fromiter((e.label for e in entries), dtype=np.int64, count=len(entries))
    return ImageSet(images, labels, classes)


def _cache_key(classes: tuple[str, ...], entries: list[_Entry]) -> str:
    digest = hashlib.sha256(f"{_CACHE_VERSION}\n{classes!r}\n".encode())
    for e in sorted(entries):
        digest.update(f"{e.rel}\0{e.size}\0{e.mtime_ns}\n".encode())
    return digest.hexdigest()


def _cache_file(root: Path, cache_dir: Path | str | None, key: str) -> Path | None:
    """Where this folder's cache lives, or None (with a warning) if nowhere is writable."""
    if cache_dir is not None:
        candidates = [Path(cache_dir).expanduser()]
    else:
        candidates = [root / CACHE_FOLDER, Path.home() / ".cache" / "bnn_nas"]
    for folder in candidates:  # made only when the cache is written: a failed load leaves none
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
            return folder / f"{_root_tag(root)}-{key[:32]}.npz"
    warnings.warn(
        f"no writable cache folder among {', '.join(map(str, candidates))}; "
        "images will be decoded on every load",
        stacklevel=3,
    )
    return None


def _root_tag(root: Path) -> str:
    """A file-name prefix unique to this root, so a shared cache folder can hold many."""
    resolved = str(root.resolve())
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", root.resolve().name)[:40] or "root"
    return f"{stem}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"


def _read_cache(path: Path, key: str) -> Dataset | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            arrays = {name: z[name] for name in _ARRAYS}
            if str(z["sha256"]) != _arrays_digest(key, arrays):
                raise ValueError("its checksum does not match its contents")
            classes = tuple(str(c) for c in arrays["classes"])
            return Dataset(
                train=ImageSet(arrays["train_images"], arrays["train_labels"], classes),
                test=ImageSet(arrays["test_images"], arrays["test_labels"], classes),
                name="image_folder",
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, DataError) as exc:
        text = " ".join(str(exc).split())
        warnings.warn(f"ignoring unreadable cache {path} ({text}); rebuilding it", stacklevel=3)
        return None


_ARRAYS = ("classes", "train_images", "train_labels", "test_images", "test_labels")


def _arrays_digest(key: str, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the cache's arrays (dtype, shape, bytes): a tampered or damaged cache
    is rebuilt, never trusted."""
    digest = hashlib.sha256(key.encode())
    for name in _ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape}:".encode())
        digest.update(a.tobytes() if a.dtype.kind == "U" else memoryview(a).cast("B"))
    return digest.hexdigest()


def _write_cache(path: Path, key: str, dataset: Dataset) -> None:
    arrays = {
        "classes": np.array(dataset.classes),
        "train_images": dataset.train.images,
        "train_labels": dataset.train.labels,
        "test_images": dataset.test.images,
        "test_labels": dataset.test.labels,
    }
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".tmp", dir=path.parent)
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.array(key), sha256=np.array(_arrays_digest(key, arrays)), **arrays)
        tmp.replace(path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        warnings.warn(f"could not write cache {path} ({exc}); continuing without it", stacklevel=3)
        return
    prefix = path.name.rsplit("-", 1)[0] + "-"
    for old in path.parent.glob(f"{prefix}*.npz"):
        if old != path:  # this folder's earlier contents: stale for good
            old.unlink(missing_ok=True)


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, min(len(os.sched_getaffinity(0)), 16))
    return max(1, min(os.cpu_count() or 1, 16))
