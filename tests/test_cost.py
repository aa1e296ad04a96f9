"""The cost model against hand-computed counts and a published reference network."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from bnn_nas.binary import BinaryConv2d, BinaryLinear
from bnn_nas.cost import LayerCost, ModelCost, count_cost
from bnn_nas.primitives import get_primitive
from bnn_nas.space.network import build_baseline


def test_binary_conv_counts_bops_and_one_bit_weights():
    conv = BinaryConv2d(16, 32, 3, stride=1, padding=1)
    cost = count_cost(conv, (1, 16, 32, 32))
    assert cost.bops == 32 * 32 * 32 * 16 * 9
    assert cost.flops == 0
    assert cost.binary_params == 32 * 16 * 9
    assert cost.float_params == 0
    assert cost.bytes == 32 * 16 * 9 / 8
    assert cost.ops == 32 * 32 * 32 * 16 * 9 / 64
    assert cost.layers == (
        LayerCost("", "BinaryConv2d", (1, 32, 32, 32), cost.bops, 0, 32 * 16 * 9, 0),
    )


@pytest.mark.parametrize("binarizer", [{"act": "identity"}, {"weight": "identity"}])
def test_binary_conv_with_a_float_operand_counts_flops_and_float_weights(binarizer):
    conv = BinaryConv2d(16, 32, 3, stride=1, padding=1, **binarizer)
    cost = count_cost(conv, (1, 16, 32, 32))
    assert (cost.bops, cost.flops) == (0, 32 * 32 * 32 * 16 * 9)
    assert (cost.binary_params, cost.float_params) == (0, 32 * 16 * 9)
    assert cost.bytes == 4 * 32 * 16 * 9


def test_strided_grouped_conv_and_binary_linear_with_bias():
    model = nn.Sequential(
        nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=False),  # 8x8 -> 4x4
        nn.Flatten(),
        BinaryLinear(16 * 4 * 4, 10, bias=True),
    )
    cost = count_cost(model, (1, 8, 8, 8))
    assert cost.flops == 4 * 4 * 16 * (8 // 4) * 9
    assert cost.bops == 256 * 10
    assert cost.binary_params == 256 * 10
    assert cost.float_params == 16 * 2 * 9 + 10  # grouped conv weight + the binary layer's bias


def test_grouped_binary_unit_with_rsign_and_rprelu():
    """Grouped binary convs cost C_in / groups MACs per output; RSign's thresholds and
    RPReLU's shifts and slopes are float parameters and cost no MACs."""
    unit = get_primitive("xnor_conv_3x3").build(
        12, 24, 2, groups=4, shuffle=True, act="rsign", activation="rprelu"
    )
    cost = count_cost(unit, (1, 12, 8, 8))
    assert cost.bops == 4 * 4 * 24 * (12 // 4) * 9 and cost.flops == 0
    assert cost.binary_params == 24 * 3 * 9
    assert cost.float_params == 2 * 12 + 12 + 3 * 24  # BN, RSign's b, RPReLU


def test_linear_counts_every_leading_position():
    cost = count_cost(nn.Linear(6, 4), (1, 5, 6))  # 5 tokens per image
    assert cost.flops == 5 * 6 * 4
    assert cost.float_params == 6 * 4 + 4


def test_float_stem_and_classifier():
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    cost = count_cost(model, (1, 3, 32, 32))
    assert cost.bops == 0
    assert cost.flops == 32 * 32 * 16 * 3 * 9 + 16 * 10
    assert cost.binary_params == 0
    assert cost.float_params == (16 * 3 * 9 + 16) + 2 * 16 + (16 * 10 + 10)
    assert cost.ops == cost.flops
    assert cost.bytes == 4 * cost.float_params
    assert [layer.name for layer in cost.layers] == ["0", "1", "5"]  # ReLU, pool: no cost


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.unused = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.conv(x))


