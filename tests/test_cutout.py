"""Cutout (DeVries & Taylor 2017) on the device loader: one square per image set to the
mean after crop/flip and normalisation, checked against a per-image loop; off (0) it
leaves every batch as it was; its draws follow crop/flip's in the batch's own stream."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from bnn_nas.config import TrainConfig, check_cutout_fits, config_from_dict, load_config
from bnn_nas.data import (
    DeviceLoader,
    ImageSet,
    apply_cutout,
    crop_flip_params,
    cutout_params,
    normalize,
    random_crop_flip,
)
from bnn_nas.errors import ConfigError, DataError
from tests.conftest import SMALL_GENOTYPE
from tests.fixtures import make_image_folder, write_config

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MEAN, STD = (0.5 / 255,) * 3, (0.25,) * 3  # no uint8 pixel normalises to exactly 0


def reference_mask(h: int, w: int, side: int, cy: int, cx: int) -> np.ndarray:
    """One image's mask, pixel by pixel: rows and columns [c - side // 2, + side), clipped."""
    mask = np.zeros((h, w), dtype=bool)
    for r in range(h):
        for c in range(w):
            top, left = cy - side // 2, cx - side // 2
            mask[r, c] = top <= r < top + side and left <= c < left + side
    return mask


def random_set(n: int, h: int = 32, w: int = 32, seed: int = 0) -> ImageSet:
    images = np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    return ImageSet(images, np.arange(n) % 10, tuple(map(str, range(10))))


def loader(data: ImageSet, device: str = "cpu", **kwargs) -> DeviceLoader:
    options = {"augment": True, "shuffle": True, "drop_last": True, "seed": 3, "mean": MEAN,
               "std": STD, **kwargs}  # fmt: skip
    return DeviceLoader(data, 16, device=device, **options)


