"""Regenerate the packaged ``cifar10_sample.npz`` from the CIFAR-10 JPEG image folder.

    python -m bnn_nas.data.make_sample cifar10-jpeg.tar.xz -o bnn_nas/data/cifar10_sample.npz

The input is the ``train/<class>/*.jpg``, ``test/<class>/*.jpg`` folder or a tar archive
of it. Per class, a seeded generator picks the files from the sorted file list, and the
JPEG bytes are stored untouched (no re-encoding), so the same input and seed give the
same arrays; the zip container is written with fixed timestamps so the file is
byte-identical too.
"""

from __future__ import annotations

import argparse
import io
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from bnn_nas.data.cifar10 import CIFAR10_CLASSES
from bnn_nas.data.sample import decode_jpeg
from bnn_nas.errors import DataError

SAMPLE_VERSION = 1
_SPLITS = ("train", "test")


def read_jpegs(source: Path) -> dict[str, bytes]:
    """Every ``<split>/<class>/<name>.jpg`` of a folder or tar archive, by relative path."""
    if source.is_dir():
        return {
            p.relative_to(source).as_posix(): p.read_bytes()
            for split in _SPLITS
            for p in (source / split).glob("*/*.jpg")
        }
    if not source.is_file():
        raise DataError(f"{source} does not exist; pass the CIFAR-10 JPEG folder or archive")
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:  # one sequential pass: compressed tars seek slowly
                name = member.name.removeprefix("./")
                if member.isfile() and name.endswith(".jpg") and name.count("/") == 2:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        found[name] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        text = " ".join(str(exc).split())
        raise DataError(
            f"cannot read archive {source} ({text}); pass a .tar[.xz|.gz] or folder"
        ) from exc
    return found


def select(
    names: list[str], train_per_class: int, test_per_class: int, seed: int
) -> list[tuple[str, int, bool]]:
    """Seeded, class-balanced choice: ``(name, label, is_test)`` in split/class/name order."""
    rng = np.random.default_rng(seed)
    chosen: list[tuple[str, int, bool]] = []
    for split, per_class in zip(_SPLITS, (train_per_class, test_per_class), strict=True):
        for label, cls in enumerate(CIFAR10_CLASSES):
            pool = sorted(n for n in names if n.startswith(f"{split}/{cls}/"))
            if len(pool) < per_class:
                raise DataError(
                    f"{split}/{cls} has {len(pool)} images, fewer than {per_class}; "
                    "lower the per-class counts or pass the full CIFAR-10 folder"
                )
            picks = np.sort(rng.choice(len(pool), size=per_class, replace=False))
            chosen.extend((pool[i], label, split == "test") for i in picks)
    return chosen


def build_arrays(files: dict[str, bytes], chosen: list[tuple[str, int, bool]]) -> dict:
    blobs = [files[name] for name, _, _ in chosen]
    shape = _check_images(blobs, [name for name, _, _ in chosen])
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return {
        "version": np.array(SAMPLE_VERSION, dtype=np.int64),
        "classes": np.array(CIFAR10_CLASSES),
        "blob": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "offsets": offsets,
        "labels": np.array([label for _, label, _ in chosen], dtype=np.int64),
        "is_test": np.array([is_test for _, _, is_test in chosen], dtype=bool),
        "image_shape": np.array(shape, dtype=np.int64),
        "names": np.array([name for name, _, _ in chosen]),
    }


def _check_images(blobs: list[bytes], names: list[str]) -> tuple[int, int, int]:
    """All images must be RGB JPEGs of one size that the loader's fast path decodes
    exactly as ``Image.open`` does; returns that (H, W, 3)."""
    shape: tuple[int, int, int] | None = None
    for data, name in zip(blobs, names, strict=True):
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG" or image.mode != "RGB":
                raise DataError(f"{name} is {image.format} {image.mode}, not an RGB JPEG")
            reference = np.asarray(image)
        shape = shape or reference.shape
        if reference.shape != shape:
            raise DataError(f"{name} is {reference.shape}, others {shape}; use one image size")
        if not np.array_equal(decode_jpeg(data, shape[0], shape[1]), reference):
            raise DataError(f"{name} decodes differently through the fast path; drop it")
    if shape is None:
        raise DataError("no images selected; raise the per-class counts")
    return shape


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A compressed ``.npz`` with fixed entry timestamps, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for key, value in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w") as handle:
                    np.lib.format.write_array(handle, np.asanyarray(value), allow_pickle=False)
        tmp.chmod(0o644)  # mkstemp's 0600 would make an installed copy unreadable to others
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def make_sample(
    source: Path, out: Path, train_per_class: int = 500, test_per_class: int = 100, seed: int = 0
) -> int:
    """Write the sample file; returns its size in bytes."""
    files = read_jpegs(source)
    chosen = select(sorted(files), train_per_class, test_per_class, seed)
    write_npz(out, build_arrays(files, chosen))
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnn_nas.data.make_sample", description=__doc__)
    parser.add_argument("source", type=Path, help="CIFAR-10 JPEG folder or .tar[.xz] of it")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .npz to write")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    size = make_sample(
        args.source, args.output, args.train_per_class, args.test_per_class, args.seed
    )
    print(f"wrote {args.output} ({size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
