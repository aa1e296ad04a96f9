"""compile_scope: ops — a cell network compiled op by op (bnn_nas/train/compile_scope.py).

Dynamo's eager backend stands in for Inductor (no C++ compiler needed): the graphs are
the ones a GPU run compiles, their arithmetic the eager one."""

import copy
import random
from dataclasses import replace

import pytest
import torch
import torch._dynamo

from bnn_nas.config import TrainConfig, config_from_dict
from bnn_nas.errors import ConfigError
from bnn_nas.space.network import CellNetwork, build_baseline
from bnn_nas.space.search_space import search_space_from_dict
from bnn_nas.train import fit
from bnn_nas.train.compile_scope import compiled_regions, regions_of

OPS = replace(TrainConfig(), compile=True, compile_scope="ops")


def network(cells: int = 5, seed: int = 0) -> CellNetwork:
    space = search_space_from_dict(
        {"steps": 2, "ops": ["xnor_conv_3x3", "max_pool_3x3", "skip_connect"],
         "network": {"cells": cells, "channels": 4, "stem_multiplier": 1}}, "test",
    )  # fmt: skip
    torch.manual_seed(seed)
    return CellNetwork(space.random_sample(random.Random(seed)), space, 10)


@pytest.fixture
def graphs(monkeypatch) -> list[int]:
    """torch.compile with a backend that counts the graphs it is handed."""
    seen: list[int] = []
    real = torch.compile

    def backend(gm, inputs):
        seen.append(len(gm.graph.nodes))
        return gm.forward

    monkeypatch.setattr(torch, "compile", lambda f, **kw: real(f, **kw, backend=backend))
    return seen


def test_region_graphs_are_static_so_a_reused_graph_is_a_fresh_compiles(monkeypatch):
    """Regions of one class see several shapes (a reduction cell halves the size, doubles
    the channels); Dynamo's default would turn the second into one shape-generic graph,
    whose inputs then carry symbolic sizes. Within the scope every graph is static."""
    real = torch.compile
    symbolic: list[bool] = []

    def backend(gm, inputs):
        symbolic.append(any(isinstance(x, torch.SymInt) for x in inputs))
        return gm.forward

    monkeypatch.setattr(torch, "compile", lambda f, **kw: real(f, **kw, backend=backend))
    torch.compiler.reset()
    net = network()
    with compiled_regions(regions_of(net, OPS)):
        for size in (16, 12):  # a second input size, as the next candidate's shapes can be
            net(torch.randn(2, 3, size, size)).sum().backward()
    assert len(symbolic) > 8 and not any(symbolic)


def test_the_scope_is_checked_and_network_is_the_default():
    assert TrainConfig().compile_scope == "network"
    wrong = r"final.compile_scope='cells' is not one of network, ops"
    with pytest.raises(ConfigError, match=wrong):
        config_from_dict({"final": {"compile_scope": "cells"}}, "c.yaml")
    ops = config_from_dict({"train": {"compile_scope": "ops"}}, "c.yaml")
    assert ops.train.compile_scope == "ops"


def test_regions_are_the_stem_preprocess_units_and_edge_ops_of_every_cell():
    net = network(cells=3)
    regions = regions_of(net, OPS)
    ids = {id(r) for r in regions}
    assert id(net.stem) in ids
    for cell in net.cells:
        assert {id(cell.preprocess0), id(cell.preprocess1)} <= ids
        for op in cell.ops:
            # identities: nothing to compile
            assert (id(op) in ids) != isinstance(op, torch.nn.Identity)
    assert len(ids) == len(regions)
    # the whole network (or nothing) otherwise
    assert regions_of(net, replace(OPS, compile_scope="network")) == []
    assert regions_of(net, replace(OPS, compile=False)) == []
    assert regions_of(build_baseline("resnet20", "xnor", 10), OPS) == []


