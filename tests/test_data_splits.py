"""Seeded class-balanced train/valid splits."""

from __future__ import annotations

import numpy as np
import pytest

from bnn_nas.data import class_balanced_split
from bnn_nas.errors import DataError


def check_partition(labels: np.ndarray, train: np.ndarray, valid: np.ndarray) -> None:
    assert train.dtype == np.int64 and valid.dtype == np.int64
    assert np.intersect1d(train, valid).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, valid])), np.arange(len(labels)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(valid) > 0)


def test_fraction_split_is_balanced_disjoint_and_covering():
    labels = np.repeat(np.arange(10), 50)
    np.random.default_rng(1).shuffle(labels)
    train, valid = class_balanced_split(labels, 0.2, seed=0)
    check_partition(labels, train, valid)
    assert list(np.bincount(labels[valid], minlength=10)) == [10] * 10
    assert list(np.bincount(labels[train], minlength=10)) == [40] * 10


def test_n_train_split_spreads_the_remainder_one_per_class():
    labels = np.repeat(np.arange(4), 25)
    train, valid = class_balanced_split(labels, n_train=42, seed=3)
    check_partition(labels, train, valid)
    counts = np.bincount(labels[train], minlength=4)
    assert counts.sum() == 42 and sorted(counts) == [10, 10, 11, 11]


def test_imbalanced_classes_split_in_proportion():
    labels = np.array([0] * 80 + [1] * 20)
    train, valid = class_balanced_split(labels, 0.25, seed=0)
    check_partition(labels, train, valid)
    assert list(np.bincount(labels[valid])) == [20, 5]


def test_same_seed_same_split_different_seed_different_split():
    labels = np.repeat(np.arange(5), 40)
    a = class_balanced_split(labels, 0.1, seed=7)
    b = class_balanced_split(labels, 0.1, seed=7)
    c = class_balanced_split(labels, 0.1, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert list(np.bincount(labels[c[1]])) == [4] * 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"valid_fraction": 0.0}, "strictly between"),
        ({"valid_fraction": 1.0}, "strictly between"),
        ({"n_train": 0}, "must lie in"),
        ({"n_train": 20}, "must lie in"),
        ({"n_train": 19}, "at least one of each"),  # leaves one class without valid
        ({"valid_fraction": 0.01}, "at least one of each"),
        ({}, "exactly one"),
        ({"valid_fraction": 0.5, "n_train": 10}, "exactly one"),
        ({"valid_fraction": 0.5, "seed": -1}, "seed"),
    ],
)
def test_impossible_sizes_are_errors(kwargs, message):
    labels = np.repeat(np.arange(2), 10)
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(DataError, match=message):
        class_balanced_split(labels, **kwargs)


def test_a_class_too_small_to_split_is_named():
    labels = np.array([0, 0, 0, 0, 1])
    with pytest.raises(DataError, match="class 1 has 1 examples"):
        class_balanced_split(labels, 0.4, seed=0)
