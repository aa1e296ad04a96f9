"""Image folders: labels, pixels, the decode cache and its invalidation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bnn_nas.data import CIFAR10_CLASSES, image_folder, load_image_folder
from bnn_nas.errors import DataError


def save_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_folder(root: Path, classes=("zebra", "ant", "moth"), n=(3, 2), size=(6, 5), seed=0):
    """PNGs with random pixels; returns {relative path: pixels}."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in zip(("train", "test"), n, strict=True):
        for cls in classes:
            for i in range(count):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                rel = f"{split}/{cls}/{i:03d}.png"
                save_png(root / rel, pixels)
                written[rel] = pixels
    return written


def expected(written: dict, split: str, classes: tuple[str, ...]):
    rels = sorted(r for r in written if r.startswith(split + "/"))
    labels = [classes.index(r.split("/")[1]) for r in rels]
    return np.stack([written[r] for r in rels]), np.array(labels)


class DecodeSpy:
    """Counts calls to the real decoder; can be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail
        self.real = image_folder.decode_images

    def __call__(self, paths, workers=None):
        self.calls += 1
        if self.fail:
            raise AssertionError("decoded although the cache should have been used")
        return self.real(paths, workers)


def test_loads_sorted_classes_labels_and_pixels(tmp_path):
    written = make_folder(tmp_path / "d")
    ds = load_image_folder(tmp_path / "d")
    assert ds.classes == ("ant", "moth", "zebra")
    for split, part in (("train", ds.train), ("test", ds.test)):
        images, labels = expected(written, split, ds.classes)
        np.testing.assert_array_equal(part.images, images)
        np.testing.assert_array_equal(part.labels, labels)
        assert part.images.dtype == np.uint8 and part.images.shape[1:] == (6, 5, 3)


def test_val_is_used_when_test_is_absent_and_modes_become_rgb(tmp_path):
    written = make_folder(tmp_path, n=(2, 1))
    for rel in [r for r in written if r.startswith("test/")]:
        dst = tmp_path / rel.replace("test/", "val/", 1)
        dst.parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).rename(dst)
    (tmp_path / "test").rename(tmp_path / "old")  # not a split name: must be ignored
    gray = np.arange(30, dtype=np.uint8).reshape(6, 5)
    Image.fromarray(gray, mode="L").save(tmp_path / "val" / "ant" / "gray.png")
    ds = load_image_folder(tmp_path)
    assert len(ds.test) == 4
    index = [i for i, lab in enumerate(ds.test.labels) if lab == 0][-1]  # gray.png sorts last
    np.testing.assert_array_equal(ds.test.images[index], np.repeat(gray[..., None], 3, axis=2))


def test_cifar10_names_use_cifar10_label_order(tmp_path):
    make_folder(tmp_path, classes=tuple(reversed(CIFAR10_CLASSES)), n=(1, 1), size=(2, 2))
    ds = load_image_folder(tmp_path, cache_dir=tmp_path / "c")
    assert ds.classes == CIFAR10_CLASSES
    assert list(ds.train.labels) == list(range(10))


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    make_folder(tmp_path / "d")
    first = load_image_folder(tmp_path / "d")
    cached = list((tmp_path / "d" / ".bnn_nas_cache").glob("*.npz"))
    assert len(cached) == 1
    monkeypatch.setattr(image_folder, "decode_images", DecodeSpy(fail=True))
    second = load_image_folder(tmp_path / "d")
    np.testing.assert_array_equal(second.train.images, first.train.images)
    np.testing.assert_array_equal(second.test.labels, first.test.labels)
    assert second.classes == first.classes


@pytest.mark.parametrize("change", ["add", "edit", "remove", "touch"])
def test_changed_folder_rebuilds_the_cache(tmp_path, monkeypatch, change):
    written = make_folder(tmp_path)
    load_image_folder(tmp_path)
    new = np.full((6, 5, 3), 7, dtype=np.uint8)
    if change == "add":
        save_png(tmp_path / "train" / "moth" / "999.png", new)
    elif change == "edit":
        (tmp_path / "train" / "moth" / "001.png").write_bytes(b"")  # size changes...
        save_png(tmp_path / "train" / "moth" / "001.png", new)
        os.utime(tmp_path / "train" / "moth" / "001.png", ns=(1, 1))  # ...and the mtime
    elif change == "remove":
        (tmp_path / "train" / "moth" / "001.png").unlink()
    else:  # same bytes, new modification time: cannot be trusted to be the same image
        os.utime(tmp_path / "train" / "moth" / "001.png", ns=(1, 1))
    spy = DecodeSpy()
    monkeypatch.setattr(image_folder, "decode_images", spy)
    ds = load_image_folder(tmp_path)
    assert spy.calls == 2  # train and test decoded again
    moth = ds.train.images[ds.train.labels == ds.classes.index("moth")]
    assert len(moth) == {"add": 4, "edit": 3, "remove": 2, "touch": 3}[change]
    if change in ("add", "edit"):
        np.testing.assert_array_equal(moth[-1 if change == "add" else 1], new)
    else:
        np.testing.assert_array_equal(
            moth[1], written[f"train/moth/00{2 - (change == 'touch')}.png"]
        )
    assert len(list((tmp_path / ".bnn_nas_cache").glob("*.npz"))) == 1  # stale one removed
    spy.fail = True
    load_image_folder(tmp_path)  # the rebuilt cache serves the next load


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch, damage):
    make_folder(tmp_path)
    first = load_image_folder(tmp_path)
    (cache,) = (tmp_path / ".bnn_nas_cache").glob("*.npz")
    blob = cache.read_bytes()
    cache.write_bytes(
        {"garbage": b"not a zip" * 100, "truncated": blob[: len(blob) // 2], "empty": b""}[damage]
    )
    spy = DecodeSpy()
    monkeypatch.setattr(image_folder, "decode_images", spy)
    with pytest.warns(UserWarning, match="rebuilding"):
        second = load_image_folder(tmp_path)
    assert spy.calls == 2
    np.testing.assert_array_equal(second.train.images, first.train.images)
    assert cache.read_bytes() == blob  # rewritten whole
    spy.fail = True
    load_image_folder(tmp_path)


def test_cache_dir_option_and_home_fallback(tmp_path, monkeypatch):
    make_folder(tmp_path / "d")
    load_image_folder(tmp_path / "d", cache_dir=tmp_path / "mine")
    assert len(list((tmp_path / "mine").glob("*.npz"))) == 1
    assert not (tmp_path / "d" / ".bnn_nas_cache").exists()
    # The default folder cannot be created (a file is in the way): fall back to ~/.cache.
    (tmp_path / "d" / ".bnn_nas_cache").write_bytes(b"")
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path / "home"))
    load_image_folder(tmp_path / "d")
    assert len(list((tmp_path / "home" / ".cache" / "bnn_nas").glob("*.npz"))) == 1


def test_mixed_sizes_name_the_offending_file(tmp_path):
    make_folder(tmp_path)
    save_png(tmp_path / "train" / "moth" / "001.png", np.zeros((7, 5, 3), np.uint8))
    with pytest.raises(DataError, match=r"moth/001\.png is 5x7") as err:
        load_image_folder(tmp_path)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process pool on Linux only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_process_pool_matches_serial_and_checks_sizes(tmp_path, monkeypatch):
    written = make_folder(tmp_path, n=(12, 1), size=(3, 4))
    paths = sorted(tmp_path / r for r in written)
    monkeypatch.setattr(image_folder, "_PARALLEL_MIN_FILES", 4)
    monkeypatch.setattr(image_folder, "_CHUNK_MIN_FILES", 4)
    serial = image_folder.decode_images(paths, workers=1)
    pooled = image_folder.decode_images(paths, workers=2)
    np.testing.assert_array_equal(pooled, serial)
    np.testing.assert_array_equal(serial[0], written[paths[0].relative_to(tmp_path).as_posix()])
    save_png(paths[-1], np.zeros((4, 4, 3), np.uint8))  # lands in the last chunk
    with pytest.raises(DataError, match="all images of a split must share one size"):
        image_folder.decode_images(paths, workers=2)


def test_undecodable_image_is_named(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "test" / "ant" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.png"):
        load_image_folder(tmp_path)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("no_root", "does not exist"),
        ("no_train", "no train/"),
        ("no_test", "neither test/ nor val/"),
        ("empty_class", "holds no images"),
        ("unknown_test_class", "that train/ lacks"),
    ],
)
def test_bad_layouts_are_data_errors(tmp_path, layout, message):
    make_folder(tmp_path / "d", n=(1, 1), size=(2, 2))
    d = tmp_path / "d"
    if layout == "no_root":
        d = tmp_path / "elsewhere"
    elif layout == "no_train":
        (d / "train").rename(d / "training")
    elif layout == "no_test":
        (d / "test").rename(d / "testing")
    elif layout == "empty_class":
        (d / "train" / "wasp").mkdir()
    else:
        save_png(d / "test" / "wasp" / "0.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DataError, match=message):
        load_image_folder(d)
