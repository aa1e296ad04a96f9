"""Mixing augmentations of a whole batch: mixup and CutMix, on the device.

mixup (Zhang et al., ICLR 2018) blends every image with a partner image of the same
batch, ``lam * x + (1 - lam) * x[perm]``; CutMix (Yun et al., ICCV 2019) pastes the
partner's pixels into one box instead, of area fraction ``1 - lam`` (centre uniform,
clipped at the borders, ``lam`` then recomputed from the clipped area). As in both
papers' code, one ``lam ~ Beta(alpha, alpha)`` and one random permutation of the batch
(the partners) are drawn per batch, and the loss is ``lam * CE(labels) + (1 - lam) *
CE(partners)`` (bnn_nas/train/mix_loss.py). With ``prob`` < 1 (CutMix's CIFAR runs: 0.5)
a batch is mixed with that probability, decided by one more draw from the batch's own
stream, after its mixing numbers: a resumed run mixes the same batches. A batch left
unmixed is the batch as it was, bit for bit, with ``lam`` = 1 and its own labels as the
partners; ``prob`` = 1 (the default) draws nothing more, every batch as before.

A mixed batch's labels are :class:`MixedTargets`: fixed-shape device tensors, ``lam``
included, so a captured CUDA graph reads each batch's values instead of baking one in; an
unmixed batch of a ``prob`` < 1 mix has the same structure (the choice is made on the
device, no host sync), so the graph captured on one batch replays every other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bnn_nas.errors import DataError

MIX_KINDS = ("mixup", "cutmix")


@dataclass(frozen=True)
class MixedTargets:
    """The labels of a mixed batch: ``labels`` (each image's own, int64 ``[B]``),
    ``partners`` (the labels of the images mixed in, ``labels[perm]``) and ``lam`` (a
    0-dim float32 tensor: the share of each image's own label).

    ``clone`` and ``copy_`` mirror a label tensor's, so a training step keeps static
    copies of either (bnn_nas/train/step.py)."""

    labels: Tensor
    partners: Tensor
    lam: Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def majority(self) -> Tensor:
        """Each image's label with the larger share (its own at ``lam`` = 0.5): the label
        a mixed batch's training accuracy counts against."""
        return torch.where(self.lam >= 0.5, self.labels, self.partners)

    def clone(self) -> MixedTargets:
        return MixedTargets(self.labels.clone(), self.partners.clone(), self.lam.clone())

    def copy_(self, other: MixedTargets, non_blocking: bool = False) -> MixedTargets:
        """Copy ``other``'s values into these tensors, in place."""
        if not isinstance(other, MixedTargets):
            raise TypeError(f"copying {type(other).__name__} into MixedTargets")
        self.labels.copy_(other.labels, non_blocking=non_blocking)
        self.partners.copy_(other.partners, non_blocking=non_blocking)
        self.lam.copy_(other.lam, non_blocking=non_blocking)
        return self


def check_mix(kind: str | None, alpha: float, prob: float = 1.0) -> None:
    """A mixing kind, Beta parameter and probability the loader can apply (``kind`` None:
    off)."""
    if kind is None:
        return
    if kind not in MIX_KINDS:
        raise DataError(f"mix must be one of {', '.join(MIX_KINDS)} or None, got {kind!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not (
        math.isfinite(alpha) and alpha > 0
    ):
        raise DataError(f"mix alpha must be a finite number > 0, got {alpha!r}")
    if isinstance(prob, bool) or not isinstance(prob, int | float) or not 0 <= prob <= 1:
        raise DataError(f"mix prob must be a number in [0, 1], got {prob!r}")


def mix_params(
    batch: int, alpha: float, generator: torch.Generator, device: torch.device | str = "cpu",
    *, box: bool = False, height: int = 0, width: int = 0,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """Draw one batch's mixing numbers from ``generator``, in this order: ``lam`` ~
    Beta(alpha, alpha) (0-dim float64), the partner permutation ``perm`` of
    ``range(batch)``, and with ``box`` (CutMix) the box centre ``cy`` in ``[0, height)``
    then ``cx`` in ``[0, width)`` (0-dim int64; None without ``box``).

    Beta is drawn as torch.distributions.Beta draws it (a two-class Dirichlet), with the
    generator: no host sync, and a resumed run replays it."""
    concentration = torch.full((2,), float(alpha), dtype=torch.float64, device=device)
    lam = torch._sample_dirichlet(concentration, generator=generator)[0]
    perm = torch.randperm(batch, generator=generator, device=device)
    if not box:
        return lam, perm, None, None
    cy = torch.randint(0, height, (), generator=generator, device=device)
    cx = torch.randint(0, width, (), generator=generator, device=device)
    return lam, perm, cy, cx


def cutmix_box(
    lam: Tensor, height: int, width: int, cy: Tensor, cx: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The CutMix box ``(top, bottom, left, right)`` (0-dim int64, rows ``[top, bottom)``,
    columns ``[left, right)``) for a drawn ``lam`` and centre.

    Its sides are ``floor(H * sqrt(1 - lam))`` by ``floor(W * sqrt(1 - lam))`` (Yun et
    al.'s code), placed as Cutout places its square (rows ``[cy - h // 2, cy - h // 2 +
    h)``, bnn_nas/data/loader.py) and clipped at the borders."""
    ratio = torch.sqrt(1 - lam.to(torch.float64))
    h, w = torch.floor(height * ratio).long(), torch.floor(width * ratio).long()
    top, left = cy - h // 2, cx - w // 2  # h, w >= 0
    return (top.clamp(0, height), (top + h).clamp(0, height),
            left.clamp(0, width), (left + w).clamp(0, width))  # fmt: skip


def box_lam(box: tuple[Tensor, Tensor, Tensor, Tensor], height: int, width: int) -> Tensor:
    """``lam`` of a pasted box, from its clipped area: ``1 - area / (H * W)`` (float32)."""
    top, bottom, left, right = box
    area = (bottom - top) * (right - left)
    return (1 - area.to(torch.float64) / (height * width)).to(torch.float32)


def apply_mixup(x: Tensor, lam: Tensor, perm: Tensor) -> Tensor:
    """``lam * x + (1 - lam) * x[perm]`` over the NCHW batch ``x``, in place (in ``x``'s
    dtype). Returns ``x``."""
    lam = lam.to(x.device, x.dtype)
    partner = x[perm.to(x.device)]
    return x.mul_(lam).add_(partner.mul_(1 - lam))


def apply_cutmix(x: Tensor, box: tuple[Tensor, Tensor, Tensor, Tensor], perm: Tensor) -> Tensor:
    """Paste ``x[perm]``'s pixels into the box (:func:`cutmix_box`) of every image of the
    NCHW batch ``x``, in place. Returns ``x``."""
    top, bottom, left, right = (t.to(x.device) for t in box)
    rows = torch.arange(x.shape[2], device=x.device)
    cols = torch.arange(x.shape[3], device=x.device)
    inside = ((rows >= top) & (rows < bottom))[:, None] & ((cols >= left) & (cols < right))
    return x.copy_(torch.where(inside, x[perm.to(x.device)], x))


def random_mix(
    x: Tensor, labels: Tensor, kind: str, alpha: float, generator: torch.Generator,
    prob: float = 1.0,
) -> tuple[Tensor, MixedTargets]:
    """Mix the batch ``x`` (in place) with partners and ``lam`` drawn from ``generator``
    (on ``x``'s device, :func:`mix_params`); returns it and its :class:`MixedTargets`.

    ``prob`` < 1: then one uniform more from ``generator``; at or above ``prob`` the batch
    is kept (``lam`` = 1, each image its own partner: mixup adds 0 times itself, CutMix's
    box is empty), chosen on the device so the same kernels run either way."""
    check_mix(kind, alpha, prob)
    B, _, H, W = x.shape
    cutmix = kind == "cutmix"
    lam, perm, cy, cx = mix_params(B, alpha, generator, x.device, box=cutmix, height=H, width=W)
    if prob < 1:  # prob 1 draws nothing more: the stream, and every batch, as before
        keep = torch.rand((), generator=generator, device=x.device) >= prob
        lam = torch.where(keep, torch.ones_like(lam), lam)
        perm = torch.where(keep, torch.arange(B, device=perm.device), perm)
    if cutmix:
        box = cutmix_box(lam, H, W, cy, cx)
        apply_cutmix(x, box, perm)
        share = box_lam(box, H, W)
    else:
        share = lam.to(torch.float32)
        apply_mixup(x, share, perm)
    return x, MixedTargets(labels, labels[perm.to(labels.device)], share.to(labels.device))