def drawn_centres(ld: DeviceLoader, epoch: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The centres batch ``b`` of ``epoch`` draws: its stream, after crop/flip's numbers."""
    g = ld._generator(epoch, b + 1)
    crop_flip_params(ld.batch_size, ld.pad, g, ld.device)
    return cutout_params(ld.batch_size, *ld.images.shape[2:], g, ld.device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("side", [1, 5, 8, 16, 32])
def test_batched_cutout_equals_a_per_image_loop(device, side):
    x = torch.randn(7, 3, 12, 10, device=device) + 5  # no zero anywhere before
    cy = torch.tensor([0, 11, 6, 3, 0, 11, 5])
    cx = torch.tensor([0, 9, 5, 9, 9, 0, 2])  # the corners and edges clip the patch
    out = apply_cutout(x.clone(), side, cy, cx).cpu().numpy()
    before = x.cpu().numpy()
    for i in range(len(x)):
        mask = reference_mask(12, 10, side, int(cy[i]), int(cx[i]))
        expected = np.where(mask[None], 0.0, before[i])
        np.testing.assert_array_equal(out[i], expected)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_loader_zeroes_exactly_one_square_per_image_and_nothing_else(device, dtype):
    data, side = random_set(64), 16
    plain = loader(data, device, dtype=dtype)
    cut = loader(data, device, dtype=dtype, cutout=side)
    for b, ((x0, y0), (x1, y1)) in enumerate(zip(plain.epoch(2), cut.epoch(2), strict=True)):
        assert torch.equal(y0, y1)
        cy, cx = drawn_centres(cut, 2, b)
        for i in range(len(x0)):
            mask = reference_mask(32, 32, side, int(cy[i]), int(cx[i]))
            a, c = x0[i].float().cpu().numpy(), x1[i].float().cpu().numpy()
            np.testing.assert_array_equal(c, np.where(mask[None], 0.0, a))  # the rest unchanged
            zero = (c == 0).all(axis=0)
            assert (zero == mask).all() and not (c == 0).any(axis=0)[~mask].any()
            rows, cols = np.nonzero(zero.any(axis=1))[0], np.nonzero(zero.any(axis=0))[0]
            # one solid square: side x side, or cut by the borders
            top, left = int(cy[i]) - side // 2, int(cx[i]) - side // 2
            assert list(rows) == list(range(max(top, 0), min(top + side, 32)))
            assert list(cols) == list(range(max(left, 0), min(left + side, 32)))
            assert zero.sum() == len(rows) * len(cols) > 0


@pytest.mark.parametrize("device", DEVICES)
def test_cutout_zero_leaves_every_batch_as_crop_flip_made_it(device):
    """Off, the loader's batches are bit-identical to crop/flip + normalise alone (the
    loader before Cutout), and on, crop/flip still draws the same numbers first."""
    data = random_set(48)
    off, on = loader(data, device), loader(data, device, cutout=8)
    for epoch in (0, 5):
        order = off.order(epoch)
        for b, ((x, y), (xc, _)) in enumerate(zip(off.epoch(epoch), on.epoch(epoch), strict=True)):
            idx = order[b * 16 : (b + 1) * 16]
            crop = random_crop_flip(off.images[idx], off.pad, off._generator(epoch, b + 1))
            expected = normalize(crop, MEAN, STD)
            assert torch.equal(x, expected) and torch.equal(y, off.labels[idx])
            kept = xc != 0
            assert torch.equal(xc[kept], expected[kept])  # same crops and flips under the patch
    unaugmented = DeviceLoader(data, 16, augment=False, cutout=8, mean=MEAN, std=STD)
    (x, _), *_ = unaugmented.epoch(0)
    assert not (x == 0).any()  # cutout belongs to augmentation


def test_same_seed_and_epoch_give_the_same_masks_so_a_resume_sees_the_same_batches():
    data = random_set(64)
    first, second = loader(data, cutout=12), loader(data, cutout=12)
    full = list(first.epoch(4))
    resumed = list(second.epoch(4, start=2))  # a run resumed mid-epoch
    for (x, y), (xr, yr) in zip(full[2:], resumed, strict=True):
        assert torch.equal(x, xr) and torch.equal(y, yr)
    masks = [(x == 0).all(dim=1) for x, _ in full]
    assert all((m.flatten(1).sum(1) > 0).all() for m in masks)
    later = [(x == 0).all(dim=1) for x, _ in loader(data, cutout=12).epoch(5)]
    assert not all(torch.equal(a, b) for a, b in zip(masks, later, strict=True))
    other_seed = [(x == 0).all(dim=1) for x, _ in loader(data, cutout=12, seed=4).epoch(4)]
    assert not all(torch.equal(a, b) for a, b in zip(masks, other_seed, strict=True))


def test_the_loader_refuses_a_cutout_it_cannot_apply():
    data = random_set(16, h=20, w=24)
    for bad in (-1, 1.5, True):
        with pytest.raises(DataError, match="cutout must be a non-negative integer"):
            loader(data, cutout=bad)
    with pytest.raises(DataError, match=r"cutout=21 is larger than the 20x24 images"):
        loader(data, cutout=21)
    assert loader(data, cutout=20).cutout == 20


def test_cutout_is_a_setting_of_train_and_final_off_by_default(tmp_path):
    defaults = config_from_dict({})
    assert defaults.train.cutout == 0 and defaults.final.cutout == 0
    config = config_from_dict({"train": {"cutout": 16}, "final": {"cutout": 8}})
    assert config.train.cutout == 16 and config.final.cutout == 8


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"final": {"cutout": -2}}, "final.cutout=-2 must be >= 0"),
     ({"train": {"cutout": 8, "augment": False}}, "train.cutout=8 applies with augmentation "
      "only but train.augment is false; set train.augment=true or train.cutout=0"),
     ({"final": {"cutout": 2.5}}, "final.cutout must be an integer")],
)  # fmt: skip
def test_a_bad_cutout_is_a_one_line_config_error(settings, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        config_from_dict(settings, "c.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("c.yaml: ")


def test_a_cutout_larger_than_the_images_is_refused_naming_the_fix(tmp_path):
    check_cutout_fits(replace(TrainConfig(), cutout=32), (32, 32, 3), "final")
    with pytest.raises(ConfigError, match=r"final.cutout=33 is larger than the 32x32 training "
                       r"images; lower it \(--set final.cutout=N, N <= 32\)"):  # fmt: skip
        check_cutout_fits(replace(TrainConfig(), cutout=33), (32, 32, 3), "final")
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 1}\n")
    with pytest.raises(ConfigError, match=r"final\.cutout=-1 must be >= 0"):
        load_config(path, ("final.cutout=-1",))


def test_bnn_nas_train_runs_on_the_sample_with_cutout_and_refuses_one_too_large(
    tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from bnn_nas.cli import main
    from bnn_nas.train import trainer

    made = []
    real = trainer.DeviceLoader

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(trainer, "DeviceLoader", spy)
    # 32x32 images as in the packaged sample, far fewer of them (a cutout, not learning)
    data = make_image_folder(tmp_path / "images", train_per_class=4, test_per_class=2)
    config = write_config(tmp_path / "c.yaml", (
        f"device: cpu\ndata: {{name: image_folder, root: {data}}}\n"
        "final: {epochs: 1, batch_size: 20}\n"
    ))  # fmt: skip
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--genotype",
                                       SMALL_GENOTYPE, "--run-dir", str(run),
                                       "--set", "final.cutout=8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    train_loader, eval_loader = made
    assert train_loader.augment and train_loader.cutout == 8 and eval_loader.cutout == 0
    assert json.loads((run / "report.json").read_text())["test_accuracy"] >= 0
    assert "cutout: 8" in (run / "config.yaml").read_text()
    refused = CliRunner().invoke(main, ["train", "--config", str(config), "--genotype",
                                        SMALL_GENOTYPE, "--run-dir", str(tmp_path / "big"),
                                        "--set", "final.cutout=40"])  # fmt: skip
    assert refused.exit_code == 2
    assert "final.cutout=40 is larger than the 32x32 training images" in refused.output


def test_a_search_trial_trains_with_train_cutout():
    """The Evaluator (every executor's trial: local, processes, streams, ray) hands
    train.cutout to the loader of its trial."""
    from tests.fixtures import trial_loaders

    settings = replace(config_from_dict({"train": {"cutout": 8}}).train, epochs=1, batch_size=20)
    made, _ = trial_loaders(settings)
    assert [ld.cutout for ld in made] == [8, 0]  # search-train masked, search-valid not
