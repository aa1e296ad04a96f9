"""Compiled search trials. With the streams executor train.compile is a config error:
torch.compile is not thread-safe, and a compile in one thread resets the process-wide
RNGs that another thread is seeding its candidate's initial weights from. In a process
that trains candidates one after another, each fit compiles its own network."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bnn_nas.errors import ConfigError
from bnn_nas.search.engine import make_executor, open_search
from tests.test_executors import make_config


def test_streams_refuse_compiled_candidates(tmp_path):
    config = make_config(type="streams", trials_per_device=2)
    config = replace(config, train=replace(config.train, compile=True))
    _, evaluator = open_search(config, tmp_path / "run", resume=False)
    with pytest.raises(ConfigError, match=r"train\.compile.*processes"):
        make_executor(config, evaluator)
    uncompiled = replace(config, train=replace(config.train, compile=False))
    with make_executor(uncompiled, evaluator) as executor:
        assert type(executor).__name__ == "StreamExecutor"


def test_every_fit_of_a_process_compiles_its_own_network(monkeypatch):
    """Cell networks share one forward code object: without a fresh Dynamo cache per fit,
    a process training candidates one after another stopped compiling after Dynamo's
    recompile limit (8) and ran the rest eagerly, with a log warning only."""
    import random
    from dataclasses import replace

    from bnn_nas.config import TrainConfig
    from bnn_nas.data import load_cifar10_sample
    from bnn_nas.space.network import CellNetwork
    from bnn_nas.space.search_space import search_space_from_dict
    from bnn_nas.train import fit

    compiled_networks: list[int] = []
    real_compile = torch.compile

    def counting_backend(gm, inputs):
        compiled_networks.append(len(compiled_networks))
        return gm.forward

    monkeypatch.setattr(torch, "compile",
                        lambda model, **kw: real_compile(model, backend=counting_backend))
    space = search_space_from_dict(
        {"steps": 1, "ops": ["xnor_conv_3x3", "skip_connect"],
         "network": {"cells": 1, "channels": 4, "stem_multiplier": 1}}, "test",
    )  # fmt: skip
    sample = load_cifar10_sample().train.subset(range(8))
    settings = replace(TrainConfig(), epochs=1, batch_size=8, compile=True)
    fits = 10
    for i in range(fits):
        torch.manual_seed(i)
        net = CellNetwork(space.random_sample(random.Random(i)), space, 10)
        fit(net, sample, settings, device=torch.device("cpu"), seed=0,
            stats=sample.channel_stats())  # fmt: skip
    assert len(compiled_networks) >= fits
