"""Network templates of published cell networks, counted as their authors' code counts them.

DARTS V2 (quark0/darts, auxiliary head excluded) and BNAS-A (gistvision/bnas, whose
training log prints the same count) at 20 cells x 36 channels; the ImageNet baselines
against Bi-Real Net's OPs; the stems, shortcuts, preprocessing and the auxiliary head.
"""

from __future__ import annotations

import random
import re

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from bnn_nas.binary import BinaryConv2d
from bnn_nas.cli import main
from bnn_nas.config import ModelConfig
from bnn_nas.cost import count_cost
from bnn_nas.errors import ConfigError
from bnn_nas.primitives.blocks import BinaryUnit
from bnn_nas.space.cell_parts import AuxiliaryLoss, ReductionShortcut, with_auxiliary_loss
from bnn_nas.space.genotype import parse_genotype
from bnn_nas.space.network import CellNetwork, build_model
from bnn_nas.space.search_space import load_search_space, search_space_from_dict
from tests.conftest import DARTS_V2

BNAS_A = (
    "Genotype(normal=[('none', 1), ('xnor_dil_conv_3x3', 0), ('xnor_conv_3x3', 1), "
    "('none', 2), ('none', 2), ('none', 3), ('none', 3), ('none', 4)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('none', 1), "
    "('max_pool_3x3', 0), ('none', 2), ('none', 3), ('none', 2), ('none', 3), ('none', 4)], "
    "reduce_concat=[2, 3, 4, 5])"
)
DARTS_OPS = ["sep_conv_3x3", "dil_conv_3x3", "skip_connect", "max_pool_3x3"]
FINAL = ModelConfig(cells=20, channels=36)


def darts_space(**network):
    return search_space_from_dict({"ops": DARTS_OPS, "network": network}, "darts space")


def _params(net: nn.Module) -> int:
    return sum(p.numel() for name, p in net.named_parameters() if "auxiliary" not in name)


def test_darts_v2_counts_as_darts_code():
    net = build_model(FINAL, darts_space(auxiliary_head=True), 10, parse_genotype(DARTS_V2))
    assert _params(net) == 3_349_342
    assert net.auxiliary is not None and net.auxiliary_at == 13
    # the cost model leaves the training-only head out, as DARTS's count does
    assert count_cost(net).params == 3_349_342


def test_bnas_a_counts_as_bnas_code():
    net = build_model(FINAL, load_search_space("bnas_kim"), 10, parse_genotype(BNAS_A))
    assert sum(p.numel() for p in net.parameters()) == 5_578_252
    assert count_cost(net).params == 5_578_252


def test_bnas_template_parts():
    net = build_model(FINAL, load_search_space("bnas_kim"), 10, parse_genotype(BNAS_A))
    cells = list(net.cells)
    assert cells[0].shortcut is None  # no shortcut around the first cell
    assert isinstance(cells[1].shortcut, nn.Identity)
    reduction = cells[6]
    assert reduction.reduction and isinstance(reduction.shortcut, ReductionShortcut)
    conv = reduction.shortcut.conv
    assert conv.kernel_size == (2, 2) and conv.stride == (2, 2) and conv.bias is not None
    after = cells[7].preprocess0  # after a reduction: binary 3x3 stride 2, BN without affine
    assert isinstance(after, BinaryUnit) and not after.bn.affine
    assert after.conv.kernel_size == (3, 3) and after.conv.stride == (2, 2)
    assert isinstance(cells[1].preprocess1.conv, BinaryConv2d) and cells[1].preprocess1.bn.affine
    assert isinstance(cells[1].preprocess1.act, nn.ReLU)
    assert isinstance(net.stem[0], nn.BatchNorm2d) and isinstance(net.stem[2], nn.ReLU)
    net.train()
    out = net(torch.randn(2, 3, 32, 32))
    out.sum().backward()
    assert out.shape == (2, 10)


def test_cell_shortcut_around_an_odd_sized_reduction():
    space = search_space_from_dict(
        {"ops": ["xnor_conv_3x3", "max_pool_3x3"],
         "network": {"cells": 3, "channels": 4, "cell_shortcut": "identity"}},
        "odd",
    )  # fmt: skip
    g = space.random_sample(random.Random(0))
    assert CellNetwork(g, space, 10)(torch.randn(1, 3, 15, 15)).shape == (1, 10)