def test_every_region_compiles_past_dynamos_default_limit_and_is_plain_again_after(graphs):
    """Regions of one kind share their class's forward code: at Dynamo's default limit (8
    entries per code object) some would run eagerly; within the scope every one compiles."""
    torch.compiler.reset()  # from an empty cache: graphs of earlier tests would be reused
    net = network()
    regions = regions_of(net, OPS)
    keys = set(net.state_dict())

    def one_step() -> int:
        before = len(graphs)
        net(torch.randn(2, 3, 16, 16)).sum().backward()
        return len(graphs) - before

    with compiled_regions(regions), torch._dynamo.config.patch(recompile_limit=8):
        at_default = one_step()
    # the cache is kept, but the frames Dynamo gave up on at the limit would stay eager:
    # the next scope empties it first
    with compiled_regions(regions):
        within = one_step()
    assert within > at_default > 0
    assert not any("forward" in vars(r) for r in regions)  # the plain forwards are back
    assert set(net.state_dict()) == keys
    copy.deepcopy(net)  # a trained network copies (exporters do)


def test_a_fit_compiled_op_by_op_trains_as_the_eager_one(graphs):
    from bnn_nas.data import load_cifar10_sample

    sample = load_cifar10_sample().train.subset(range(24))
    settings = replace(TrainConfig(), epochs=2, batch_size=8)

    def run(s: TrainConfig):
        return fit(network(cells=3), sample, s, device=torch.device("cpu"), seed=0,
                   stats=sample.channel_stats(), eval_set=sample)  # fmt: skip

    eager = run(settings)
    assert graphs == []
    ops = run(replace(settings, compile=True, compile_scope="ops"))
    assert len(graphs) > 1  # many small graphs, not one
    assert max(graphs) < 200
    for a, b in zip(eager, ops, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-5)
        assert b.train_acc == a.train_acc and b.eval_acc == a.eval_acc


def test_a_later_fit_reuses_earlier_graphs_trains_the_same_and_frees_the_network(graphs):
    """Dynamo's cache outlives a fit: the next candidate (other genotype, other weights)
    compiles fewer graphs than from an empty cache, trains to the same weights, and the
    cache holds no reference to the networks it was compiled on."""
    import gc
    import weakref

    from bnn_nas.data import load_cifar10_sample

    sample = load_cifar10_sample().train.subset(range(16))
    settings = replace(OPS, epochs=1, batch_size=8)

    def run(seed: int) -> tuple[CellNetwork, list]:
        net = network(cells=3, seed=seed)
        history = fit(net, sample, settings, device=torch.device("cpu"), seed=seed,
                      stats=sample.channel_stats(), eval_set=sample)  # fmt: skip
        return net, history

    torch.compiler.reset()
    first, _ = run(0)
    compiled_first = len(graphs)
    later, history = run(1)
    reused = len(graphs) - compiled_first
    torch.compiler.reset()  # the same candidate from an empty cache
    alone, alone_history = run(1)
    assert str(later) != str(first)  # another genotype
    assert reused < len(graphs) - compiled_first - reused

    def figures(h: list) -> list:
        return [(m.train_loss, m.train_acc, m.eval_loss, m.eval_acc) for m in h]

    assert figures(history) == figures(alone_history)
    for (key, a), b in zip(later.state_dict().items(), alone.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    gone = weakref.ref(first)
    del first
    gc.collect()
    assert gone() is None


def test_evaluation_within_a_fit_compiles_no_graphs_and_is_the_eager_one(graphs):
    """A fit evaluates between epochs, its regions compiled: their training graphs guard
    on grad mode and the training flag (batch norm), so evaluation would compile a set of
    its own. It runs the plain forwards instead: no graphs beyond training's, and the
    fit's figures are those of the eager evaluation of its network."""
    from bnn_nas.data import load_cifar10_sample
    from bnn_nas.data.loader import DeviceLoader
    from bnn_nas.train import evaluate

    sample = load_cifar10_sample().train.subset(range(16))
    settings = replace(OPS, epochs=2, batch_size=8)

    def run(eval_set) -> tuple[CellNetwork, list, int]:
        torch.compiler.reset()  # from an empty cache, so both fits compile their own
        before = len(graphs)
        net = network(cells=3)
        history = fit(net, sample, settings, device=torch.device("cpu"), seed=0,
                      stats=sample.channel_stats(), eval_set=eval_set)  # fmt: skip
        return net, history, len(graphs) - before

    _, _, training = run(None)
    net, history, with_evaluation = run(sample)
    assert training > 0
    assert with_evaluation == training
    mean, std = sample.channel_stats()
    loader = DeviceLoader(sample, settings.eval_batch_size, mean=mean, std=std)
    last = history[-1]
    assert (last.eval_loss, last.eval_acc) == evaluate(net, loader, bf16=settings.bf16)
