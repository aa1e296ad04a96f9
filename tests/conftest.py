"""Shared test settings (small CPU ops run fastest on one thread) and fixtures."""

from __future__ import annotations

import pytest
import torch

from bnn_nas.primitives import REGISTRY
from bnn_nas.primitives import plugins as plugin_module

torch.set_num_threads(1)


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
