"""Seeded, class-balanced train/validation splits of a training set.

Search scores candidates on a held-out part of the training set (never the test set).
Each class is split in the proportion of the whole, so a small validation set still
sees every class, and the same seed always gives the same split.
"""

from __future__ import annotations

import numpy as np

from bnn_nas.errors import DataError


def class_balanced_split(
    labels: np.ndarray,
    valid_fraction: float | None = None,
    *,
    n_train: int | None = None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Split example indices into sorted, disjoint ``(train, valid)`` arrays covering all.

    Give exactly one size: ``valid_fraction`` (0 < f < 1 of the examples go to valid) or
    ``n_train`` (that many go to train, the rest to valid). Every class lands in both
    parts in proportion to its size (largest-remainder rounding, ties broken by the seed).
    """
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise DataError(f"labels must be a 1-D integer array, got {y.dtype} shape {y.shape}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"split seed must be a non-negative integer, got {seed!r}")
    n = len(y)
    target = _train_size(n, valid_fraction, n_train)
    classes, counts = np.unique(y, return_counts=True)
    rng = np.random.default_rng(seed)
    per_class = _allocate(counts, target, rng)
    for cls, count, take in zip(classes, counts, per_class, strict=True):
        if take < 1 or take > count - 1:
            raise DataError(
                f"class {cls} has {count} examples, so a train size of {target} of {n} leaves "
                f"it {take} train and {count - take} valid; every class needs at least one of "
                "each: change valid_fraction / n_train"
            )
    train_parts, valid_parts = [], []
    for cls, take in zip(classes, per_class, strict=True):
        members = rng.permutation(np.flatnonzero(y == cls))
        train_parts.append(members[:take])
        valid_parts.append(members[take:])
    train = np.sort(np.concatenate(train_parts)).astype(np.int64)
    valid = np.sort(np.concatenate(valid_parts)).astype(np.int64)
    return train, valid


def _train_size(n: int, valid_fraction: float | None, n_train: int | None) -> int:
    if (valid_fraction is None) == (n_train is None):
        raise DataError("give exactly one of valid_fraction and n_train to split a training set")
    if n < 2:
        raise DataError(f"cannot split {n} example(s) into train and valid; use more data")
    if n_train is not None:
        if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)):
            raise DataError(f"n_train must be an integer, got {n_train!r}")
        if not 1 <= n_train <= n - 1:
            raise DataError(f"n_train={n_train} must lie in [1, {n - 1}] for {n} examples")
        return int(n_train)
    f = float(valid_fraction)  # type: ignore[arg-type]
    if not 0.0 < f < 1.0:
        raise DataError(f"valid_fraction={valid_fraction} must lie strictly between 0 and 1")
    return n - round(n * f)


def _allocate(counts: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Integers proportional to ``counts`` summing to ``total`` (largest remainder)."""
    scaled = counts.astype(np.int64) * total  # exact integers: ties stay exact ties
    base, remainder = np.divmod(scaled, int(counts.sum()))
    short = total - int(base.sum())
    if short:
        # Largest remainder first; a seeded random key breaks ties fairly.
        order = np.lexsort((rng.random(len(counts)), -remainder))
        base[order[:short]] += 1
    return base
