"""mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on the device loader: one lambda
and one partner permutation per batch from the batch's own stream (after crop/flip's and
Cutout's draws), checked against per-image references; off, every batch is as it was."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bnn_nas.data import (
    DeviceLoader,
    ImageSet,
    MixedTargets,
    apply_cutmix,
    crop_flip_params,
    cutmix_box,
    cutout_params,
    mix_params,
    normalize,
    random_crop_flip,
    random_cutout,
)
from bnn_nas.data.mix import box_lam
from bnn_nas.errors import DataError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MEAN, STD = (0.5 / 255,) * 3, (0.25,) * 3


def random_set(n: int, h: int = 32, w: int = 32, seed: int = 0) -> ImageSet:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    return ImageSet(images, rng.integers(0, 10, n), tuple(map(str, range(10))))


def loader(data: ImageSet, device: str = "cpu", **kwargs) -> DeviceLoader:
    options = {"augment": True, "shuffle": True, "drop_last": True, "seed": 3, "mean": MEAN,
               "std": STD, **kwargs}  # fmt: skip
    return DeviceLoader(data, 16, device=device, **options)


def drawn(ld: DeviceLoader, epoch: int, b: int):
    """What batch ``b`` of ``epoch`` draws for mixing: its stream after crop/flip's (and
    Cutout's) numbers, as floats and lists."""
    g = ld._generator(epoch, b + 1)
    crop_flip_params(ld.batch_size, ld.pad, g, ld.device)
    if ld.cutout:
        cutout_params(ld.batch_size, *ld.images.shape[2:], g, ld.device)
    lam, perm, cy, cx = mix_params(ld.batch_size, ld.mix_alpha, g, ld.device,
                                   box=ld.mix == "cutmix", height=ld.images.shape[2],
                                   width=ld.images.shape[3])  # fmt: skip
    centre = None if cy is None else (int(cy), int(cx))
    return float(lam), perm.tolist(), centre


def reference_mixup(batch: np.ndarray, perm: list[int], lam: float) -> np.ndarray:
    """Image by image, in float32: lam * x_i + (1 - lam) * x_perm(i)."""
    lam32 = np.float32(lam)
    return np.stack([lam32 * batch[i] + (np.float32(1) - lam32) * batch[j]
                     for i, j in enumerate(perm)])  # fmt: skip


