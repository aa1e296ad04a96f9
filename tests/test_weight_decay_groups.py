"""Per-group weight decay: which parameters are weights and which are per-channel
affines, shifts, thresholds and slopes (ReActNet's treatment)."""

from __future__ import annotations

import random

import torch
from torch import nn

from bnn_nas.binary import BinaryConv2d, RPReLU, RSign
from bnn_nas.config import TrainConfig
from bnn_nas.space.network import CellNetwork
from bnn_nas.space.search_space import search_space_from_dict
from bnn_nas.train.optim import build_optimizer, parameter_groups


def reactnet_cells() -> nn.Module:
    ops = [
        {"name": "xnor_conv_3x3", "act": "rsign", "activation": "rprelu"},
        {"name": "bireal_conv_3x3_skip_connect", "act": "rsign", "activation": "prelu"},
    ]
    space = search_space_from_dict(
        {"steps": 2, "ops": ops, "network": {"cells": 3, "channels": 8, "stem_multiplier": 1}},
        "t",
    )
    return CellNetwork(space.random_sample(random.Random(0)), space, 10)


def ids(params) -> set[int]:
    return {id(p) for p in params}


def test_rsign_rprelu_and_prelu_parameters_join_bn_and_biases():
    net = reactnet_cells()
    thresholds = ids(m.threshold for m in net.modules() if isinstance(m, RSign))
    shifts = ids(p for m in net.modules() if isinstance(m, RPReLU)
                 for p in (m.shift_in, m.shift_out))  # fmt: skip
    slopes = ids(m.weight for m in net.modules() if isinstance(m, nn.PReLU))
    binary = ids(m.weight for m in net.modules() if isinstance(m, BinaryConv2d))
    bn = ids(p for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    biases = ids(m.bias for m in net.modules() if getattr(m, "bias", None) is not None)
    assert thresholds and shifts and slopes and binary and bn and biases
    # an RPReLU's slope is a PReLU too; plain PReLU slopes come from `activation: prelu`
    assert len(slopes) > len(ids(m.prelu.weight for m in net.modules() if isinstance(m, RPReLU)))

    rest, held_binary, held_bn = parameter_groups(
        net, 1e-4, decay_binary_and_bn=False, binary_weight_decay=2e-5, bn_weight_decay=0.0
    )
    assert (rest["weight_decay"], held_binary["weight_decay"], held_bn["weight_decay"]) == (
        1e-4, 2e-5, 0.0,
    )  # fmt: skip
    assert ids(held_bn["params"]) == thresholds | shifts | slopes | bn | biases
    assert ids(held_binary["params"]) == binary
    weights = ids(rest["params"])
    assert weights == ids(net.parameters()) - binary - ids(held_bn["params"])
    convs = (m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Linear))
    float_weights = ids(m.weight for m in convs if not isinstance(m, BinaryConv2d))
    assert weights == float_weights  # the stem, preprocessing and classifier weights only


def test_groups_follow_module_type_not_parameter_names():
    class Oddly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias_like = nn.Linear(4, 4, bias=False)  # a weight, though named "bias..."
            self.norm = nn.GroupNorm(2, 4)
            self.slope = nn.PReLU(4)
            self.offset = nn.Parameter(torch.zeros(4))  # a plain parameter: a weight

    net = Oddly()
    rest, bn = parameter_groups(net, 1e-4, decay_binary_and_bn=False)
    assert ids(bn["params"]) == ids([net.norm.weight, net.norm.bias, net.slope.weight])
    assert ids(rest["params"]) == ids([net.bias_like.weight, net.offset])
    (everything,) = parameter_groups(net, 1e-4, decay_binary_and_bn=True)
    assert ids(everything["params"]) == ids(net.parameters())


def test_the_optimizers_get_the_groups():
    net = reactnet_cells()
    thresholds = ids(m.threshold for m in net.modules() if isinstance(m, RSign))
    for optimizer in ("adam", "sgd"):
        settings = TrainConfig(optimizer=optimizer, weight_decay=5e-4)
        groups = build_optimizer(net, settings).param_groups
        held = [g for g in groups if g["weight_decay"] == 0.0]
        assert len(groups) == 2 and thresholds <= ids(held[0]["params"])
