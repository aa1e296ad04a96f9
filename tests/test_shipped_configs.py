"""The configs in configs/ load, and every network they describe builds and runs.

Most of them are run only on a GPU machine (configs/cifar.yaml) or by hand: a typo there
would otherwise first show up at the start of a paid device session.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from bnn_nas.cli.options import load_run_config
from bnn_nas.config import ModelConfig
from bnn_nas.space.network import build_model
from bnn_nas.space.search_space import load_search_space

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _logits(net: torch.nn.Module) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        return net(torch.randn(2, 3, 32, 32))


def test_there_are_configs_to_check():
    assert {p.name for p in CONFIGS} >= {"cifar.yaml", "cifar_tiny.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_builds_its_candidates_and_final_networks(path, clean_registry, monkeypatch):
    monkeypatch.chdir(ROOT)  # search-space paths in configs are relative to the repository
    config = load_run_config(str(path), ())
    space = load_search_space(config.search_space)
    genotype = space.random_sample(random.Random(0))
    candidate = build_model(ModelConfig(), space, 10, genotype)  # search size
    final = build_model(config.model, space, 10, genotype)  # final cells x channels
    assert _logits(candidate).shape == _logits(final).shape == (2, 10)
    assert len(final.cells) == (config.model.cells or space.network.cells)
    # the README's `train --model resnet18` baseline, with the config's family and options
    model = config.model
    baseline = ModelConfig(type="resnet18", family=model.family, options=model.options)
    assert _logits(build_model(baseline, space, 10)).shape == (2, 10)


SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))


def test_every_shipped_space_is_checked():
    names = {p.stem for p in SPACES}
    assert names >= {"bnn_darts", "bnas_kim", "tiny", "darts", "ebnas", "bats", "bireal_darts"}
    text = {p.stem: p.read_text() for p in SPACES}
    for name in ("bnas_kim", "darts", "ebnas", "bats", "bireal_darts"):  # says what it follows
        assert text[name].lstrip().startswith("#") and "differ" in text[name], name


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_shipped_space_builds_trains_and_evaluates(path):
    space = load_search_space(path.stem)  # by its built-in name, as users name it
    assert space.name == path.stem
    genotype = space.random_sample(random.Random(0))
    torch.manual_seed(0)
    net = build_model(ModelConfig(), space, 10, genotype).train()
    logits = net(torch.randn(2, 3, 32, 32))
    logits.sum().backward()
    assert logits.shape == (2, 10)
    assert _logits(net).shape == (2, 10)