def test_module_called_twice_counts_macs_twice_and_params_once():
    cost = count_cost(Twice(), (1, 8, 16, 16))
    assert cost.flops == 2 * (16 * 16 * 8 * 8 * 9)
    assert cost.float_params == 8 * 8 * 9 + (3 * 2 + 2)  # the unused layer still stores
    calls = [layer for layer in cost.layers if layer.name == "conv"]
    assert [layer.float_params for layer in calls] == [8 * 8 * 9, 0]
    unused = next(layer for layer in cost.layers if layer.name == "unused")
    assert (unused.output_shape, unused.flops) == ((), 0)


def test_shared_parameter_counts_once():
    a, b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    b.weight = a.weight
    cost = count_cost(nn.Sequential(a, b), (1, 4))
    assert cost.flops == 2 * 4 * 4
    assert cost.float_params == 4 * 4


def binary_resnet18() -> nn.Module:
    """Binary ResNet-18, ImageNet layout, as in Bi-Real Net: float stem, downsample and FC."""
    return build_baseline("resnet18", "xnor", 1000, image_size=224)


def test_imagenet_resnet18_is_bireals_layout():
    model = binary_resnet18()
    assert [type(m).__name__ for m in model.stem] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert model.stem[0].kernel_size == (7, 7) and model.stem[0].stride == (2, 2)
    assert len(model.blocks) == 8 and model.classifier.out_features == 1000
    down = model.blocks[2][0].shortcut  # stride-2 shortcut: 2x2 avg-pool + float 1x1 conv + BN
    assert [type(m).__name__ for m in down] == ["AvgPool2d", "Sequential"]
    assert isinstance(down[1][0], nn.Conv2d) and down[1][0].kernel_size == (1, 1)


