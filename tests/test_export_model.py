"""Whole networks: the exported, packed model predicts what the PyTorch model predicts.

Networks are trained here for one short epoch (BN statistics and weights become real;
agreement is what is measured, not accuracy) and run on the 1,000 test images of the
packaged CIFAR-10 sample.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from benchmarks.common import MIXED_GENOTYPE, MIXED_OPS
from bnn_nas.config import ModelConfig, TrainConfig
from bnn_nas.data.splits import class_balanced_split
from bnn_nas.export import Architecture, InputSpec, export_network, load_packed, pack_model
from bnn_nas.export.reference import exact_reference
from bnn_nas.space.genotype import parse_genotype
from bnn_nas.space.search_space import search_space_from_dict
from bnn_nas.train import fit

# The default space's kind of cell (xnor ops, float preprocess): no exact ties by design.
XNOR_OPS = [
    "skip_connect", "avg_pool_3x3", "max_pool_3x3", "xnor_conv_3x3",
    "xnor_conv_3x3_skip_connect", "xnor_dil_conv_3x3", "xnor_conv_5x5", "xnor_resnet_block",
]  # fmt: skip
XNOR = (
    "Genotype(normal=[('xnor_conv_3x3', 0), ('xnor_conv_3x3_skip_connect', 1), "
    "('xnor_dil_conv_3x3', 0), ('avg_pool_3x3', 2), ('xnor_resnet_block', 1), "
    "('xnor_conv_5x5', 3)], normal_concat=[2, 3, 4], reduce=[('xnor_conv_5x5', 0), "
    "('xnor_resnet_block', 1), ('max_pool_3x3', 0), ('xnor_conv_3x3', 2), "
    "('xnor_conv_3x3_skip_connect', 3), ('skip_connect', 1)], reduce_concat=[2, 3, 4])"
)


def cells(ops: list, genotype: str, preprocess: str) -> Architecture:
    space = search_space_from_dict(
        {"steps": 3, "ops": ops,
         "network": {"cells": 3, "channels": 8, "stem_multiplier": 2, "preprocess": preprocess}},
        "test space",
    )  # fmt: skip
    return Architecture(ModelConfig(), 10, space, parse_genotype(genotype))




def train_and_export(arch: Architecture, sample, path):
    torch.manual_seed(0)
    model = arch.build()
    idx, _ = class_balanced_split(sample.train.labels, n_train=1000, seed=0)
    stats = sample.train.channel_stats()
    settings = TrainConfig(epochs=1, batch_size=50, lr=5e-3)
    fit(model, sample.train.subset(idx), settings, device=torch.device("cpu"), seed=0, stats=stats)
    model.eval()
    spec = InputSpec(stats[0], stats[1], sample.classes, 32, 32)
    summary = export_network(model, arch, spec, path)
    return model, summary


def predictions(fn, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([fn(x[i : i + 250]).argmax(1) for i in range(0, len(x), 250)]).numpy()


@pytest.fixture(scope="module")
def mixed(sample, tmp_path_factory):
    return train_and_export(
        cells(MIXED_OPS, MIXED_GENOTYPE, "xnor"), sample, tmp_path_factory.mktemp("m") / "mixed.bnn"
    )


def test_mixed_network_is_exact_and_float32_differs_only_at_ties(mixed, sample):
    """Against the exact-arithmetic PyTorch reference the engine agrees on >= 99.9% of the
    images; every image where PyTorch float32 predicts otherwise is one where float32
    rounding flipped an exact tie (float32 disagrees with its own exact twin there)."""
    model, summary = mixed
    engine = load_packed(summary.path, native=True)
    x = engine.normalize(sample.test.images)
    ours = predictions(engine.logits, x)
    reference = exact_reference(model)
    exact = predictions(lambda b: reference(b.double()), x)
    float32 = predictions(model, x)
    assert (ours == exact).mean() >= 0.999
    unexplained = (ours != float32) & (exact == float32)
    assert unexplained.sum() <= 1, unexplained.sum()
    portable = load_packed(summary.path, native=False)
    assert (predictions(portable.logits, x) == ours).mean() >= 0.999
    assert summary.packed_layers == 33 and not summary.skipped


def test_xnor_cell_network_agrees_with_pytorch_float32(sample, tmp_path):
    model, summary = train_and_export(cells(XNOR_OPS, XNOR, "float"), sample, tmp_path / "x.bnn")
    engine = load_packed(summary.path)
    x = engine.normalize(sample.test.images)
    ours, theirs = predictions(engine.logits, x), predictions(model, x)
    assert (ours == theirs).mean() >= 0.999
    labels = sample.test.labels
    assert abs((ours == labels).mean() - (theirs == labels).mean()) <= 0.001
    assert (theirs == labels).mean() > 0.15  # it learned something: the check is not vacuous


def test_loaded_file_runs_exactly_like_the_packed_model_in_memory(mixed, sample):
    model, summary = mixed
    packed = pack_model_copy(model)
    engine = load_packed(summary.path)
    x = engine.normalize(sample.test.images[:50])
    with torch.no_grad():
        assert torch.equal(packed(x), engine.logits(x))


def pack_model_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    twin = copy.deepcopy(model)
    pack_model(twin)
    return twin


def test_resnet18_binary_part_is_over_25x_smaller(tmp_path):
    """1 bit per binary weight plus a few floats per channel, against float32 weights."""
    arch = Architecture(ModelConfig(type="resnet18", family="xnor"), 10)
    model = arch.build()
    spec = InputSpec((0.5,) * 3, (0.25,) * 3, tuple(map(str, range(10))))
    summary = export_network(model, arch, spec, tmp_path / "r18.bnn")
    assert summary.binary_float32_bytes / summary.binary_bytes >= 25
    assert summary.binary_float32_bytes / summary.binary_weight_bytes == pytest.approx(32, 0.01)
    checkpoint = io.BytesIO()
    torch.save(model.state_dict(), checkpoint)
    assert len(checkpoint.getvalue()) / summary.file_bytes >= 25
    assert summary.packed_layers == 16 and summary.float_bytes < 0.05 * summary.file_bytes


# ReActNet's activations (RSign before every binary conv, RPReLU after the block) in both
# orders, plus a grouped conv with a channel shuffle (packed too).
REACT_OPS = [
    "skip_connect", "max_pool_3x3",
    {"name": "xnor_conv_3x3", "act": "rsign", "activation": "rprelu"},
    {"name": "bireal_conv_3x3_skip_connect", "act": "rsign", "activation": "rprelu"},
    {"name": "xnor_dil_conv_3x3_skip_connect", "act": "rsign", "reduce": "factorized"},
    {"name": "bireal_conv_5x5", "act": "rsign", "groups": 2, "shuffle": True},
]  # fmt: skip
REACT = (
    "Genotype(normal=[('xnor_conv_3x3', 0), ('bireal_conv_3x3_skip_connect', 1), "
    "('xnor_dil_conv_3x3_skip_connect', 0), ('bireal_conv_5x5', 2), ('skip_connect', 1), "
    "('xnor_conv_3x3', 3)], normal_concat=[2, 3, 4], "
    "reduce=[('xnor_dil_conv_3x3_skip_connect', 0), ('bireal_conv_3x3_skip_connect', 1), "
    "('max_pool_3x3', 0), ('xnor_conv_3x3', 2), "
    "('bireal_conv_5x5', 3), ('skip_connect', 1)], reduce_concat=[2, 3, 4])"
)


def test_rsign_rprelu_network_exports_exactly(sample, tmp_path):
    """RSign's learnt thresholds fold into the packed convs' input thresholds: the engine
    agrees with the exact reference, and with float32 but at ties."""
    from bnn_nas.binary import BinaryConv2d, RSign

    model, summary = train_and_export(cells(REACT_OPS, REACT, "xnor"), sample, tmp_path / "r.bnn")
    thresholds = [m.threshold for m in model.modules() if isinstance(m, RSign)]
    assert thresholds and all(t.abs().max() > 0 for t in thresholds)  # b really was learnt
    engine = load_packed(summary.path, native=True)
    x = engine.normalize(sample.test.images)
    ours = predictions(engine.logits, x)
    reference = exact_reference(model)
    exact = predictions(lambda b: reference(b.double()), x)
    float32 = predictions(model, x)
    assert (ours == exact).mean() >= 0.999
    assert ((ours != float32) & (exact == float32)).sum() <= 1
    binary = sum(isinstance(m, BinaryConv2d) for m in model.modules())
    assert summary.packed_layers == binary and not summary.skipped
    assert any(layer.get("groups") == 2 for layer in engine.header["packed_layers"])


def randomised_eval(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Trained-looking BN statistics and affines, PReLU slopes of either sign; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                if m.weight is not None:
                    m.weight.normal_(1, 0.5, generator=gen)
                    m.bias.normal_(0, 0.5, generator=gen)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(-0.5, 0.5, generator=gen)
    return model.eval()


BATS_CONVS = {"xnor_conv_3x3", "xnor_conv_5x5", "xnor_dil_conv_3x3", "xnor_dil_conv_5x5"}


def test_bats_network_packs_every_grouped_conv(tmp_path):
    """The bats space (12-group binary convs with channel shuffle): a random genotype's
    network exports with every binary conv packed, none left in torch, and the .bnn file
    computes PyTorch's eval logits on the native kernels and the torch fallback."""
    import random

    from bnn_nas.binary import BinaryConv2d
    from bnn_nas.space.search_space import load_search_space

    space = load_search_space("bats")
    genotype = next(
        g for g in (space.random_sample(random.Random(seed)) for seed in range(100))
        if {op for op, _ in (*g.normal, *g.reduce)} >= BATS_CONVS
    )  # fmt: skip
    arch = Architecture(ModelConfig(cells=3, channels=24), 10, space, genotype)
    torch.manual_seed(0)
    model = randomised_eval(arch.build(), seed=1)
    spec = InputSpec((0.5,) * 3, (0.25,) * 3, tuple(map(str, range(10))), 32, 32)
    summary = export_network(model, arch, spec, tmp_path / "bats.bnn")
    binary = [m for m in model.modules() if isinstance(m, BinaryConv2d)]
    assert summary.packed_layers == len(binary) and summary.skipped == ()
    assert "left in torch" not in summary.describe()
    assert summary.binary_float32_bytes == 4 * sum(m.weight.numel() for m in binary)
    engine = load_packed(summary.path, native=True)
    layers = engine.header["packed_layers"]
    assert len(layers) == len(binary) and engine.header["skipped"] == []
    grouped = sum(m.groups == 12 for m in binary)
    assert grouped >= 8
    assert sum(layer.get("groups") == 12 for layer in layers) == grouped
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(engine.logits(x), expected, rtol=1e-5, atol=1e-4)
        exact = exact_reference(model)(x.double())
        torch.testing.assert_close(engine.logits(x).double(), exact, rtol=1e-5, atol=1e-4)
        portable = load_packed(summary.path, native=False)
        torch.testing.assert_close(portable.logits(x), engine.logits(x), rtol=1e-5, atol=1e-5)
        twin = pack_model_copy(model).to(memory_format=torch.channels_last)
        assert torch.equal(twin(x), engine.logits(x))  # the file holds the packed model
