"""mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on the device loader: one lambda
and one partner permutation per batch from the batch's own stream (after crop/flip's and
Cutout's draws), checked against per-image references; off, every batch is as it was."""

from __future__ import annotations

import math
import re

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
    # mix.prob < 1: whether a batch is mixed comes from its own stream too, so a resumed
    # epoch mixes the same batches as the uninterrupted one
    for kind in ("cutmix", "mixup"):
        sometimes = loader(data, mix=kind, mix_prob=0.5)
        full = list(sometimes.epoch(4)) + list(sometimes.epoch(5))
        resumed = list(loader(data, mix=kind, mix_prob=0.5).epoch(4, start=1))
        resumed += list(loader(data, mix=kind, mix_prob=0.5).epoch(5))
        assert len(full[1:]) == len(resumed)
        for (x, t), (xr, tr) in zip(full[1:], resumed, strict=True):
            assert torch.equal(x, xr)
            assert all(torch.equal(getattr(t, k), getattr(tr, k))
                       for k in ("labels", "partners", "lam"))  # fmt: skip
        assert {float(t.lam) == 1.0 for _, t in full} == {True, False}  # both happen


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_mix_prob_mixes_a_batch_with_that_probability_else_keeps_it_and_its_targets_shape(
    device, kind
):
    """mix.prob (CutMix's CIFAR runs: 0.5): after a batch's mixing draws, one more uniform
    from its stream, < prob: the batch is the prob-1 loader's (the same lam, partners, box);
    else it is the unmixed batch bit for bit, with MixedTargets of the same shapes and
    dtypes, lam = 1 and partners = labels (a captured CUDA graph sees one structure).
    prob 1 (the default) draws nothing more: every batch as before."""
    data = random_set(96)
    plain = loader(data, device)
    always = loader(data, device, mix=kind, mix_alpha=0.7)
    assert always.mix_prob == 1.0
    explicit = loader(data, device, mix=kind, mix_alpha=0.7, mix_prob=1.0)
    sometimes = loader(data, device, mix=kind, mix_alpha=0.7, mix_prob=0.4)
    never = loader(data, device, mix=kind, mix_alpha=0.7, mix_prob=0.0)
    coins = []
    for epoch in (0, 2, 7):
        batches = zip(plain.epoch(epoch), always.epoch(epoch), explicit.epoch(epoch),
                      sometimes.epoch(epoch), never.epoch(epoch), strict=True)  # fmt: skip
        for b, ((x, y), (xa, ta), (xe, te), (xs, ts), (xn, tn)) in enumerate(batches):
            assert torch.equal(xe, xa) and torch.equal(te.lam, ta.lam)
            assert torch.equal(te.partners, ta.partners)
            g = sometimes._generator(epoch, b + 1)  # its stream after the mixing draws
            drawn_again = drawn(sometimes, epoch, b)
            assert drawn_again == drawn(always, epoch, b)
            crop_flip_params(16, sometimes.pad, g, sometimes.device)
            mix_params(16, 0.7, g, sometimes.device, box=kind == "cutmix", height=32,
                       width=32)  # fmt: skip
            mixed = bool(torch.rand((), generator=g, device=sometimes.device) < 0.4)
            coins.append(mixed)
            for t, xm, expected in ((ts, xs, (xa, ta) if mixed else None), (tn, xn, None)):
                assert isinstance(t, MixedTargets) and torch.equal(t.labels, y)
                assert t.lam.dtype == ta.lam.dtype and t.lam.shape == ta.lam.shape == ()
                assert t.partners.dtype == ta.partners.dtype
                assert t.partners.shape == ta.partners.shape
                assert t.lam.device == ta.lam.device and t.partners.device == y.device
                if expected is None:  # kept: the unmixed batch, its own labels at share 1
                    assert torch.equal(xm, x) and float(t.lam) == 1.0
                    assert torch.equal(t.partners, y)
                else:
                    assert torch.equal(xm, expected[0]) and torch.equal(t.lam, expected[1].lam)
                    assert torch.equal(t.partners, expected[1].partners)
    assert 0 < sum(coins) < len(coins)  # some batches mixed, some kept


def test_mix_prob_out_of_range_is_refused_by_the_loader():
    data = random_set(16)
    for bad in (-0.1, 1.5, math.nan, math.inf, True, "0.5"):
        with pytest.raises(DataError, match=r"mix prob must be a number in \[0, 1\]"):
            loader(data, mix="cutmix", mix_prob=bad)
    assert loader(data, mix="cutmix", mix_prob=0).mix_prob == 0.0


