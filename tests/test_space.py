"""Search space, network builder and their error paths."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bnn_nas.binary import BinaryConv2d
from bnn_nas.errors import ConfigError, GenotypeError
from bnn_nas.space.genotype import Genotype, parse_genotype
from bnn_nas.space.network import Cell, CellNetwork, build_baseline
from bnn_nas.space.search_space import (
    NetworkLayout,
    OpChoice,
    SearchSpace,
    load_search_space,
    search_space_from_dict,
)
from tests.conftest import DARTS_V2

RENAME = {"sep_conv_3x3": "xnor_conv_3x3", "dil_conv_3x3": "xnor_dil_conv_3x3"}


def small_space(**overrides) -> SearchSpace:
    data = {
        "name": "small",
        "steps": 3,
        "ops": ["skip_connect", "max_pool_3x3", "xnor_conv_3x3", "bireal_resnet_block"],
        "network": {"cells": 3, "channels": 4, "stem_multiplier": 2},
    }
    data.update(overrides)
    return search_space_from_dict(data, "test")


def test_darts_v2_parses_builds_and_runs():
    g = parse_genotype(DARTS_V2)
    assert str(g) == DARTS_V2
    renamed = Genotype(
        [(RENAME.get(op, op), i) for op, i in g.normal],
        g.normal_concat,
        [(RENAME.get(op, op), i) for op, i in g.reduce],
        g.reduce_concat,
    )
    space = load_search_space("bnn_darts")
    space.validate(renamed)
    net = CellNetwork(renamed, space, num_classes=10)
    assert [c.reduction for c in net.cells] == [i in (2, 5) for i in range(8)]
    y = net(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 10)
    # one op module per genotype edge, each binary conv edge holds a binary conv
    normal_cell = net.cells[0]
    assert len(normal_cell.ops) == 8
    assert isinstance(normal_cell.ops[0].conv, BinaryConv2d)


def test_builtin_spaces_load():
    darts = load_search_space()
    assert darts.name == "bnn_darts" and darts.steps == 4
    kim = load_search_space("bnas_kim")
    assert {"xnor_conv_5x5", "xnor_dil_conv_5x5", "none"} <= set(kim.op_names("normal"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_random_genotypes_validate_build_and_run(seed):
    space = small_space()
    rng = random.Random(seed)
    g = space.random_sample(rng)
    space.validate(g)
    net = CellNetwork(g, space, num_classes=10).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    swapped = Genotype(
        [e for i in range(0, len(g.normal), 2) for e in (g.normal[i + 1], g.normal[i])],
        g.normal_concat,
        [e for i in range(0, len(g.reduce), 2) for e in (g.reduce[i + 1], g.reduce[i])],
        g.reduce_concat,
    )
    assert swapped.hash == g.hash
    mutated = space.mutate(g, rng)
    space.validate(mutated)
    assert mutated.hash != g.hash
    pairs = zip(g.normal + g.reduce, mutated.normal + mutated.reduce, strict=True)
    differences = sum(a != b for a, b in pairs)
    assert differences == 1  # one op or one input of one edge


def _brute_force_size(space: SearchSpace) -> int:
    seen = set()
    concat = tuple(range(2, space.steps + 2))
    per_kind = {}
    for kind in ("normal", "reduce"):
        edges_per_step = [
            list(itertools.product(space.op_names(kind), range(step + 2)))
            for step in range(space.steps)
        ]
        cells = itertools.product(*[itertools.product(e, e) for e in edges_per_step])
        per_kind[kind] = [tuple(edge for pair in cell for edge in pair) for cell in cells]
    for normal in per_kind["normal"]:
        for reduce in per_kind["reduce"]:
            g = Genotype(normal, concat, reduce, concat)
            if space.contains(g):
                seen.add(g.hash)
    return len(seen)


@pytest.mark.parametrize("distinct", [True, False])
def test_size_equals_brute_force(distinct):
    space = small_space(
        steps=2,
        ops=None,
        normal_ops=["skip_connect", "xnor_conv_3x3"],
        reduce_ops=["max_pool_3x3"],
        distinct_inputs=distinct,
    )
    assert space.size() == _brute_force_size(space)
    if distinct:  # per step: C(inputs, 2) * K^2;  normal K=2, reduce K=1
        by_hand = (1 * 4) * (3 * 4) * (1 * 1) * (3 * 1)
    else:  # per step: multisets of 2 among (inputs * K) edges: C(nK + 1, 2)
        by_hand = (5 * 4 // 2) * (7 * 6 // 2) * (3 * 2 // 2) * (4 * 3 // 2)
    assert space.size() == by_hand


def test_sampling_covers_a_tiny_space_uniformly():
    space = small_space(steps=1, ops=None, normal_ops=["skip_connect", "xnor_conv_3x3"],
                        reduce_ops=["max_pool_3x3"])  # fmt: skip
    assert space.size() == 4
    rng = random.Random(0)
    counts: dict[str, int] = {}
    for _ in range(4000):
        h = space.random_sample(rng).hash
        counts[h] = counts.get(h, 0) + 1
    assert len(counts) == 4
    assert all(abs(c - 1000) < 150 for c in counts.values())


def test_cell_computes_exactly_the_genotype():
    space = small_space(steps=2)
    g = Genotype(
        [("skip_connect", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("skip_connect", 0)],
        [2, 3],
        [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1)],
        [3],
    )
    cell = Cell(g, space, 6, 6, 4, reduction=False, reduction_prev=False).eval()
    s0, s1 = torch.randn(2, 6, 8, 8), torch.randn(2, 6, 8, 8)
    p0, p1 = cell.preprocess0(s0), cell.preprocess1(s1)
    n2 = p0 + cell.ops[1](p1)
    n3 = n2 + p0
    torch.testing.assert_close(cell(s0, s1), torch.cat([n2, n3], dim=1))
    reduce_cell = Cell(g, space, 6, 6, 4, reduction=True, reduction_prev=True).eval()
    out = reduce_cell(torch.randn(2, 6, 16, 16), torch.randn(2, 6, 8, 8))
    assert out.shape == (2, 4, 4, 4)  # concat [3] only, spatial halved


def test_drop_path_only_in_training():
    space = small_space()
    net = CellNetwork(space.random_sample(random.Random(1)), space, 10)
    net.drop_path_prob = 0.5
    x = torch.randn(4, 3, 16, 16)
    net.eval()
    torch.testing.assert_close(net(x), net(x))
    net.train()
    torch.manual_seed(0)
    a = net(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, net(x))


def test_baselines_have_the_published_shapes():
    r18 = build_baseline("resnet18", "xnor", 10)
    convs = [m for m in r18.modules() if isinstance(m, BinaryConv2d)]
    assert len(convs) == 16 and all(c.is_binary for c in convs)
    r20 = build_baseline("resnet20", "bireal", 10)
    assert len([m for m in r20.modules() if isinstance(m, BinaryConv2d)]) == 18
    vgg = build_baseline("vgg_small", "xnor", 10)
    assert [c.out_channels for c in vgg.modules() if isinstance(c, BinaryConv2d)] == [
        128, 256, 256, 512, 512,
    ]  # fmt: skip
    for net in (r18, r20, vgg):
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="unknown model 'resnet50'"):
        build_baseline("resnet50", "xnor", 10)
    with pytest.raises(ConfigError, match="unknown family"):
        build_baseline("resnet18", "dorefa", 10)


def test_space_options_reach_the_built_ops():
    space = small_space(ops=["skip_connect", {"name": "xnor_resnet_block", "act": "ste"}])
    assert space.normal_ops[1] == OpChoice("xnor_resnet_block", (("act", "ste"),))
    g = space.random_sample(random.Random(3))
    net = CellNetwork(g, space, 10)
    acts = {m.act.name for m in net.modules() if isinstance(m, BinaryConv2d)}
    assert acts <= {"ste"}


def test_genotype_errors_against_the_space():
    space = small_space(steps=1)
    ok = [("skip_connect", 0), ("skip_connect", 1)]
    g = Genotype([("xnor_conv_3x3", 0), ("sep_conv_3x3", 1)], [2], ok, [2])
    with pytest.raises(GenotypeError, match=r"normal cell, step 0, edge 1 \('sep_conv_3x3', 1\)"):
        space.validate(g)
    later = Genotype([("xnor_conv_3x3", 0), ("skip_connect", 2)], [2], ok, [2])
    with pytest.raises(GenotypeError, match="not an earlier node"):
        space.validate(later)
    same = Genotype([("xnor_conv_3x3", 0), ("skip_connect", 0)], [2], ok, [2])
    with pytest.raises(GenotypeError, match="two different inputs"):
        space.validate(same)


def test_search_space_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match=r"test: unknown search-space key 'step'; did you "
                       r"mean steps\? allowed: "):  # fmt: skip
        search_space_from_dict({"step": 3, "ops": ["skip_connect"]}, "test")
    with pytest.raises(ConfigError) as err:  # the source is named once
        search_space_from_dict({"steps": 0, "ops": ["skip_connect"]}, "test")
    assert str(err.value) == "test: steps must be a positive integer"
    with pytest.raises(ConfigError, match=r"^search space tinyy not found; did you mean tiny\? "):
        load_search_space("tinyy")
    with pytest.raises(
        ConfigError, match=r"unknown primitive 'xnor_resnet_blok'.*xnor_resnet_block"
    ):
        search_space_from_dict({"ops": ["xnor_resnet_blok"]}, "test")
    with pytest.raises(ConfigError, match=r"option order='x' is invalid"):
        search_space_from_dict({"ops": [{"name": "xnor_conv_3x3", "order": "x"}]}, "test")
    with pytest.raises(ConfigError, match=r"unknown network key 'cell'; did you mean cells\?"):
        search_space_from_dict({"ops": ["skip_connect"], "network": {"cell": 3}}, "test")
    with pytest.raises(ConfigError, match="unknown network key 'layers'"):
        search_space_from_dict({"ops": ["skip_connect"], "network": {"layers": 3}}, "test")
    with pytest.raises(ConfigError, match="lists 'skip_connect' twice"):
        search_space_from_dict({"ops": ["skip_connect", "skip_connect"]}, "test")
    bad = tmp_path / "bad.yaml"
    bad.write_text("ops: [skip_connect\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_search_space(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_search_space(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="reduction_cells"):
        NetworkLayout(cells=3, reduction_cells=(5,))
