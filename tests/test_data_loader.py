"""Device loader and batched augmentation, checked against slow per-image references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bnn_nas.data import (
    DeviceLoader,
    ImageSet,
    apply_crop_flip,
    crop_flip_params,
    normalize,
    random_crop_flip,
)
from bnn_nas.errors import DataError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def reference_crop_flip(image: np.ndarray, pad: int, dy: int, dx: int, flip: bool) -> np.ndarray:
    """One CHW image: zero-pad, crop at (dy, dx), mirror left-right if asked."""
    _, H, W = image.shape
    padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)))
    crop = padded[:, dy : dy + H, dx : dx + W]
    return crop[:, :, ::-1] if flip else crop


def distinct_images(n: int, c: int = 3, h: int = 8, w: int = 6) -> np.ndarray:
    """NCHW uint8 images whose pixels are all different and non-zero (within an image)."""
    base = np.arange(1, c * h * w + 1, dtype=np.uint8).reshape(c, h, w)
    return np.stack([np.roll(base, k, axis=2) for k in range(n)])


def numbered_set(n: int, h: int = 4, w: int = 4) -> ImageSet:
    """Image i is filled with i % 256 and labelled i, so a batch tells which examples it has."""
    images = np.broadcast_to(
        (np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, h, w, 3)
    )
    return ImageSet(np.ascontiguousarray(images), np.arange(n), tuple(map(str, range(n))))




@pytest.mark.parametrize("device", DEVICES)
def test_apply_crop_flip_matches_reference_for_given_offsets(device):
    x = distinct_images(6)
    pad = 4
    dy = torch.tensor([0, 8, 4, 0, 8, 3])
    dx = torch.tensor([0, 8, 4, 8, 0, 5])
    flip = torch.tensor([False, False, True, True, False, True])
    out = apply_crop_flip(torch.from_numpy(x).to(device), pad, dy, dx, flip).cpu().numpy()
    for i in range(len(x)):
        ref = reference_crop_flip(x[i], pad, int(dy[i]), int(dx[i]), bool(flip[i]))
        np.testing.assert_array_equal(out[i], ref)
    assert out[0, :, :4].max() == 0 and out[0, :, 4:, 4:].min() > 0  # zero padding top-left
    assert out.dtype == np.uint8


@pytest.mark.parametrize("device", DEVICES)
def test_random_crop_flip_draws_are_valid_uniform_and_seeded(device):
    pad, n = 4, 600
    x = np.repeat(distinct_images(1), n, axis=0)
    gen = torch.Generator(device=device).manual_seed(123)
    out = random_crop_flip(torch.from_numpy(x).to(device), pad, gen).cpu().numpy()
    candidates = {
        key: reference_crop_flip(x[0], pad, *key)
        for key in itertools.product(range(2 * pad + 1), range(2 * pad + 1), (False, True))
    }
    found = []
    for i in range(n):  # slow and independent: which crop/flip produced image i?
        matches = [k for k, ref in candidates.items() if np.array_equal(out[i], ref)]
        assert len(matches) == 1
        found.append(matches[0])
    dys, dxs, flips = map(np.array, zip(*found, strict=True))
    assert set(dys) == set(dxs) == set(range(2 * pad + 1))
    assert 0.4 < flips.mean() < 0.6
    # The draws are exactly those crop_flip_params makes from the same seed.
    gen = torch.Generator(device=device).manual_seed(123)
    dy, dx, flip = (t.cpu().numpy() for t in crop_flip_params(n, pad, gen, device))
    np.testing.assert_array_equal(dys, dy)
    np.testing.assert_array_equal(dxs, dx)
    np.testing.assert_array_equal(flips, flip)


@pytest.mark.parametrize("device", DEVICES)
def test_normalize_matches_formula_and_keeps_layout(device):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 3, 5, 7), dtype=np.uint8)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    ref = (x / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    xt = torch.from_numpy(x).to(device).contiguous(memory_format=torch.channels_last)
    out = normalize(xt, mean, std)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_allclose(out.cpu().numpy(), ref, atol=1e-5)
    half = normalize(xt, mean, std, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    np.testing.assert_allclose(half.float().cpu().numpy(), ref, atol=0.05)


def test_normalised_sample_has_zero_mean_unit_std(sample):
    mean, std = sample.train.channel_stats()
    loader = DeviceLoader(sample.train, batch_size=len(sample.train), mean=mean, std=std)
    ((x, y),) = list(loader.epoch(0))
    assert x.shape == (5000, 3, 32, 32) and y.dtype == torch.int64
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-3)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3)).numpy(), 1.0, atol=1e-3)
    # CIFAR-10's published statistics come close on these (JPEG) images too.
    default = next(iter(DeviceLoader(sample.train, batch_size=5000)))[0]
    np.testing.assert_allclose(default.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=0.05)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("n", "batch_size", "drop_last"), [(103, 10, False), (103, 10, True)])
def test_every_example_once_per_epoch(device, n, batch_size, drop_last):
    data = numbered_set(n)
    loader = DeviceLoader(
        data, batch_size, device=device, shuffle=True, drop_last=drop_last, seed=5, mean=(0,) * 3
    )
    batches = list(loader.epoch(2))
    assert len(batches) == len(loader) == (10 if drop_last else 11)
    sizes = [len(y) for _, y in batches]
    assert sizes == [10] * 10 + ([] if drop_last else [3])
    seen = torch.cat([y for _, y in batches]).cpu().numpy()
    assert len(np.unique(seen)) == len(seen)
    if not drop_last:
        np.testing.assert_array_equal(np.sort(seen), np.arange(n))
    assert not np.array_equal(seen, np.sort(seen))  # shuffled
    std = torch.tensor(loader.std, device=device)
    for x, y in batches:  # pixels travel with their labels (mean 0, so x * std * 255 = pixel)
        pixels = (x[:, :, 0, 0] * std * 255).cpu().numpy()
        np.testing.assert_allclose(
            pixels, np.repeat((y.cpu().numpy() % 256)[:, None], 3, 1), atol=1e-3
        )


@pytest.mark.parametrize("device", DEVICES)
def test_batches_are_a_function_of_seed_and_epoch(device):
    data = numbered_set(50, h=8, w=8)

    def make(seed: int) -> DeviceLoader:
        return DeviceLoader(data, 16, device=device, augment=True, shuffle=True, seed=seed)

    a, b = make(1), make(1)
    for epoch in (0, 3):
        first = list(a.epoch(epoch))
        for (x1, y1), (x2, y2), (x3, y3) in zip(first, b.epoch(epoch), a.epoch(epoch), strict=True):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
            assert torch.equal(x1, x3) and torch.equal(y1, y3)  # no state kept between calls

    def y_epoch(loader: DeviceLoader, e: int) -> torch.Tensor:
        return torch.cat([y for _, y in loader.epoch(e)])

    assert not torch.equal(y_epoch(a, 0), y_epoch(a, 1))
    assert not torch.equal(y_epoch(a, 0), y_epoch(make(2), 0))
    # Resuming mid-epoch replays the same batches; set_epoch selects what iter() yields.
    full = list(a.epoch(4))
    for (x1, y1), (x2, y2) in zip(full[2:], a.epoch(4, start=2), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    a.set_epoch(4)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(full, a, strict=True))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(full, a, strict=True))


@pytest.mark.parametrize("device", DEVICES)
def test_augmented_batches_are_crops_and_flips_of_their_images(device):
    images = distinct_images(20)  # NCHW
    data = ImageSet(
        np.ascontiguousarray(images.transpose(0, 2, 3, 1)),
        np.arange(20),
        tuple(map(str, range(20))),
    )
    mean, std = (0.0, 0.0, 0.0), (1 / 255,) * 3  # x stays the raw pixel value
    loader = DeviceLoader(data, 8, device=device, augment=True, shuffle=True, mean=mean, std=std)
    plain = DeviceLoader(data, 8, device=device, augment=False, shuffle=True, mean=mean, std=std)
    flips = 0
    for (x, y), (xp, yp) in zip(loader.epoch(1), plain.epoch(1), strict=True):
        assert torch.equal(y, yp)
        xs = x.round().to(torch.uint8).cpu().numpy()
        np.testing.assert_array_equal(xp.round().to(torch.uint8).cpu().numpy(), images[yp.cpu()])
        for img, label in zip(xs, y.cpu().numpy(), strict=True):
            keys = [
                k
                for k in itertools.product(range(9), range(9), (False, True))
                if np.array_equal(img, reference_crop_flip(images[label], 4, *k))
            ]
            assert len(keys) == 1
            flips += keys[0][2]
    assert 0 < flips < 20


@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_dtype_and_tensor_input(device, sample):
    subset = sample.train.subset(np.arange(64))
    base = DeviceLoader(subset, 32, device=device, augment=True, shuffle=True, seed=3)
    cl = DeviceLoader(
        subset, 32, device=device, augment=True, shuffle=True, seed=3, channels_last=True
    )
    nchw = torch.from_numpy(subset.images).permute(0, 3, 1, 2).contiguous()
    tensors = DeviceLoader(
        (nchw, torch.from_numpy(subset.labels)),
        32,
        device=device,
        augment=True,
        shuffle=True,
        seed=3,
        dtype=torch.bfloat16,
    )
    assert base.images.dtype == torch.uint8 and base.images.shape == (64, 3, 32, 32)
    assert base.images.device.type == device
    for (x, y), (xc, yc), (xt, yt) in zip(base, cl, tensors, strict=True):
        assert x.is_contiguous() and xc.is_contiguous(memory_format=torch.channels_last)
        assert x.device.type == device and y.device.type == device
        assert torch.equal(x, xc) and torch.equal(y, yc) and torch.equal(y, yt)
        assert xt.dtype == torch.bfloat16
        torch.testing.assert_close(xt.float(), x, atol=0.05, rtol=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 11, "drop_last": True}, "epoch would be empty"),
        ({"mean": (0.5, 0.5)}, "one per channel"),
        ({"std": (1.0, 0.0, 1.0)}, "positive"),
        ({"dtype": torch.int32}, "dtype"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_loader_settings_are_data_errors(kwargs, message):
    kwargs = {"batch_size": 4, **kwargs}
    with pytest.raises(DataError, match=message):
        DeviceLoader(numbered_set(10), **kwargs)