def test_reduce_skip_binary_makes_stride_2_skip_connects_binary():
    binary = search_space_from_dict(
        {"ops": DARTS_OPS, "reduce_skip": "binary", "network": {"cells": 5}}, "binary skip"
    )
    # DARTS V2 with its reduce cell's first edge a skip_connect on a cell input (stride 2)
    g = parse_genotype(
        DARTS_V2.replace("reduce=[('max_pool_3x3', 0)", "reduce=[('skip_connect', 0)")
    )
    reduce_cell = CellNetwork(g, binary, 10).cells[1]
    edge = reduce_cell.ops[0]
    assert isinstance(edge, BinaryUnit)  # BN -> sign -> two stride-2 binary 1x1 convs
    assert [(c.kernel_size, c.stride) for c in edge.conv.children()] == [((1, 1), (2, 2))] * 2
    float_edge = CellNetwork(g, darts_space(cells=5), 10).cells[1].ops[0]
    assert not any(isinstance(m, BinaryConv2d) for m in float_edge.modules())
    # at stride 1 (node 2 of the reduce cell, and normal cells) skip_connect stays identity
    edges = zip(reduce_cell.ops, g.reduce, strict=True)
    stride_1 = [op for op, (name, i) in edges if name == "skip_connect" and i >= 2]
    assert stride_1 and all(isinstance(op, nn.Identity) for op in stride_1)


def test_auxiliary_head_and_its_loss():
    net = CellNetwork(parse_genotype(DARTS_V2), darts_space(cells=5, auxiliary_head=True), 10)
    plain = nn.CrossEntropyLoss()
    loss = with_auxiliary_loss(plain, net, 0.4)
    assert isinstance(loss, AuxiliaryLoss)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    net.train()
    logits = net(x)
    aux = net.auxiliary_logits
    assert aux is not None and aux.shape == (4, 10)
    torch.testing.assert_close(loss(logits, y), plain(logits, y) + 0.4 * plain(aux, y))
    net.eval()
    with torch.no_grad():
        assert torch.equal(loss(net(x), y), plain(net(x), y))
    assert with_auxiliary_loss(plain, net, 0.0) is plain  # and the head is switched off
    net.train()(x)
    assert net.auxiliary_logits is None
    no_head = CellNetwork(parse_genotype(DARTS_V2), darts_space(cells=5), 10)
    assert no_head.auxiliary is None and with_auxiliary_loss(plain, no_head, 0.4) is plain


def test_imagenet_stem_and_image_size_checks():
    space = darts_space(cells=5, stem="imagenet", channels=8, auxiliary_head=True)
    g = parse_genotype(DARTS_V2)
    net = build_model(ModelConfig(), space, 1000, g, image_size=224).train()
    assert net(torch.randn(2, 3, 224, 224)).shape == (2, 1000)
    assert net.auxiliary_logits.shape == (2, 1000)
    assert net.cells[0].preprocess0[0].conv_a.stride == (2, 2)  # s0 comes from stem0
    with pytest.raises(ConfigError, match="stem imagenet is made for ImageNet-size"):
        build_model(ModelConfig(), space, 10, g, image_size=32)
    with pytest.raises(ConfigError, match="stem cifar is made for CIFAR-size"):
        build_model(ModelConfig(), darts_space(), 10, g, image_size=224)


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ({"stem": "mnist"}, "network.stem 'mnist' is invalid; choose one of cifar, bnas, imagenet"),
        ({"cell_shortcut": "dense"}, "network.cell_shortcut 'dense' is invalid"),
        ({"preprocess": "ternary"}, "network.preprocess 'ternary' is invalid"),
        ({"auxiliary_head": "yes"}, "network.auxiliary_head must be true or false"),
    ],
)
def test_bad_network_settings_are_one_line_errors(network, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        darts_space(**network)
    assert "\n" not in str(err.value)


def test_bad_reduce_skip_and_groups_in_a_space_are_one_line_errors():
    with pytest.raises(ConfigError, match="reduce_skip 'ternary' is invalid; choose one of float"):
        search_space_from_dict({"ops": DARTS_OPS, "reduce_skip": "ternary"}, "s")
    with pytest.raises(ConfigError, match=r"s: primitive 'xnor_conv_3x3': groups=12 must divide"):
        search_space_from_dict(
            {"ops": [{"name": "xnor_conv_3x3", "groups": 12}], "network": {"channels": 16}}, "s"
        )


def _profile(*args: str) -> str:
    result = CliRunner().invoke(main, ["profile", *args])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def _ops(total_line: str) -> float:
    value = re.search(r"OPs (\S+)", total_line.split("FLOPs")[1]).group(1)
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}[value[-1]]
    return float(value[:-1]) * scale


@pytest.mark.parametrize(("model", "ops"), [("resnet18", 1.64e8), ("resnet34", 1.93e8)])
def test_profile_imagenet_baselines_print_bireal_ops(model, ops):
    line = _profile("--model", model, "--image-size", "224", "--classes", "1000")
    assert _ops(line) == pytest.approx(ops, rel=0.01)


