"""Device-resident batches with batched crop/flip (and Cutout, mixup/CutMix) augmentation.

Small images make a CPU input pipeline the bottleneck of GPU training, so the whole set
lives on the device as one uint8 tensor and every batch is gathered, cropped, flipped,
normalised, (with ``cutout``) masked and (with ``mix``) mixed there with a handful of
tensor ops, no Python loop per image.

Batches are a pure function of ``(seed, epoch, batch index)``: the permutation of epoch
``e`` comes from a generator seeded with ``(seed, e)`` and the augmentation of batch
``b`` from one seeded with ``(seed, e, b)`` (crop/flip's numbers first, then Cutout's,
then mixing's, so a loader without Cutout or mixing draws what it always did). Resuming
at any epoch (or batch) replays exactly the batches an uninterrupted run would have seen;
nothing carries over.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from bnn_nas.data.arrays import ImageSet
from bnn_nas.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD
from bnn_nas.data.mix import MixedTargets, check_mix, random_mix
from bnn_nas.errors import DataError

_FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def crop_flip_params(
    batch: int, pad: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw per-image crop offsets ``dy, dx`` in ``[0, 2*pad]`` and flip flags, in that order."""
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator, device=device)
    flip = torch.randint(0, 2, (batch,), generator=generator, device=device).bool()
    return dy, dx, flip


