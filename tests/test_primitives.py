"""Every registered primitive, driven by the registry itself."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from bnn_nas.binary import ACTIVATION_BINARIZERS, WEIGHT_BINARIZERS, BinaryConv2d
from bnn_nas.errors import PrimitiveError
from bnn_nas.primitives import FAMILY_DEFAULTS, BinaryOptions, get_primitive, list_primitives
from bnn_nas.primitives.options import ACTIVATIONS, DOWNSAMPLES, ORDERS, REDUCES
from tests.primitive_checks import check_primitive

ALL = [spec.name for spec in list_primitives()]
FAMILY = [spec.name for spec in list_primitives() if spec.family in FAMILY_DEFAULTS]
CHANNELS = [(4, 4), (4, 8), (5, 7), (6, 3)]  # equal, doubled, odd, shrinking
OPTION_VALUES = {
    "act": tuple(ACTIVATION_BINARIZERS),
    "weight": tuple(WEIGHT_BINARIZERS),
    "order": ORDERS,
    "activation": ACTIVATIONS,
    "downsample": DOWNSAMPLES,
    "reduce": REDUCES,
}
SINGLE_OPTIONS = [(k, v) for k, values in OPTION_VALUES.items() for v in values]


def test_builtin_table_is_complete():
    shapes = [
        "conv_1x1", "conv_3x3", "conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
        "conv_3x3_skip_connect", "skip_connect", "resnet_block", "vgg_block", "nin",
    ]  # fmt: skip
    expected = {"none", "skip_connect", "avg_pool_3x3", "max_pool_3x3", "conv_3x3"}
    expected |= {f"{fam}_{shape}" for fam in ("xnor", "bireal") for shape in shapes}
    assert expected <= set(ALL)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(("C_in", "C_out"), CHANNELS)
def test_every_primitive_with_defaults(name, stride, C_in, C_out):
    check_primitive(get_primitive(name), C_in, C_out, stride)


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize(("key", "value"), SINGLE_OPTIONS)
def test_every_family_primitive_with_each_option_value(name, key, value):
    spec = get_primitive(name)
    for (C_in, C_out), stride in itertools.product(CHANNELS, (1, 2)):
        check_primitive(spec, C_in, C_out, stride, **{key: value})


def _binary_convs(module):
    return [m for m in module.modules() if isinstance(m, BinaryConv2d)]


@pytest.mark.parametrize("family", sorted(FAMILY_DEFAULTS))
def test_family_defaults_reach_every_binary_conv(family):
    defaults = FAMILY_DEFAULTS[family]
    module = get_primitive(f"{family}_resnet_block").build(8, 16, 2)
    convs = _binary_convs(module)
    assert len(convs) == 2
    assert {(c.act.name, c.weight_binarizer.name) for c in convs} == {
        (defaults.act, defaults.weight)
    }


def test_options_change_the_structure_they_name():
    xnor = get_primitive("xnor_conv_3x3_skip_connect")
    concat = xnor.build(8, 16, 2, downsample="avgpool_concat")
    conv = xnor.build(8, 16, 2, downsample="avgpool_conv")
    binary = xnor.build(8, 16, 2, downsample="binary_conv")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(concat) < count(conv)  # the float 1x1 conv adds 8 * 16 weights (+ BN)
    assert count(conv) - count(concat) == 8 * 16 + 2 * 16
    assert len(_binary_convs(binary)) == 2 and len(_binary_convs(conv)) == 1
    factorized = xnor.build(8, 16, 2, reduce="factorized")
    assert [c.out_channels for c in _binary_convs(factorized)] == [8, 8]
    # order: BN over the input (bn_conv) or the output (conv_bn)
    assert xnor.build(8, 16, 1, order="bn_conv").bn.num_features == 8
    assert xnor.build(8, 16, 1, order="conv_bn").bn.num_features == 16
    prelu = xnor.build(8, 16, 1, activation="prelu")
    assert isinstance(prelu.act, torch.nn.PReLU) and prelu.act.num_parameters == 16


def test_xnor_skip_connect_is_parameter_free_when_doubling():
    for family in FAMILY_DEFAULTS:
        m = get_primitive(f"{family}_skip_connect").build(8, 16, 2)
        x = torch.randn(2, 8, 6, 6)
        assert sum(p.numel() for p in m.parameters()) == 0
        pooled = torch.nn.functional.avg_pool2d(x, 2)
        torch.testing.assert_close(m(x), torch.cat([pooled, pooled], dim=1))


def test_resnet_block_is_two_convs_each_with_its_shortcut():
    m = get_primitive("xnor_resnet_block").build(6, 6, 1).eval()
    x = torch.randn(2, 6, 5, 5)
    u1, u2 = m[0], m[1]
    h = u1.conv(u1.bn(x)) + x
    torch.testing.assert_close(m(x), u2.conv(u2.bn(h)) + h)


def test_bireal_unit_is_conv_bn_plus_shortcut():
    m = get_primitive("bireal_conv_3x3_skip_connect").build(6, 6, 1).eval()
    x = torch.randn(2, 6, 5, 5)
    torch.testing.assert_close(m(x), m.bn(m.conv(x)) + x)


def _fingerprint(module):
    return repr(module), {k: v.clone() for k, v in module.state_dict().items()}


def test_building_in_any_order_gives_identical_modules():
    names = ALL
    first = {}
    for name in names:
        torch.manual_seed(1)
        first[name] = _fingerprint(get_primitive(name).build(5, 10, 2))
    shuffled = names[:]
    random.Random(0).shuffle(shuffled)
    for name in shuffled:
        # building others with unusual options in between must not leak into this one
        other = get_primitive(random.Random(name).choice(FAMILY))
        other.build(3, 3, 1, act="ste", weight="sign", order="conv_bn", activation="prelu")
        torch.manual_seed(1)
        text, state = _fingerprint(get_primitive(name).build(5, 10, 2))
        assert text == first[name][0]
        assert state.keys() == first[name][1].keys()
        for key, value in state.items():
            assert torch.equal(value, first[name][1][key]), (name, key)


def test_invalid_options_are_errors():
    spec = get_primitive("xnor_conv_3x3")
    with pytest.raises(PrimitiveError, match=r"no option 'kernel'.*act, activation"):
        spec.build(4, 4, 1, kernel=5)
    with pytest.raises(PrimitiveError, match=r"order='bn_relu_conv' is invalid.*bn_conv, conv_bn"):
        spec.build(4, 4, 1, order="bn_relu_conv")
    with pytest.raises(PrimitiveError, match=r"unknown|invalid"):
        spec.build(4, 4, 1, act="sgn")
    with pytest.raises(PrimitiveError, match="takes no options"):
        get_primitive("max_pool_3x3").build(4, 4, 1, act="ste")
    with pytest.raises(PrimitiveError, match="stride must be 1 or 2"):
        spec.build(4, 4, 3)
    with pytest.raises(PrimitiveError, match="C_out must be a positive integer"):
        spec.build(4, 0, 1)
    with pytest.raises(PrimitiveError):
        BinaryOptions(**{**FAMILY_DEFAULTS["xnor"].__dict__, "downsample": "maxpool"})
