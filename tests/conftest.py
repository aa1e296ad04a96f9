"""Shared test settings (small CPU ops run fastest on one thread), fixtures and the
genotypes several test files use (import them: ``from tests.conftest import DARTS_V2``)."""

from __future__ import annotations

import pytest
import torch

from bnn_nas.primitives import REGISTRY
from bnn_nas.primitives import plugins as plugin_module

torch.set_num_threads(1)

# DARTS V2 exactly as written in DARTS's genotypes.py.
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
# A small binary genotype of two-step cells (tests.fixtures.TINY_SPACE's ops and more):
# what the `bnn-nas train` tests train.
SMALL_GENOTYPE = (
    "Genotype(normal=[('xnor_conv_3x3', 0), ('skip_connect', 1), "
    "('bireal_conv_3x3_skip_connect', 2), ('max_pool_3x3', 0)], normal_concat=[2, 3], "
    "reduce=[('max_pool_3x3', 0), ('xnor_conv_3x3', 1), ('skip_connect', 2), "
    "('xnor_conv_3x3', 1)], reduce_concat=[2, 3])"
)


@pytest.fixture(scope="session")
def sample():
    """The CIFAR-10 sample packaged with bnn-nas (5,000 train / 1,000 test images), read
    once per session; tests take subsets and never change it."""
    from bnn_nas.data import load_cifar10_sample

    return load_cifar10_sample()


@pytest.fixture
def darts_v2():
    """DARTS V2 parsed."""
    from bnn_nas.space.genotype import parse_genotype

    return parse_genotype(DARTS_V2)


@pytest.fixture
def clean_registry():
    """Forget plugin primitives and loaded plugins after the test."""
    before = set(REGISTRY.names())
    loaded = dict(plugin_module._loaded)
    yield
    for name in set(REGISTRY.names()) - before:
        REGISTRY.unregister(name)
    plugin_module._loaded.clear()
    plugin_module._loaded.update(loaded)