def test_lambda_follows_beta_alpha_alpha():
    """Two-sample Kolmogorov-Smirnov against torch.distributions.Beta's draws (no scipy:
    the test must run where the suite runs): D below its 0.1% critical value."""

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    n = 2000
    critical = 1.95 * math.sqrt(2 / n)  # c(0.001) * sqrt((n + m) / (n m)), n = m
    for alpha in (0.2, 1.0, 2.0):
        ours = np.sort([float(mix_params(4, alpha, g)[0]) for _ in range(n)])
        theirs = np.sort(torch.distributions.Beta(alpha, alpha).sample((n,)).numpy())
        grid = np.concatenate([ours, theirs])
        gap = np.abs(np.searchsorted(ours, grid, side="right")
                     - np.searchsorted(theirs, grid, side="right")) / n  # fmt: skip
        assert gap.max() < critical, alpha
        assert abs(ours.mean() - 0.5) < 0.03
        assert ours.var() == pytest.approx(1 / (4 * (2 * alpha + 1)), rel=0.15)


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


# --- the setting, the loss and the step ----------------------------------------------------


def test_mix_is_a_setting_of_train_and_final_off_by_default():
    from bnn_nas.config import MixConfig, config_from_dict

    defaults = config_from_dict({})
    assert defaults.train.mix is None and defaults.final.mix is None
    config = config_from_dict({"train": {"mix": {"kind": "cutmix"}},
                               "final": {"mix": {"kind": "mixup", "alpha": 0.2}}})  # fmt: skip
    assert config.train.mix == MixConfig("cutmix", 1.0) == MixConfig("cutmix", 1.0, 1.0)
    assert config.final.mix == MixConfig("mixup", 0.2)
    half = config_from_dict({"final": {"mix": {"kind": "cutmix", "prob": 0.5}}})
    assert half.final.mix == MixConfig("cutmix", 1.0, 0.5)
    assert config_from_dict({"final": {"mix": {"prob": 0}}}).final.mix.prob == 0.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"final": {"mix": {"alpha": 0}}}, "final.mix.alpha=0 must be > 0 (lambda ~ Beta(alpha, "
      "alpha)); set --set final.mix.alpha=1"),
     ({"train": {"mix": {"alpha": -0.5}}}, "train.mix.alpha=-0.5 must be > 0"),
     ({"final": {"mix": {"alpha": math.nan}}}, "final.mix.alpha=nan must be > 0"),
     ({"final": {"mix": {"kind": "mixupp"}}}, "final.mix.kind='mixupp' is not a mixing "
      "augmentation; set final.mix.kind=mixup or cutmix (or final.mix=null: off)"),
     ({"train": {"augment": False, "mix": {"kind": "cutmix"}}}, "train.mix applies with "
      "augmentation only but train.augment is false; set train.augment=true or train.mix=null"),
     ({"final": {"mix": {"alpah": 1}}}, "unknown key final.mix.alpah; did you mean "
      "final.mix.alpha?"),
     ({"final": {"mix": "cutmix"}}, "final.mix must be a mapping of settings (kind, alpha, "
      "prob) or null, not 'cutmix'"),
     ({"final": {"mix": {"kind": "cutmix", "prob": 1.5}}}, "final.mix.prob=1.5 must be in "
      "[0, 1] (the share of batches mixed; 1: every batch); set --set final.mix.prob=0.5 "
      "(CutMix's CIFAR value) or 1"),
     ({"train": {"mix": {"prob": -0.1}}}, "train.mix.prob=-0.1 must be in [0, 1]"),
     ({"final": {"mix": {"prob": math.nan}}}, "final.mix.prob=nan must be in [0, 1]"),
     ({"final": {"mix": {"prob": "half"}}}, "final.mix.prob must be a number, not 'half'")],
)  # fmt: skip
def test_a_bad_mix_is_a_one_line_config_error(settings, message):
    from bnn_nas.config import config_from_dict
    from bnn_nas.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        config_from_dict(settings, "c.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("c.yaml: ")


def smoothed_ce(logits: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean over the batch of -(1 - eps) log p_y - eps / K sum_k log p_k, written out."""
    logp = logits.log_softmax(dim=1)
    own = logp.gather(1, labels[:, None])[:, 0]
    return (-(1 - eps) * own - eps / logits.shape[1] * logp.sum(dim=1)).mean()


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_the_mixed_loss_is_lam_ce_own_plus_one_minus_lam_ce_partner(eps):
    from bnn_nas.config import DistillConfig
    from bnn_nas.train.distill_loss import DistillLoss, kd_term
    from bnn_nas.train.mix_loss import MixCrossEntropy

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, generator=g, dtype=torch.float64)
    teacher = torch.randn(6, 10, generator=g, dtype=torch.float64)
    labels, partners = torch.tensor([0, 3, 3, 9, 1, 5]), torch.tensor([3, 3, 0, 1, 5, 9])
    lam = 0.3125
    target = MixedTargets(labels, partners, torch.tensor(lam, dtype=torch.float32))
    expected = lam * smoothed_ce(logits, labels, eps) + (1 - lam) * smoothed_ce(
        logits, partners, eps)
    loss = MixCrossEntropy(label_smoothing=eps)
    torch.testing.assert_close(loss(logits, target), expected, rtol=1e-12, atol=0)
    plain = torch.nn.CrossEntropyLoss(label_smoothing=eps)
    assert torch.equal(loss(logits, labels), plain(logits, labels))  # mix off: as before
    kd = kd_term(logits, teacher, 4.0)
    ce_kl = DistillLoss(DistillConfig("t", "ce_kl", 4.0, 0.25), label_smoothing=eps)
    torch.testing.assert_close(ce_kl(logits, target, teacher), 0.75 * expected + 0.25 * kd,
                               rtol=1e-12, atol=0)  # fmt: skip
    assert torch.equal(ce_kl(logits, labels, teacher), 0.75 * plain(logits, labels) + 0.25 * kd)
    kl = DistillLoss(DistillConfig("t", "kl", 4.0, 1.0), label_smoothing=eps)
    assert torch.equal(kl(logits, target, teacher), kl(logits, labels, teacher))


def test_the_auxiliary_head_mixes_its_cross_entropy_too():
    from bnn_nas.space.cell_parts import AuxiliaryLoss
    from bnn_nas.train.mix_loss import MixCrossEntropy

    net = torch.nn.Linear(1, 1)
    logits, aux = torch.randn(4, 10, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    target = MixedTargets(torch.tensor([1, 2, 3, 4]), torch.tensor([2, 3, 4, 1]),
                          torch.tensor(0.75))  # fmt: skip
    loss = AuxiliaryLoss(MixCrossEntropy(), net, 0.4, MixCrossEntropy(label_smoothing=0.1))
    net.auxiliary_logits = aux
    expected = MixCrossEntropy()(logits, target) + 0.4 * (
        0.75 * smoothed_ce(aux, target.labels, 0.1) + 0.25 * smoothed_ce(aux, target.partners, 0.1))
    torch.testing.assert_close(loss(logits, target), expected, rtol=1e-6, atol=0)  # head: float32


def test_the_eager_step_trains_on_the_mix_counts_the_larger_share_and_shows_the_teacher_it():
    from bnn_nas.config import DistillConfig
    from bnn_nas.train.distill_loss import DistillLoss
    from bnn_nas.train.step import EagerStep

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4)).double()
    seen = []

    class Teacher(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.flatten(1)[:, :4] * 3

    x = torch.randn(8, 3, 2, 2, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    partners = torch.tensor([1, 1, 3, 3, 2, 0, 0, 2])
    loss = DistillLoss(DistillConfig("t", "ce_kl", 4.0, 0.5), label_smoothing=0.1)
    step = EagerStep(model, model, torch.optim.SGD(model.parameters(), lr=0.0), loss,
                     bf16=False, grad_clip=None, device=torch.device("cpu"), teacher=Teacher())
    for lam, majority in ((0.6, labels), (0.4, partners)):
        step.reset()
        target = MixedTargets(labels, partners, torch.tensor(lam))
        step(x, target)
        logits = model(x).float()
        assert seen[-1] is x  # the teacher sees the student's (mixed) batch
        expected = loss(logits, target, Teacher()(x).float()) * 8
        torch.testing.assert_close(step.loss_sum, expected.detach(), rtol=1e-6, atol=0)
        assert int(step.correct) == int((logits.argmax(1) == majority).sum())


# --- training: fit, compile, a search trial, bnn-nas train killed and resumed --------------


def _fit_tiny(settings, monkeypatch=None):
    import random

    from bnn_nas.space.network import CellNetwork
    from bnn_nas.train import fit
    from tests.fixtures import tiny_search_data, tiny_space

    space, data = tiny_space(), tiny_search_data()
    torch.manual_seed(0)
    net = CellNetwork(space.random_sample(random.Random(1)), space, 10)
    return fit(net, data.train, settings, device=torch.device("cpu"), seed=0,
               stats=data.stats, eval_set=data.valid)  # fmt: skip


def test_a_fit_with_mix_trains_the_same_compiled_and_differs_from_one_without(monkeypatch):
    """final.compile: the forward is compiled, mixing happens before it (Dynamo's eager
    backend here, so the figures are the eager ones to rounding)."""
    from dataclasses import replace

    from bnn_nas.config import MixConfig, TrainConfig

    settings = replace(TrainConfig(), epochs=2, batch_size=20, label_smoothing=0.1,
                       mix=MixConfig("mixup", 0.4))  # fmt: skip
    eager = _fit_tiny(settings)
    real_compile = torch.compile
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compiled.append(1)
                        or real_compile(model, backend="eager"))  # fmt: skip
    graph = _fit_tiny(replace(settings, compile=True))
    assert compiled == [1]
    for a, b in zip(eager, graph, strict=True):
        assert math.isfinite(a.train_loss) and 0 <= a.train_acc <= 1
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-5)
        assert b.train_acc == a.train_acc and b.eval_acc == a.eval_acc
    monkeypatch.undo()
    unmixed = _fit_tiny(replace(settings, mix=None))
    assert [m.train_loss for m in unmixed] != [m.train_loss for m in eager]


def test_a_search_trial_trains_with_train_mix():
    """The Evaluator (every executor's trial) hands train.mix to its trial's training
    loader only; the search-valid loader scores unmixed images."""
    from dataclasses import replace

    from bnn_nas.config import config_from_dict
    from tests.fixtures import trial_loaders

    settings = replace(config_from_dict({"train": {"mix": {"kind": "cutmix", "prob": 0.5}}}
                                        ).train, epochs=1, batch_size=20)  # fmt: skip
    made, result = trial_loaders(settings)
    assert [(ld.mix, ld.mix_alpha, ld.mix_prob) for ld in made] == [("cutmix", 1.0, 0.5),
                                                                    (None, 1.0, 1.0)]  # fmt: skip
    assert 0 <= result.metrics["accuracy"] <= 1 and math.isfinite(result.metrics["loss"])


def _sample_folder(root, per_class: int, test_per_class: int):
    """The packaged sample's first ``per_class`` training images of each class (and
    ``test_per_class`` test images) as an image folder: real CIFAR-10 pixels, few enough
    for a CPU epoch of about a second."""
    from PIL import Image

    from bnn_nas.data import load_cifar10_sample

    sample = load_cifar10_sample()
    for split, images, count in (("train", sample.train, per_class),
                                 ("test", sample.test, test_per_class)):  # fmt: skip
        for label, name in enumerate(images.classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i, index in enumerate(np.nonzero(images.labels == label)[0][:count]):
                Image.fromarray(images.images[index]).save(folder / f"{i:04d}.png")
    return root


@pytest.mark.slow
def test_bnn_nas_train_with_final_mix_killed_and_resumed_ends_as_an_uninterrupted_run(tmp_path):
    """CutMix (on half the batches, mix.prob 0.5) with Cutout, label smoothing and ce_kl
    distillation (T = 4) from a float teacher on packaged-sample images: SIGKILLed in epoch
    2, resumed, every figure equals the uninterrupted run's (whether and how each batch is
    mixed is replayed from its seed)."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import SMALL_GENOTYPE
    from tests.fixtures import kill_after_epochs, metrics_rows, write_config
    from tests.test_recipe import _teacher_dir

    teacher, _ = _teacher_dir(tmp_path / "teacher")
    data = _sample_folder(tmp_path / "images", per_class=24, test_per_class=4)
    config = write_config(tmp_path / "config.yaml", (
        f"seed: 2\ndevice: cpu\ndata: {{name: image_folder, root: {data}}}\n"
        "final:\n  epochs: 2\n  batch_size: 16\n  lr: 0.01\n  label_smoothing: 0.1\n"
        "  cutout: 8\n  mix: {kind: cutmix, alpha: 1.0, prob: 0.5}\n"
        f"  distill: {{teacher: {teacher}, loss: ce_kl, temperature: 4.0, weight: 0.5}}\n"
    ))  # fmt: skip

    def command(run_dir, *extra):
        return [sys.executable, "-m", "bnn_nas.cli", "train", "--config", str(config),
                "--genotype", SMALL_GENOTYPE, "--run-dir", str(run_dir), *extra]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(command(straight), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    kill_after_epochs(command(killed), killed, 1, env)
    assert len(metrics_rows(killed)) == 1, "the kill did not land in epoch 2"
    result = subprocess.run(command(killed, "--resume"), env=env, capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    a, b = metrics_rows(straight), metrics_rows(killed)
    assert len(a) == len(b) == 2
    for row_a, row_b in zip(a, b, strict=True):
        for key in ("epoch", "lr", "train_loss", "train_acc", "eval_loss", "eval_acc"):
            assert float(row_a[key]) == pytest.approx(float(row_b[key]), rel=1e-6), key
    assert "mix: {kind: cutmix, alpha: 1.0, prob: 0.5}" in (killed / "config.yaml").read_text()
    report = json.loads((killed / "report.json").read_text())
    assert report == {**json.loads((straight / "report.json").read_text()),
                      **{k: report[k] for k in ("train_seconds", "wall_seconds_this_session",
                                                "images_per_s")}}  # fmt: skip
