"""CIFAR-10 in its canonical ``cifar-10-batches-py`` form, with a verified download.

The official files are Python pickles. Unpickling runs code chosen by whoever wrote the
file, so we only read a folder the user placed themselves or one extracted from the
MD5-checked official archive, and even then through an unpickler that refuses every
global except the few numpy needs to rebuild arrays.

A download never leaves a half-written folder behind: the archive goes to a temporary
file, its MD5 is checked, it is extracted into a temporary directory and only a complete
folder is renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np

from bnn_nas.data.arrays import Dataset, ImageSet
from bnn_nas.errors import DataError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# Per-channel statistics of the original training set, pixels scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_FILE = "test_batch"
_META_FILE = "batches.meta"
_REQUIRED = (*_TRAIN_FILES, _TEST_FILE, _META_FILE)
_CHUNK = 1 << 20
_log = logging.getLogger(__name__)


def load_cifar10(
    root: Path | str,
    download: bool = False,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    timeout: float = 60.0,
) -> Dataset:
    """Read CIFAR-10 from ``root`` (the folder holding ``cifar-10-batches-py`` or that
    folder itself), downloading the official archive first when ``download`` is set."""
    folder = _resolve_folder(Path(root).expanduser())
    missing = [name for name in _REQUIRED if not (folder / name).is_file()]
    if missing and folder.exists():
        raise DataError(
            f"CIFAR-10 folder {folder} is incomplete (missing {', '.join(missing)}); "
            "delete it and pass download: true, or copy the missing files there"
        )
    if missing and not download:
        raise DataError(
            f"CIFAR-10 not found at {folder}; pass download: true or place the "
            f"{CIFAR10_FOLDER} folder in {folder.parent}"
        )
    if missing:
        download_cifar10(folder.parent, url=url, md5=md5, timeout=timeout)
    return _read_folder(folder)


def download_cifar10(
    dest: Path | str,
    url: str = CIFAR10_URL,
    md5: str = CIFAR10_MD5,
    timeout: float = 60.0,
) -> Path:
    """Fetch, verify and extract the archive so that ``dest/cifar-10-batches-py`` appears
    complete or not at all; returns that folder."""
    dest = Path(dest).expanduser()
    target = dest / CIFAR10_FOLDER
    made = [p for p in (dest, *dest.parents) if not p.exists()]  # removed again on failure
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create {dest} for CIFAR-10 ({_one_line(exc)}); pick a writable root"
        ) from exc
    fd, archive_name = tempfile.mkstemp(prefix=".cifar10-", suffix=".tar.gz.part", dir=dest)
    archive = Path(archive_name)
    done = False
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _fetch(url, out, timeout, dest)
        if digest != md5.lower():
            raise DataError(
                f"download from {url} has MD5 {digest}, expected {md5}: the file is corrupt "
                f"or not the CIFAR-10 archive; retry, or place {CIFAR10_FOLDER} in {dest} by hand"
            )
        _extract_into_place(archive, target, url)
        done = True
    finally:
        archive.unlink(missing_ok=True)
        if not done:  # a failed download leaves no empty folders behind
            for folder in made:
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return target


def _resolve_folder(root: Path) -> Path:
    """``root`` itself when it is the batches folder (by name or content), else the child."""
    if root.name == CIFAR10_FOLDER:
        return root
    if (root / _META_FILE).is_file() and not (root / CIFAR10_FOLDER).exists():
        return root
    return root / CIFAR10_FOLDER


def _fetch(url: str, out: BinaryIO, timeout: float, dest: Path) -> str:
    """Stream ``url`` into ``out``; returns the hex MD5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    _log.info("downloading %s into %s", url, dest)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise DataError(
            f"could not download CIFAR-10 from {url} ({_one_line(exc)}); check the network, "
            f"or place the {CIFAR10_FOLDER} folder in {dest} by hand"
        ) from exc
    return digest.hexdigest()


def _extract_into_place(archive: Path, target: Path, url: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".cifar10-extract-", dir=target.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                _check_members(members, url)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(staging, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extractall(staging, members=members)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(
                f"could not extract the archive from {url} ({_one_line(exc)}); retry the "
                f"download or place {CIFAR10_FOLDER} in {target.parent} by hand"
            ) from exc
        extracted = staging / CIFAR10_FOLDER
        missing = [name for name in _REQUIRED if not (extracted / name).is_file()]
        if missing:
            raise DataError(
                f"archive from {url} has no complete {CIFAR10_FOLDER} (missing "
                f"{', '.join(missing)}); check the URL or place the folder in {target.parent}"
            )
        try:
            extracted.replace(target)
        except OSError:
            if not all((target / name).is_file() for name in _REQUIRED):
                raise  # someone else's folder appeared meanwhile and it is not complete
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_members(members: list[tarfile.TarInfo], url: str) -> None:
    """Refuse links, devices and paths that would land outside the extraction folder."""
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or not (member.isfile() or member.isdir()):
            raise DataError(
                f"archive from {url} holds an unsafe entry {member.name!r}; refusing to "
                f"extract it, place {CIFAR10_FOLDER} by hand"
            )


def _read_folder(folder: Path) -> Dataset:
    meta = _unpickle(folder / _META_FILE)
    names = meta.get(b"label_names", meta.get("label_names"))
    if not isinstance(names, list) or not names:
        raise DataError(f"{folder / _META_FILE} has no label_names; re-download CIFAR-10")
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    parts = [_read_batch(folder / name) for name in _TRAIN_FILES]
    train = ImageSet(
        np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), classes
    )
    test_images, test_labels = _read_batch(folder / _TEST_FILE)
    return Dataset(train=train, test=ImageSet(test_images, test_labels, classes), name="cifar10")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: rows of 3072 bytes, CHW-planar (1024 R, 1024 G, 1024 B)."""
    batch = _unpickle(path)
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path} has no data array of rows of 3072 bytes; re-download CIFAR-10")
    if labels is None or len(labels) != len(data):
        raise DataError(f"{path} has {len(data)} images but no matching labels; re-download it")
    images = data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)


class _ArrayUnpickler(pickle.Unpickler):
    """Allows only what numpy needs to rebuild arrays (old and new module names)."""

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if module.startswith("numpy.core."):  # numpy 2 moved numpy.core to numpy._core
            try:
                return getattr(importlib.import_module("numpy._core" + module[10:]), name)
            except ImportError:
                pass
        return getattr(importlib.import_module(module), name)


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            value = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # a broken pickle can raise nearly anything
        raise DataError(
            f"cannot read {path} ({_one_line(exc)}); delete {path.parent} and download "
            "CIFAR-10 again"
        ) from exc
    if not isinstance(value, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch (a {type(value).__name__}); re-download")
    return value


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
