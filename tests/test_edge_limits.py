"""Edge limits of a search space: max_free_edges / min_binary_edges (issue 21, item 3)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from bnn_nas.errors import ConfigError, GenotypeError
from bnn_nas.primitives import get_primitive, register_primitive
from bnn_nas.space.edge_limits import CellLimits
from bnn_nas.space.genotype import KINDS, Genotype
from bnn_nas.space.search_space import (
    OpChoice,
    SearchSpace,
    load_search_space,
    search_space_from_dict,
)

# Sampled before the limits existed (commit b1599cf): three draws of random.Random(0), and
# one mutation (random.Random(2)) of the draw of random.Random(1). Unset limits keep them.
PINNED = {
    "bnn_darts": (["a8ea0de560e0f025", "ab582d0863e7d893", "17909340f9965779"], "bbab274298f0e0cc"),
    "bnas_kim": (["396609ca9810458f", "08c0b29dd2e2104e", "42fd36b95d0f1b11"], "b2e1c947b3775ee1"),
    "darts": (["1025633f47bdd246", "f278c25fbb0147a2", "d9383ae6c62c99fa"], "2c163e28641e8c77"),
    "tiny": (["60457bfe6fb69f83", "978e063f87dad6ba", "ee440955c7db8687"], "34eb3418573de107"),
}  # fmt: skip

# free: none, skip_connect, max_pool_3x3, avg_pool_3x3; binary: xnor_*; float: conv_3x3
POOL = [
    "none", "skip_connect", "max_pool_3x3", "avg_pool_3x3",
    "xnor_conv_3x3", "xnor_conv_1x1", "xnor_conv_3x3_skip_connect", "conv_3x3",
]  # fmt: skip


def precision_counts(edges) -> tuple[int, int]:
    precisions = [get_primitive(op).precision for op, _ in edges]
    return precisions.count("free"), precisions.count("binary")


def within(edges, max_free, min_binary) -> bool:
    """The limits' meaning, written out independently of bnn_nas.space.edge_limits."""
    free, binary = precision_counts(edges)
    return (max_free is None or free <= max_free) and (min_binary is None or binary >= min_binary)


def per_kind(value, kind):
    return value.get(kind) if isinstance(value, dict) else value


def space_dict(ops, steps=2, distinct=True, **limits) -> dict:
    return {"name": "t", "steps": steps, "ops": list(ops), "distinct_inputs": distinct,
            "network": {"cells": 3, "channels": 4, "stem_multiplier": 1}, **limits}  # fmt: skip


def all_cells(space, kind):
    """Every distinct cell of ``kind`` (canonical step pairs), unlimited."""
    per_step = [space._step_choices(kind, step) for step in range(space.steps)]
    for pairs in itertools.product(*per_step):
        yield [edge for pair in pairs for edge in pair]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_unset_limits_sample_exactly_as_before(name):
    space = load_search_space(name)
    assert all(space.limits(kind).unset for kind in KINDS)
    rng = random.Random(0)
    draws, mutant = PINNED[name]
    assert [space.random_sample(rng).hash for _ in range(3)] == draws
    assert space.mutate(space.random_sample(random.Random(1)), random.Random(2)).hash == mutant


def test_explicit_null_limits_are_unset():
    data = space_dict(POOL[:5], max_free_edges=None, min_binary_edges={"normal": None})
    space = search_space_from_dict(data, "t")
    plain = search_space_from_dict(space_dict(POOL[:5]), "t")
    assert space == plain
    assert space.random_sample(random.Random(4)) == plain.random_sample(random.Random(4))


limit_values = st.one_of(st.none(), st.integers(0, 7))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True),
    steps=st.integers(1, 3),
    distinct=st.booleans(),
    max_free=st.one_of(limit_values, st.fixed_dictionaries({"normal": limit_values})),
    min_binary=st.one_of(limit_values, st.fixed_dictionaries({"reduce": limit_values})),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_sampled_and_mutated_genotype_obeys_the_limits(
    ops, steps, distinct, max_free, min_binary, seed
):
    data = space_dict(ops, steps, distinct, max_free_edges=max_free, min_binary_edges=min_binary)

    def allowed(edges, kind) -> bool:
        return within(edges, per_kind(max_free, kind), per_kind(min_binary, kind))

    try:
        space = search_space_from_dict(data, "t")
    except ConfigError as err:
        assert "no " in str(err) and "cell meets" in str(err) and "\n" not in str(err)
        # no cell of some kind meets its limits: check by brute force where it is small
        unlimited = search_space_from_dict(space_dict(ops, steps, distinct), "t")
        if unlimited.size() <= 10**5:
            kind = "normal" if "no normal cell" in str(err) else "reduce"
            assert not any(allowed(cell, kind) for cell in all_cells(unlimited, kind))
        return
    rng = random.Random(seed)
    genotype = space.random_sample(rng)
    for _ in range(4):
        space.validate(genotype)
        for kind in KINDS:
            assert allowed(genotype.cell(kind)[0], kind)
        try:
            genotype = space.mutate(genotype, rng)
        except GenotypeError as err:
            assert "no neighbour" in str(err)
            break


@pytest.mark.parametrize("distinct", [True, False])
def test_limited_size_and_cells_equal_brute_force(distinct):
    data = space_dict(POOL[1:6], 2, distinct, max_free_edges=1, min_binary_edges={"reduce": 3})
    space = search_space_from_dict(data, "t")
    unlimited = search_space_from_dict(space_dict(POOL[1:6], 2, distinct), "t")
    total = 1
    for kind, floor in (("normal", None), ("reduce", 3)):
        cells = [c for c in all_cells(unlimited, kind) if within(c, 1, floor)]
        assert space._limited_cell(kind).size == len(cells) > 0
        total *= len(cells)
    assert space.size() == total < unlimited.size()