def reference_cutmix(
    batch: np.ndarray, perm: list[int], lam: float, cy: int, cx: int
) -> tuple[np.ndarray, float]:
    """Pixel by pixel: the box of sides floor(H sqrt(1 - lam)) x floor(W sqrt(1 - lam)),
    rows [cy - h // 2, + h) and columns likewise, clipped, holds the partner's pixels;
    lambda is 1 - (clipped area) / (H W)."""
    _, _, H, W = batch.shape
    h, w = int(H * math.sqrt(1 - lam)), int(W * math.sqrt(1 - lam))
    top, left = cy - h // 2, cx - w // 2
    out = batch.copy()
    area = 0
    for r in range(H):
        for c in range(W):
            if top <= r < top + h and left <= c < left + w:
                area += 1
                for i, j in enumerate(perm):
                    out[i, :, r, c] = batch[j, :, r, c]
    return out, float(np.float32(1 - area / (H * W)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
@pytest.mark.parametrize("cutout", [0, 8])
def test_the_loader_mixes_each_batch_as_the_per_image_reference(device, kind, cutout):
    data = random_set(48)
    plain = loader(data, device, cutout=cutout)
    mixed = loader(data, device, cutout=cutout, mix=kind, mix_alpha=0.7)
    lams = []
    for epoch in (0, 3):
        batches = zip(plain.epoch(epoch), mixed.epoch(epoch), strict=True)
        for b, ((x, y), (xm, target)) in enumerate(batches):
            assert isinstance(target, MixedTargets) and torch.equal(target.labels, y)
            lam, perm, centre = drawn(mixed, epoch, b)
            assert sorted(perm) == list(range(16))
            before = x.cpu().numpy()
            if kind == "mixup":
                expected, share = reference_mixup(before, perm, lam), float(np.float32(lam))
            else:
                expected, share = reference_cutmix(before, perm, lam, *centre)
            np.testing.assert_array_equal(xm.cpu().numpy(), expected)
            assert target.lam.dtype == torch.float32 and target.lam.shape == ()
            assert float(target.lam) == share
            assert target.partners.tolist() == [int(y[j]) for j in perm]
            lams.append(lam)
    assert len(set(lams)) == len(lams)  # a new lambda for every batch


@pytest.mark.parametrize("device", DEVICES)
def test_a_cutmix_box_at_a_border_is_clipped_and_lambda_is_its_area(device):
    x = torch.randn(5, 3, 12, 10, device=device)
    perm = torch.tensor([3, 0, 4, 1, 2])
    before = x.cpu().numpy()
    for lam, cy, cx in [(0.75, 0, 9), (0.75, 11, 0), (0.75, 6, 5), (0.1, 5, 0), (0.999, 3, 3),
                        (1e-9, 0, 0)]:  # fmt: skip
        lam64 = torch.tensor(lam, dtype=torch.float64, device=device)
        box = cutmix_box(lam64, 12, 10, torch.tensor(cy, device=device),
                         torch.tensor(cx, device=device))  # fmt: skip
        out = apply_cutmix(x.clone(), box, perm).cpu().numpy()
        expected, share = reference_cutmix(before, perm.tolist(), lam, cy, cx)
        np.testing.assert_array_equal(out, expected)
        assert float(box_lam(box, 12, 10)) == share
    # lam 0.75 -> a 6 x 5 box; centred at row 0, column 9 only 3 x 3 of it is left
    box = cutmix_box(torch.tensor(0.75, dtype=torch.float64), 12, 10, torch.tensor(0),
                     torch.tensor(9))  # fmt: skip
    assert [int(t) for t in box] == [0, 3, 7, 10]
    assert float(box_lam(box, 12, 10)) == pytest.approx(1 - 9 / 120)


@pytest.mark.parametrize("device", DEVICES)
def test_mix_off_leaves_every_batch_bit_identical(device):
    """``mix=None`` is the loader without the setting, and both are crop/flip + normalise
    (+ Cutout) as before; mixing belongs to augmentation, like Cutout."""
    data = random_set(48)
    for cutout in (0, 8):
        without, off = loader(data, device, cutout=cutout), loader(data, device, cutout=cutout,
                                                                   mix=None)  # fmt: skip
        for epoch in (0, 5):
            order = without.order(epoch)
            for b, ((x, y), (xo, yo)) in enumerate(zip(without.epoch(epoch), off.epoch(epoch),
                                                       strict=True)):  # fmt: skip
                idx = order[b * 16 : (b + 1) * 16]
                g = without._generator(epoch, b + 1)
                expected = normalize(random_crop_flip(without.images[idx], without.pad, g),
                                     MEAN, STD)  # fmt: skip
                if cutout:
                    random_cutout(expected, cutout, g)
                assert torch.equal(x, expected) and torch.equal(xo, expected)
                assert type(yo) is torch.Tensor and torch.equal(yo, y)
                assert torch.equal(y, without.labels[idx])
    unaugmented = DeviceLoader(data, 16, augment=False, mix="mixup", mean=MEAN, std=STD)
    (x, y), *_ = unaugmented.epoch(0)
    assert type(y) is torch.Tensor and torch.equal(x, normalize(unaugmented.images[:16], MEAN,
                                                                STD))  # fmt: skip


def test_the_draws_replay_for_a_resume_and_change_with_epoch_and_seed():
    data = random_set(64)

    def lams(ld, epoch, start=0):
        return [(float(t.lam), t.partners.tolist()) for _, t in ld.epoch(epoch, start=start)]

    first = loader(data, mix="cutmix")
    full = list(first.epoch(4))
    resumed = list(loader(data, mix="cutmix").epoch(4, start=2))  # resumed mid-epoch
    for (x, t), (xr, tr) in zip(full[2:], resumed, strict=True):
        assert torch.equal(x, xr)
        assert all(torch.equal(getattr(t, k), getattr(tr, k))
                   for k in ("labels", "partners", "lam"))  # fmt: skip
    assert lams(first, 4) != lams(first, 5)
    assert lams(first, 4) != lams(loader(data, mix="cutmix", seed=4), 4)


def test_lambda_follows_beta_alpha_alpha():
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    for alpha in (0.2, 1.0, 2.0):
        draws = [float(mix_params(4, alpha, g)[0]) for _ in range(2000)]
        assert scipy_stats.kstest(draws, "beta", args=(alpha, alpha)).pvalue > 1e-3


def test_mixed_targets_count_accuracy_against_the_larger_share_and_copy_in_place():
    labels, partners = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    for lam, expected in ((0.7, [1, 2, 3]), (0.5, [1, 2, 3]), (0.3, [4, 5, 6])):
        assert MixedTargets(labels, partners, torch.tensor(lam)).majority().tolist() == expected
    static = MixedTargets(labels, partners, torch.tensor(0.5)).clone()
    kept = static.lam
    static.copy_(MixedTargets(partners, labels, torch.tensor(0.25)))
    assert static.lam is kept and float(kept) == 0.25 and static.labels.tolist() == [4, 5, 6]
    assert len(static) == 3 and labels.tolist() == [1, 2, 3]  # the source is untouched
    with pytest.raises(TypeError):
        static.copy_(labels)


def test_the_loader_refuses_a_mix_it_cannot_apply():
    data = random_set(16)
    with pytest.raises(DataError, match="mix must be one of mixup, cutmix or None, got 'mixit'"):
        loader(data, mix="mixit")
    for bad in (0, -1.0, math.inf, math.nan, True):
        with pytest.raises(DataError, match="mix alpha must be a finite number > 0"):
            loader(data, mix="mixup", mix_alpha=bad)
    assert loader(data, mix="cutmix", mix_alpha=0.2).mix_alpha == 0.2
