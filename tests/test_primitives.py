"""Every registered primitive, driven by the registry itself."""

from __future__ import annotations

import itertools
import random
import re

import pytest
import torch

from bnn_nas.binary import ACTIVATION_BINARIZERS, WEIGHT_BINARIZERS, BinaryConv2d
from bnn_nas.errors import PrimitiveError
from bnn_nas.extensions import list_families
from bnn_nas.primitives import BinaryOptions, get_primitive, list_primitives
from bnn_nas.primitives.builtin import FAMILY_SHAPES, SHAPE_FIXED
from bnn_nas.primitives.options import ACTIVATIONS, DOWNSAMPLES, ORDERS, REDUCES, SHORTCUTS
from tests.primitive_checks import check_primitive

ALL = [spec.name for spec in list_primitives()]
FAMILY_DEFAULTS = {entry.name: entry.obj for entry in list_families()}  # the registry's
FAMILY = [spec.name for spec in list_primitives() if spec.family in FAMILY_DEFAULTS]
CHANNELS = [(4, 4), (4, 8), (5, 7), (6, 3)]  # equal, doubled, odd, shrinking
OPTION_VALUES = {
    "act": tuple(ACTIVATION_BINARIZERS),
    "weight": tuple(WEIGHT_BINARIZERS),
    "order": ORDERS,
    "activation": ACTIVATIONS,
    "downsample": DOWNSAMPLES,
    "reduce": REDUCES,
    "shortcut": SHORTCUTS,
}
SINGLE_OPTIONS = [(k, v) for k, values in OPTION_VALUES.items() for v in values]
# grouped convs need channel counts that the groups divide (halves too, when factorized)
GROUPED_CHANNELS = [(4, 4), (4, 8), (8, 4), (12, 12)]
GROUPED_OPTIONS = [
    {"groups": 2},
    {"groups": 2, "shuffle": True},
    {"groups": 4, "shuffle": True, "shortcut": "identity"},
    {"groups": 2, "reduce": "factorized", "order": "conv_bn"},
    {"groups": 4, "act": "rsign", "activation": "rprelu", "downsample": "binary_conv"},
]


def _suffix(name: str) -> str:
    return name.split("_", 1)[1]


def _has_shortcut(name: str, options: dict) -> bool:
    suffix = _suffix(name)
    return suffix in SHAPE_FIXED or options.get("shortcut") == "identity"


def _expected_error(name: str, options: dict, C_in: int, C_out: int, stride: int) -> str | None:
    """The one-line error building ``name`` with ``options`` must give, or None."""
    fixed = SHAPE_FIXED.get(_suffix(name), {})
    if any(k in fixed and fixed[k] != v for k, v in options.items()):
        return "always has shortcut='identity'"
    projecting = stride == 2 or C_in != C_out
    if options.get("downsample") == "none" and _has_shortcut(name, options) and projecting:
        return "downsample='none' allows none"
    return None


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
        error = _expected_error(name, {key: value}, C_in, C_out, stride)
        if error is None:
            check_primitive(spec, C_in, C_out, stride, **{key: value})
        else:
            with pytest.raises(PrimitiveError, match=re.escape(error)):
                spec.build(C_in, C_out, stride, **{key: value})


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("options", GROUPED_OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_every_family_primitive_grouped(name, options):
    """Grouped (and shuffled) convs build, train and see +-1 in every shape, stride 1 and 2."""
    spec = get_primitive(name)
    if name.endswith("_skip_connect") and "shortcut" in options:
        options = {k: v for k, v in options.items() if k != "shortcut"}
    for (C_in, C_out), stride in itertools.product(GROUPED_CHANNELS, (1, 2)):
        groups = options["groups"]
        factorized = options.get("reduce") == "factorized" and stride == 2
        halves = (C_out - C_out // 2, C_out // 2) if factorized else (C_out,)
        if any(c % groups for c in halves):
            with pytest.raises(PrimitiveError, match="must divide both channel counts"):
                spec.build(C_in, C_out, stride, **options)
            continue
        module = check_primitive(spec, C_in, C_out, stride, **options)
        if FAMILY_SHAPES[_suffix(name)][1] == "binary":  # the block's convs are grouped
            assert any(c.groups == groups for c in _binary_convs(module)), name


def test_groups_and_shortcut_errors_are_one_line():
    conv = get_primitive("xnor_conv_3x3")
    with pytest.raises(PrimitiveError, match=r"groups=3 must divide both.*C_out=8") as err:
        conv.build(6, 8, 1, groups=3)
    assert "\n" not in str(err.value)
    with pytest.raises(PrimitiveError, match="groups=0 is invalid"):
        conv.build(4, 4, 1, groups=0)
    with pytest.raises(PrimitiveError, match="shuffle=True needs groups > 1"):
        conv.build(4, 4, 1, shuffle=True)
    with pytest.raises(PrimitiveError, match="shortcut='residual' is invalid"):
        conv.build(4, 4, 1, shortcut="residual")
    with pytest.raises(PrimitiveError, match="downsample='none' allows none") as err:
        conv.build(4, 8, 1, shortcut="identity", downsample="none")
    assert "\n" not in str(err.value)
    with pytest.raises(PrimitiveError, match="always has shortcut='identity'"):
        get_primitive("bireal_conv_5x5_skip_connect").build(4, 4, 1, shortcut="none")


@pytest.mark.parametrize("family", sorted(FAMILY_DEFAULTS))
@pytest.mark.parametrize("shape", ["conv_1x1", "conv_3x3", "conv_5x5", "dil_conv_3x3", "dil_conv_5x5"])  # noqa: E501
def test_skip_connect_names_are_the_conv_with_its_shortcut(family, shape):
    named = get_primitive(f"{family}_{shape}_skip_connect")
    plain = get_primitive(f"{family}_{shape}")
    for stride in (1, 2):
        torch.manual_seed(0)
        a = named.build(8, 16, stride)
        torch.manual_seed(0)
        b = plain.build(8, 16, stride, shortcut="identity")
        assert repr(a) == repr(b) and a.shortcut is not None
        assert plain.build(8, 16, stride).shortcut is None


def test_grouped_conv_equals_a_loop_of_dense_convs():
    torch.manual_seed(0)
    for weight in ("sign", "xnor", "bireal"):
        grouped = BinaryConv2d(12, 8, 3, stride=2, padding=1, groups=4, weight=weight).double()
        x = torch.randn(2, 12, 9, 9, dtype=torch.float64)
        parts = []
        for g in range(4):
            dense = BinaryConv2d(3, 2, 3, stride=2, padding=1, weight=weight).double()
            with torch.no_grad():
                dense.weight.copy_(grouped.weight[2 * g : 2 * g + 2])
            parts.append(dense(x[:, 3 * g : 3 * g + 3]))
        torch.testing.assert_close(grouped(x), torch.cat(parts, 1), rtol=0, atol=1e-12)


def test_channel_shuffle_interleaves_the_groups():
    unit = get_primitive("xnor_conv_1x1").build(6, 6, 1, groups=3, shuffle=True)
    assert [int(v) for v in unit.shuffle(torch.arange(6.0).view(1, 6, 1, 1)).flatten()] == [
        0, 2, 4, 1, 3, 5,
    ]  # fmt: skip


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