def apply_crop_flip(
    x_uint8: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    """Crop each image of ``x`` (NCHW) at ``(dy, dx)`` from its zero-padded copy, then mirror
    it left-right where ``flip``; returns NCHW (channels_last strides)."""
    B, C, H, W = x_uint8.shape
    device = x_uint8.device
    nhwc = x_uint8.permute(0, 2, 3, 1)  # gathers read whole pixels (C contiguous bytes)
    padded = nhwc.new_zeros((B, H + 2 * pad, W + 2 * pad, C))
    padded[:, pad : pad + H, pad : pad + W] = nhwc
    rows = dy.to(device)[:, None] + torch.arange(H, device=device)  # [B, H]
    col = torch.arange(W, device=device)
    cols = dx.to(device)[:, None] + torch.where(flip.to(device)[:, None], W - 1 - col, col)
    batch = torch.arange(B, device=device)[:, None, None]
    out = padded[batch, rows[:, :, None], cols[:, None, :]]  # [B, H, W, C]
    return out.permute(0, 3, 1, 2)


def random_crop_flip(x_uint8: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop with zero padding ``pad`` and random horizontal flip of an NCHW batch.

    ``generator`` must live on ``x_uint8``'s device; draws follow :func:`crop_flip_params`.
    """
    if pad < 0:
        raise DataError(f"crop padding must be >= 0, got {pad}")
    dy, dx, flip = crop_flip_params(len(x_uint8), pad, generator, x_uint8.device)
    return apply_crop_flip(x_uint8, pad, dy, dx, flip)


def cutout_params(
    batch: int, height: int, width: int, generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw per-image Cutout centres ``cy`` in ``[0, height)`` and ``cx`` in ``[0, width)``,
    in that order (uniform over the whole image, as DeVries & Taylor 2017)."""
    cy = torch.randint(0, height, (batch,), generator=generator, device=device)
    cx = torch.randint(0, width, (batch,), generator=generator, device=device)
    return cy, cx


def cutout_mask(
    shape: Sequence[int], side: int, cy: torch.Tensor, cx: torch.Tensor
) -> torch.Tensor:
    """Bool ``[B, 1, H, W]``: True inside each image's square of ``side`` pixels.

    Image ``i``'s square spans rows ``[cy - side // 2, cy - side // 2 + side)`` and the
    same columns around ``cx``, clipped at the borders (a centre near an edge leaves a
    smaller patch). For even ``side`` this is DeVries & Taylor's ``[c - side/2, c + side/2)``.
    """
    H, W = shape[-2], shape[-1]
    top, left = cy[:, None] - side // 2, cx[:, None] - side // 2  # [B, 1]
    rows = torch.arange(H, device=cy.device)
    cols = torch.arange(W, device=cx.device)
    in_rows = (rows >= top) & (rows < top + side)  # [B, H]
    in_cols = (cols >= left) & (cols < left + side)  # [B, W]
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def apply_cutout(x: torch.Tensor, side: int, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
    """Zero one square of ``side`` pixels per image of the NCHW batch ``x``, in place, at
    the centres ``cy, cx`` (:func:`cutout_mask`). On a normalised batch 0 is the data mean
    (Cutout, DeVries & Taylor 2017). Returns ``x``."""
    return x.masked_fill_(cutout_mask(x.shape, side, cy.to(x.device), cx.to(x.device)), 0)


def random_cutout(x: torch.Tensor, side: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout with centres drawn from ``generator`` (on ``x``'s device), in place."""
    _check_cutout(side, x.shape[2], x.shape[3])
    if side == 0:
        return x
    cy, cx = cutout_params(len(x), x.shape[2], x.shape[3], generator, x.device)
    return apply_cutout(x, side, cy, cx)


def normalize(
    x_uint8: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel of an NCHW batch, returned as ``dtype``."""
    scale, shift = _affine(mean, std, x_uint8.shape[1], x_uint8.device)
    return _normalize_with(x_uint8, scale, shift, dtype)


class DeviceLoader:
    """Iterate ``(x, y)`` batches of one uint8 set held on ``device``.

    ``x`` is NCHW ``dtype`` normalised with ``mean``/``std``; ``y`` is int64. With
    ``augment``, each batch is randomly cropped (zero padding ``pad``) and flipped, then
    normalised, then, with ``cutout`` > 0, one square of ``cutout`` pixels per image is
    set to 0 (the mean), then, with ``mix`` (``mixup`` or ``cutmix``, lambda ~
    Beta(``mix_alpha``, ``mix_alpha``), bnn_nas/data/mix.py), the batch is mixed (with
    probability ``mix_prob``) and ``y`` is its :class:`~bnn_nas.data.mix.MixedTargets`. Use
    ``loader.epoch(e)`` (or ``set_epoch(e)`` then ``iter(loader)``); iterating never
    advances the epoch on its own.
    """

    def __init__(
        self,
        data: ImageSet | tuple[torch.Tensor, torch.Tensor],
        batch_size: int,
        *,
        device: torch.device | str = "cpu",
        augment: bool = False,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        pad: int = 4,
        cutout: int = 0,
        mix: str | None = None,
        mix_alpha: float = 1.0,
        mix_prob: float = 1.0,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
    ) -> None:
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.images, self.labels = self._upload(data)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
        if drop_last and batch_size > len(self.labels):
            raise DataError(
                f"batch_size {batch_size} exceeds the {len(self.labels)} examples with "
                "drop_last set, so an epoch would be empty; lower batch_size"
            )
        if dtype not in _FLOAT_DTYPES:
            raise DataError(f"loader dtype must be float32, bfloat16 or float16, got {dtype}")
        if not isinstance(seed, int) or seed < 0:
            raise DataError(f"loader seed must be a non-negative integer, got {seed!r}")
        if pad < 0:
            raise DataError(f"crop padding must be >= 0, got {pad}")
        _check_cutout(cutout, self.images.shape[2], self.images.shape[3])
        check_mix(mix, mix_alpha, mix_prob)
        self.batch_size = batch_size
        self.augment = augment
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.pad = pad
        self.cutout = cutout
        self.mix, self.mix_alpha, self.mix_prob = mix, float(mix_alpha), float(mix_prob)
        self.dtype = dtype
        self.mean, self.std = tuple(map(float, mean)), tuple(map(float, std))
        self._scale, self._shift = _affine(mean, std, self.images.shape[1], self.device)
        self._epoch = 0

    def _upload(
        self, data: ImageSet | tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One host-to-device copy; the NHWC host layout *is* channels_last memory."""
        if isinstance(data, ImageSet):
            nhwc = torch.from_numpy(np.ascontiguousarray(data.images)).to(self.device)
            images = nhwc.permute(0, 3, 1, 2)
            labels = torch.from_numpy(data.labels).to(self.device)
        else:
            images, labels = data
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise DataError(
                    f"loader images must be a uint8 NCHW tensor, got {images.dtype} "
                    f"{tuple(images.shape)}; pass an ImageSet or convert first"
                )
            images, labels = images.to(self.device), labels.to(self.device, torch.int64)
        if labels.shape != (len(images),):
            raise DataError(f"{len(images)} images but labels of shape {tuple(labels.shape)}")
        if not len(images):
            raise DataError("cannot build a loader over an empty image set")
        return images.contiguous(memory_format=self.memory_format), labels

    def __len__(self) -> int:
        n, bs = len(self.labels), self.batch_size
        return n // bs if self.drop_last else -(-n // bs)

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch that ``iter(loader)`` yields (default 0)."""
        self._epoch = _check_index(epoch, "epoch")

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | MixedTargets]]:
        return self.epoch(self._epoch)

    def epoch(
        self, epoch: int, start: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | MixedTargets]]:
        """The batches of ``epoch``, from batch index ``start`` (to resume mid-epoch)."""
        epoch, start = _check_index(epoch, "epoch"), _check_index(start, "start batch")
        order = self.order(epoch)
        for b in range(start, len(self)):
            yield self._batch(order[b * self.batch_size : (b + 1) * self.batch_size], epoch, b)

    def order(self, epoch: int) -> torch.Tensor:
        """Example indices of ``epoch`` in visiting order (on the device)."""
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(n, device=self.device)
        generator = self._generator(epoch)
        return torch.randperm(n, generator=generator, device=self.device)

    def _batch(
        self, idx: torch.Tensor, epoch: int, b: int
    ) -> tuple[torch.Tensor, torch.Tensor | MixedTargets]:
        x = self.images[idx]
        generator = self._generator(epoch, b + 1) if self.augment else None
        if generator is not None:
            x = random_crop_flip(x, self.pad, generator)
        x = x.contiguous(memory_format=self.memory_format)  # uint8: the cheap place to copy
        x = _normalize_with(x, self._scale, self._shift, self.dtype)
        if generator is not None and self.cutout:  # after crop/flip's draws, on 0 = the mean
            x = random_cutout(x, self.cutout, generator)
        if generator is not None and self.mix:  # after Cutout's draws, on the finished batch
            return random_mix(x, self.labels[idx], self.mix, self.mix_alpha, generator,
                              self.mix_prob)
        return x, self.labels[idx]

    def _generator(self, epoch: int, stream: int = 0) -> torch.Generator:
        """A fresh generator for (seed, epoch, stream): 0 = permutation, b + 1 = batch b."""
        state = np.random.SeedSequence([self.seed, epoch, stream]).generate_state(2)
        generator = torch.Generator(device=self.device)
        generator.manual_seed((int(state[0]) << 32 | int(state[1])) & ((1 << 63) - 1))
        return generator

    def __repr__(self) -> str:
        return (
            f"DeviceLoader(n={len(self.labels)}, batch_size={self.batch_size}, "
            f"device={self.device}, augment={self.augment}, cutout={self.cutout}, "
            f"mix={self.mix}{f' (alpha {self.mix_alpha:g}' if self.mix else ''}"
            f"{f', prob {self.mix_prob:g}' if self.mix and self.mix_prob < 1 else ''}"
            f"{')' if self.mix else ''}, "
            f"shuffle={self.shuffle}, drop_last={self.drop_last}, seed={self.seed}, "
            f"dtype={self.dtype})"
        )


def _affine(
    mean: Sequence[float], std: Sequence[float], channels: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``scale, shift`` with ``(x/255 - mean)/std == x*scale - shift``, shaped [1, C, 1, 1]."""
    m = np.asarray(mean, dtype=np.float64).reshape(-1)
    s = np.asarray(std, dtype=np.float64).reshape(-1)
    if len(m) != channels or len(s) != channels:
        raise DataError(
            f"mean and std need {channels} values (one per channel), got {len(m)} and {len(s)}"
        )
    if not (np.isfinite(m).all() and np.isfinite(s).all() and (s > 0).all()):
        raise DataError(f"std must be positive and mean/std finite, got mean {mean}, std {std}")
    scale = torch.tensor(1.0 / (255.0 * s), dtype=torch.float32, device=device)
    shift = torch.tensor(m / s, dtype=torch.float32, device=device)
    return scale.view(1, -1, 1, 1), shift.view(1, -1, 1, 1)


def _normalize_with(
    x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    out = x.to(torch.float32)  # a new tensor in x's memory format; the rest is in place
    out.mul_(scale).sub_(shift)
    return out if dtype == torch.float32 else out.to(dtype)


def _check_cutout(side: int, height: int, width: int) -> None:
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 0:
        raise DataError(f"cutout must be a non-negative integer (0: off), got {side!r}")
    if side > min(height, width):
        raise DataError(
            f"cutout={side} is larger than the {height}x{width} images; lower it "
            f"(at most {min(height, width)}, 0: off)"
        )


def _check_index(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DataError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)