def test_binary_resnet18_matches_bireal_net():
    model = binary_resnet18()
    cost = count_cost(model, (1, 3, 224, 224))
    later = ((128, 28), (256, 14), (512, 7))  # (channels, size) of stages 2-4
    # Binary 3x3 convs: stage 1 has four 64->64 at 56x56; each later stage one c/2->c, three c->c.
    bops = 4 * 56 * 56 * 64 * 64 * 9
    bops += sum(h * h * c * (c // 2) * 9 + 3 * h * h * c * c * 9 for c, h in later)
    # Float: 7x7/2 stem at 112x112, 1x1 c/2->c downsample convs, FC 512->1000.
    flops = 112 * 112 * 64 * 3 * 49 + sum(h * h * c * (c // 2) for c, h in later) + 512 * 1000
    assert cost.bops == bops  # 1,676,279,808
    assert cost.flops == flops  # 137,793,536
    # Bi-Real Net (ECCV 2018), Table 4: BOPs 1.68e9, FLOPs 1.39e8, OPs 1.63e8. We count 1.38e8
    # FLOPs (MACs of the stem, 1x1 downsample convs and FC only) and OPs 1.640e8.
    assert cost.bops == pytest.approx(1.68e9, rel=0.03)
    assert cost.ops == pytest.approx(1.63e8, rel=0.03)
    assert cost.ops == bops / 64 + flops

    binary = 4 * 64 * 64 * 9 + sum(c * (c // 2) * 9 + 3 * c * c * 9 for c, _ in later)
    floats = 64 * 3 * 49 + 2 * 64  # stem conv + BN
    floats += 4 * 2 * 64  # stage 1: the BN in front of each binary conv (bn_conv order)
    floats += sum(2 * (c // 2) + 3 * 2 * c for c, _ in later)  # later stages' BNs
    floats += sum(c * (c // 2) + 2 * c for c, _ in later)  # downsample 1x1 conv + BN
    floats += 512 * 1000 + 1000  # FC
    assert (cost.binary_params, cost.float_params) == (binary, floats)
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert cost.bytes == binary / 8 + 4 * floats


def test_training_flags_restored_and_model_unchanged():
    model = binary_resnet18()
    model.train()
    model.stem[1].eval()  # a mixed state must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    count_cost(model, (1, 3, 64, 64))
    assert [m.training for m in model.modules()] == flags
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m._forward_hooks for m in model.modules())


def test_eval_model_stays_in_eval():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    count_cost(model, (1, 3, 8, 8))
    assert not any(m.training for m in model.modules())


def test_batch_must_be_one():
    with pytest.raises(ValueError, match="batch size 1"):
        count_cost(nn.Linear(3, 2), (2, 3))


def test_to_dict_is_json_and_table_lists_every_layer():
    cost = count_cost(binary_resnet18(), (1, 3, 64, 64))
    data = json.loads(json.dumps(cost.to_dict()))
    assert data["bops"] == cost.bops and data["ops"] == cost.ops
    assert len(data["layers"]) == len(cost.layers)
    assert data["layers"][0]["output_shape"] == [1, 64, 32, 32]  # the 7x7 stride-2 stem

    table = cost.table()
    for layer in cost.layers:
        assert layer.name in table
    totals = table.splitlines()[-1]
    for word in ("BOPs", "FLOPs", "OPs", "params", "binary", "float", "bytes"):
        assert word in totals


def test_table_uses_engineering_suffixes():
    layer = LayerCost("stage.conv", "BinaryConv2d", (1, 8, 4, 4), 1_676_279_808, 0, 999_999, 7)
    cost = ModelCost((layer,), 1_676_279_808, 163_000_000, 999_999, 7)
    table = cost.table()
    assert "stage.conv" in table and "1x8x4x4" in table
    assert "BOPs 1.68G" in table
    assert "FLOPs 163M" in table
    assert "1.00M" in table and "1e+03k" not in table  # 999,999 rounds up a suffix
    assert "125 kB" in table  # 999,999 / 8 + 28 bytes, in decimal units as every command
    assert "11.0M" in count_cost(nn.Linear(1000, 11_000, bias=False), (1, 1000)).table()


def test_one_way_to_write_counts_and_sizes():
    from bnn_nas.objectives import labelled, summary, written
    from bnn_nas.units import count, plural, size

    assert [count(v) for v in (0, 512, 98_300, 590_000, 999_999, 2.05e6, 1.676e9)] == [
        "0", "512", "98.3k", "590k", "1.00M", "2.05M", "1.68G"]  # fmt: skip
    assert [size(v) for v in (512, 43_400, 1.44e6)] == ["512 B", "43.4 kB", "1.44 MB"]
    assert plural(1, "trial") == "1 trial" and plural(2, "thread") == "2 threads"
    # what a person types back (derive --max-ops 2.05M) reads as the count printed
    from bnn_nas.units import parse_count

    assert [parse_count(count(v)) for v in (512, 98_300, 2.05e6, 1.68e9)] == [
        512, 98_300, 2.05e6, 1.68e9]  # fmt: skip
    assert parse_count("2200000") == parse_count("2.2e6") == parse_count(" 2.2M ") == 2.2e6
    for bad in ("2.2m", "2.2 MB", "M", "", "nan", "-"):
        with pytest.raises(ValueError, match="k, M, G or T"):
            parse_count(bad)
    # progress lines, status's summary, derive's errors and profile's table agree
    assert labelled("ops", 2.05e6) == "OPs 2.05M" and summary("ops", 2.05e6) == "OPs 2.05M"
    assert labelled("params", 98_300) == "params 98.3k" and written("bytes", 1.44e6) == "1.44 MB"
    assert labelled("accuracy", 0.246) == "acc 0.2460"
    layer = LayerCost("conv", "BinaryConv2d", (1, 8, 4, 4), 0, 2_050_000, 98_300, 7)
    totals = ModelCost((layer,), 0, 2_050_000, 98_300, 7).table().splitlines()[-1]
    assert "OPs 2.05M" in totals and "params 98.3k" in totals and "e+0" not in totals
