"""Data settings and dispatch, the array types, and the packaged CIFAR-10 sample."""

from __future__ import annotations

import io
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bnn_nas.data import (
    CIFAR10_CLASSES,
    Dataset,
    DataSettings,
    ImageSet,
    load_cifar10_sample,
    load_dataset,
)
from bnn_nas.data import make_sample as make_sample_module
from bnn_nas.errors import BnnNasError, DataError
from bnn_nas.extensions import list_datasets


def test_sample_is_real_balanced_and_small(sample):
    path = resources.files("bnn_nas.data").joinpath("cifar10_sample.npz")
    assert path.is_file() and len(path.read_bytes()) <= 5 * 1024 * 1024
    assert sample.name == "cifar10_sample" and sample.classes == CIFAR10_CLASSES
    assert sample.train.images.shape == (5000, 32, 32, 3)
    assert sample.test.images.shape == (1000, 32, 32, 3)
    assert sample.train.images.dtype == np.uint8 and sample.train.labels.dtype == np.int64
    assert list(sample.train.class_counts()) == [500] * 10
    assert list(sample.test.class_counts()) == [100] * 10
    # Real photographs: full dynamic range, no duplicated images, and JPEG-rendition stats.
    assert sample.train.images.min() == 0 and sample.train.images.max() == 255
    assert len({image.tobytes() for image in sample.train.images}) == 5000
    mean, std = sample.train.channel_stats()
    np.testing.assert_allclose(mean, (0.491, 0.482, 0.447), atol=0.02)
    np.testing.assert_allclose(std, (0.245, 0.243, 0.261), atol=0.02)


def test_sample_holds_the_archive_jpeg_bytes(sample):
    with resources.files("bnn_nas.data").joinpath("cifar10_sample.npz").open("rb") as f:
        z = dict(np.load(f, allow_pickle=False))
    names = [str(n) for n in z["names"]]
    assert len(set(names)) == len(names) == 6000
    assert all(n.startswith(("train/", "test/")) and n.endswith(".jpg") for n in names)
    for i in (0, 2999, 5999):  # bytes untouched: Pillow's regular path decodes them identically
        data = z["blob"][z["offsets"][i] : z["offsets"][i + 1]].tobytes()
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
        split = sample.test if z["is_test"][i] else sample.train
        j = i - 5000 if z["is_test"][i] else i
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), split.images[j])
        assert CIFAR10_CLASSES[z["labels"][i]] == names[i].split("/")[1]


def jpeg_folder(root: Path, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in CIFAR10_CLASSES:
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / cls / f"{i:04d}.jpg", quality=90)


def test_make_sample_is_reproducible_and_loadable(tmp_path):
    jpeg_folder(tmp_path / "src", per_class=4)
    out_a, out_b = tmp_path / "a.npz", tmp_path / "b.npz"
    args = ["--train-per-class", "3", "--test-per-class", "2", "--seed", "1"]
    assert make_sample_module.main([str(tmp_path / "src"), "-o", str(out_a), *args]) == 0
    assert make_sample_module.main([str(tmp_path / "src"), "-o", str(out_b), *args]) == 0
    assert out_a.read_bytes() == out_b.read_bytes()
    with zipfile.ZipFile(out_a) as zf:  # fixed timestamps: byte-identical on any day
        assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    other = make_sample_module.make_sample(tmp_path / "src", tmp_path / "c.npz", 3, 2, seed=2)
    assert other == (tmp_path / "c.npz").stat().st_size
    assert (tmp_path / "c.npz").read_bytes() != out_a.read_bytes()
    ds = load_cifar10_sample(out_a)
    assert list(ds.train.class_counts()) == [3] * 10 and list(ds.test.class_counts()) == [2] * 10
    names = [str(n) for n in np.load(out_a)["names"]]
    for i, name in enumerate(names[:30]):
        with Image.open(tmp_path / "src" / name) as image:
            np.testing.assert_array_equal(ds.train.images[i], np.asarray(image))


def test_make_sample_refuses_too_few_images(tmp_path):
    jpeg_folder(tmp_path / "src", per_class=2)
    with pytest.raises(DataError, match="fewer than 3"):
        make_sample_module.make_sample(tmp_path / "src", tmp_path / "x.npz", 3, 1)
    assert not (tmp_path / "x.npz").exists()


def test_corrupt_sample_file_is_a_data_error(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DataError, match="regenerate"):
        load_cifar10_sample(tmp_path / "bad.npz")


def test_image_set_validates_and_subsets():
    images = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    s = ImageSet(images, np.array([0, 1, 1, 0], dtype=np.int32), ("a", "b"))
    assert s.labels.dtype == np.int64 and len(s) == 4
    sub = s.subset([3, 1])
    np.testing.assert_array_equal(sub.images, images[[3, 1]])
    assert list(sub.labels) == [0, 1] and sub.classes == ("a", "b")
    assert list(s.class_counts()) == [2, 2]
    bad = [
        (images.astype(np.float32), np.zeros(4, np.int64), ("a",)),
        (images[:, :, :, :2], np.zeros(4, np.int64), ("a",)),
        (images, np.zeros(3, np.int64), ("a",)),
        (images, np.array([0, 1, 2, 0]), ("a", "b")),
        (images, np.zeros(4, np.int64), ("a", "a")),
    ]
    for args in bad:
        with pytest.raises(DataError):
            ImageSet(*args)
    with pytest.raises(DataError, match="out of range"):
        s.subset([4])
    with pytest.raises(DataError, match="classes"):
        Dataset(s, ImageSet(images, np.zeros(4, np.int64), ("b", "a")), "x")


def test_settings_validate_and_dispatch(tmp_path, sample, monkeypatch):
    assert [e.name for e in list_datasets()] == ["cifar10", "cifar10_sample", "image_folder"]
    with pytest.raises(DataError, match="registered: cifar10, cifar10_sample, image_folder"):
        DataSettings("imagenet")
    for kwargs, message in [
        ({"name": "cifar10"}, "needs data.root"),
        ({"name": "image_folder"}, "needs data.root"),
        ({"name": "image_folder", "root": "x", "download": True}, "cifar10 only"),
        ({"name": "cifar10", "root": "x", "download": "yes"}, "true or false"),
        ({"name": "cifar10", "root": ""}, "non-empty"),
        ({"name": "cifar10", "root": "x", "cache_dir": "c"}, "image_folder only"),
    ]:
        with pytest.raises(DataError, match=message):
            DataSettings(**kwargs)
    assert issubclass(DataError, BnnNasError)
    loaded = load_dataset(DataSettings("cifar10_sample"))
    np.testing.assert_array_equal(loaded.test.images, sample.test.images)
    with pytest.raises(DataError, match="download: true"):
        load_dataset(DataSettings("cifar10", root=str(tmp_path)))
    calls = []
    monkeypatch.setattr(
        "bnn_nas.data.load_image_folder", lambda root, cache: calls.append((root, cache))
    )
    load_dataset(DataSettings("image_folder", root=str(tmp_path), cache_dir="~/c"))
    assert calls == [(tmp_path, Path("~/c").expanduser())]