def test_limited_sampling_is_uniform_over_the_allowed_genotypes():
    ops = ["skip_connect", "max_pool_3x3", "xnor_conv_3x3"]
    space = search_space_from_dict(
        space_dict(ops, 1, max_free_edges={"normal": 1}, min_binary_edges={"reduce": 2}), "t"
    )
    # normal: one input pair (0, 1), op pairs with at most one free op: 9 - 4 = 5;
    # reduce: both edges binary: 1
    assert space.size() == 5
    rng = random.Random(0)
    counts: dict[str, int] = {}
    for _ in range(5000):
        g = space.random_sample(rng)
        counts[g.hash] = counts.get(g.hash, 0) + 1
    assert len(counts) == 5
    assert all(abs(c - 1000) < 150 for c in counts.values())


def test_violations_are_one_line_errors():
    space = search_space_from_dict(
        space_dict(POOL[1:6], 1, max_free_edges=1, min_binary_edges={"reduce": 1}), "t"
    )
    ok = [("xnor_conv_3x3", 0), ("skip_connect", 1)]
    pools = Genotype([("max_pool_3x3", 0), ("skip_connect", 1)], [2], ok, [2])
    with pytest.raises(GenotypeError, match=r"^normal cell has 2 parameter-free edges .* "
                       r"more than max_free_edges 1 of search space t$"):  # fmt: skip
        space.validate(pools)
    assert not space.contains(pools)
    floats = Genotype(ok, [2], [("skip_connect", 0), ("avg_pool_3x3", 1)], [2])
    with pytest.raises(GenotypeError, match="reduce cell has 2 parameter-free"):
        space.validate(floats)
    space2 = search_space_from_dict(space_dict(POOL[1:6], 1, min_binary_edges=2), "t")
    with pytest.raises(GenotypeError, match=r"^normal cell has 1 binary edges, fewer than "
                       r"min_binary_edges 2 of search space t$"):  # fmt: skip
        space2.validate(Genotype(ok, [2], ok, [2]))
    assert space.contains(Genotype(ok, [2], ok, [2]))


def test_impossible_and_malformed_limits_fail_at_load():
    with pytest.raises(ConfigError, match=r"^t: no normal cell meets "
                       r"min_binary_edges 1: a cell has 4 edges and its 2 ops are 0 binary, "
                       r"2 parameter-free, 0 float$"):  # fmt: skip
        search_space_from_dict(space_dict(["skip_connect", "none"], min_binary_edges=1), "t")
    with pytest.raises(ConfigError, match="no normal cell meets max_free_edges 3"):
        search_space_from_dict(space_dict(["skip_connect", "none"], max_free_edges=3), "t")
    with pytest.raises(ConfigError, match="no normal cell meets min_binary_edges 5"):
        search_space_from_dict(space_dict(POOL, min_binary_edges=5), "t")
    with pytest.raises(ConfigError, match=r"^t: max_free_edges must be an integer >= 0"):
        search_space_from_dict(space_dict(POOL, max_free_edges=-1), "t")
    with pytest.raises(ConfigError, match="min_binary_edges must be an integer"):
        search_space_from_dict(space_dict(POOL, min_binary_edges=True), "t")
    with pytest.raises(ConfigError, match="max_free_edges has unknown cell kind 'normall'"):
        search_space_from_dict(space_dict(POOL, max_free_edges={"normall": 1}), "t")
    space = search_space_from_dict(space_dict(POOL, max_free_edges=0, min_binary_edges=4), "t")
    assert space.normal_limits == space.reduce_limits == CellLimits(0, 4)
    built = SearchSpace("b", (OpChoice("none"),), (OpChoice("none"),), steps=1,
                        normal_limits=CellLimits(min_binary=1))  # fmt: skip
    with pytest.raises(ConfigError, match=r"^search space b: no normal cell meets"):
        built.random_sample(random.Random(0))


def test_limits_read_the_declared_precision_not_the_name(clean_registry):
    @register_primitive("t_max_pool_binary", family="custom", precision="binary")
    def factory(C_in, C_out, stride, **options):
        """A binary op whose name says pool."""
        return nn.Conv2d(C_in, C_out, 3, stride, 1)

    @register_primitive("t_conv_free", family="custom", precision="free")
    def factory2(C_in, C_out, stride, **options):
        """A free op whose name says conv."""
        return nn.Identity() if stride == 1 else nn.AvgPool2d(2)

    data = space_dict(["t_max_pool_binary", "t_conv_free"], 2, max_free_edges=0)
    space = search_space_from_dict(data, "t")
    assert space.size() == 3 * 3  # every edge t_max_pool_binary; inputs: 1 * 3 per cell
    g = space.random_sample(random.Random(0))
    assert {op for op, _ in g.normal + g.reduce} == {"t_max_pool_binary"}
    data = space_dict(["t_max_pool_binary", "t_conv_free"], 2, min_binary_edges=4)
    assert search_space_from_dict(data, "t").size() == 9


def test_mutation_chains_and_controller_proposals_stay_within_the_limits():
    from bnn_nas.search.controllers import RegularizedEvolution

    data = space_dict(POOL[:6], 3, max_free_edges=2, min_binary_edges=3)
    space = search_space_from_dict(data, "t")
    controller = RegularizedEvolution(space, seed=0, population=4, sample_size=2,
                                      eliminate="oldest")  # fmt: skip
    rng = random.Random(0)
    parent = space.random_sample(rng)
    for _ in range(30):
        child = space.mutate(parent, rng)
        assert space.contains(child)
        parent = child
    for proposal in controller.ask(8):
        assert space.contains(proposal.genotype)