def test_profile_cells_and_channels_and_refusals(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("search_space: bnas_kim\n")
    line = _profile(BNAS_A, "--config", str(config), "--cells", "20", "--channels", "36")
    assert "params 5.58M" in line
    result = CliRunner().invoke(main, ["profile", "--model", "vgg_small", "--image-size", "224"])
    assert result.exit_code == 2
    assert "model vgg_small is laid out for CIFAR-size images" in result.output
    result = CliRunner().invoke(main, ["profile", "--model", "resnet18", "--cells", "20"])
    assert result.exit_code == 2 and "size a GENOTYPE's network" in result.output


def test_export_description_keeps_the_imagenet_layout():
    from bnn_nas.export import Architecture

    arch = Architecture(ModelConfig(type="resnet18"), 1000, image_size=224)
    again = Architecture.from_dict(arch.to_dict(), "test")
    assert again.image_size == 224 and again.build().stem[0].kernel_size == (7, 7)
    cifar = Architecture(ModelConfig(type="resnet18"), 10)
    assert "image_size" not in cifar.to_dict()  # older files read the same
    assert cifar.build().stem[0].kernel_size == (3, 3)


def test_auxiliary_head_trains_with_fit_and_its_weight_is_validated():
    from bnn_nas.config import TrainConfig, config_from_dict
    from bnn_nas.data import load_cifar10_sample
    from bnn_nas.train import fit

    space = darts_space(cells=2, channels=4, auxiliary_head=True)  # no reductions: 32x32 maps
    net = CellNetwork(parse_genotype(DARTS_V2), space, 10)
    assert net.auxiliary is not None and net.auxiliary_at == 1
    sample = load_cifar10_sample()
    data = sample.train.subset(list(range(64)))
    settings = TrainConfig(epochs=1, batch_size=32, auxiliary_weight=0.4)
    stats = sample.train.channel_stats()
    history = fit(net, data, settings, device=torch.device("cpu"), seed=0, stats=stats)
    assert len(history) == 1
    assert any(p.grad is not None for p in net.auxiliary.parameters())  # its loss was used
    with pytest.raises(ConfigError, match=r"train.auxiliary_weight=-1 must be >= 0"):
        config_from_dict({"train": {"auxiliary_weight": -1}}, "c.yaml")


def _trained_aux_network(weight: float) -> tuple[CellNetwork, list[int]]:
    """A tiny binary cell network with the auxiliary head, fit one step (32 images), and
    a list counting the head's forwards."""
    from bnn_nas.config import TrainConfig
    from bnn_nas.data import load_cifar10_sample
    from bnn_nas.train import fit

    space = search_space_from_dict(
        {"ops": ["xnor_conv_3x3", "skip_connect"],
         "network": {"cells": 2, "channels": 4, "auxiliary_head": True}}, "aux space",
    )  # fmt: skip
    net = CellNetwork(parse_genotype(XNOR_TWO_STEPS), space, 10)
    runs: list[int] = []
    net.auxiliary.register_forward_hook(lambda *_: runs.append(1))
    sample = load_cifar10_sample()
    settings = TrainConfig(epochs=1, batch_size=32, auxiliary_weight=weight)
    stats = sample.train.channel_stats()
    fit(net, sample.train.subset(list(range(32))), settings, device=torch.device("cpu"), seed=0,
        stats=stats)  # fmt: skip
    return net, runs


XNOR_TWO_STEPS = (
    "Genotype(normal=[('xnor_conv_3x3', 0), ('skip_connect', 1), ('xnor_conv_3x3', 2), "
    "('skip_connect', 0)], normal_concat=[2, 3], reduce=[('xnor_conv_3x3', 0), "
    "('skip_connect', 1), ('xnor_conv_3x3', 2), ('skip_connect', 0)], reduce_concat=[2, 3])"
)


def test_a_trained_auxiliary_head_network_deep_copies_and_exports(tmp_path):
    """The loss takes the auxiliary logits off the module: no autograd-graph tensor stays
    on a trained network (deepcopy raised on one), so every exporter's copy works."""
    import copy

    from bnn_nas.export import Architecture, InputSpec, export_network
    from bnn_nas.export.onnx_format import onnx_ready

    net, runs = _trained_aux_network(0.4)
    assert runs == [1] and net.training  # the head ran in the one training step
    copy.deepcopy(net)  # raised: "Only Tensors created explicitly by the user ... deepcopy"
    assert net.auxiliary_logits is None
    onnx_ready(net)
    space = search_space_from_dict(
        {"ops": ["xnor_conv_3x3", "skip_connect"],
         "network": {"cells": 2, "channels": 4, "auxiliary_head": True}}, "aux space",
    )  # fmt: skip
    arch = Architecture(ModelConfig(), 10, space, parse_genotype(XNOR_TWO_STEPS))
    spec = InputSpec((0.5,) * 3, (0.25,) * 3, tuple(map(str, range(10))), 32, 32)
    assert export_network(net, arch, spec, tmp_path / "aux.bnn").packed_layers > 0


def test_auxiliary_weight_zero_does_not_run_the_head():
    net, runs = _trained_aux_network(0.0)
    assert runs == [] and net.auxiliary_logits is None
    assert all(p.grad is None for p in net.auxiliary.parameters())
    # a later fit with a weight switches it back on
    plain = nn.CrossEntropyLoss()
    assert isinstance(with_auxiliary_loss(plain, net, 0.4), AuxiliaryLoss)
    net.train()(torch.randn(2, 3, 32, 32))
    assert runs == [1]
