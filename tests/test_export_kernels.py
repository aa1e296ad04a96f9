"""Packed XNOR-popcount convs: bit-exact against PyTorch's binary conv, on every backend."""

from __future__ import annotations

import copy
import itertools
import random
import shutil

import pytest
import torch
from torch import nn

from bnn_nas.binary import BinaryConv2d, binary_sign
from bnn_nas.export.bits import (
    group_words,
    grouped_kernel_weights,
    kernel_weights,
    pack_dense,
    pack_last,
    unpack_dense,
    unpack_last,
)
from bnn_nas.export.convert import pack_model
from bnn_nas.export.fold import fold_conv, input_threshold, not_packable
from bnn_nas.export.kernels import NativeBackend, TorchBackend, select_backend
from bnn_nas.export.modules import PackedConv2d, PackedFactorizedReduce, set_backend
from bnn_nas.export.native import build_library
from bnn_nas.export.reference import exact_reference
from bnn_nas.primitives import build_primitive, list_primitives
from bnn_nas.primitives.blocks import FactorizedReduce

HAS_COMPILER = any(shutil.which(c) for c in ("cc", "gcc", "clang"))


@pytest.fixture(scope="module")
def native() -> NativeBackend:
    if not HAS_COMPILER:
        pytest.skip("no C compiler on this machine: the torch fallback is tested alone")
    backend = select_backend(native=True)
    assert isinstance(backend, NativeBackend), backend.describe()
    return backend


@pytest.fixture(scope="module")
def portable_c(tmp_path_factory: pytest.TempPathFactory) -> NativeBackend:
    """The C kernels built without -march=native: the scalar path other CPUs take."""
    if not HAS_COMPILER:
        pytest.skip("no C compiler on this machine")
    library = build_library(tmp_path_factory.mktemp("cache"), flag_sets=(("-O2",),))
    assert library.features & 2 == 0  # really the portable path
    return NativeBackend(library)


def backends(native: NativeBackend, portable_c: NativeBackend) -> list:
    return [native, portable_c, TorchBackend()]


def random_shapes(count: int, seed: int) -> list[tuple[int, ...]]:
    """(C_in, C_out, kernel, stride, dilation, padding, H, W) covering odd channel counts."""
    rng = random.Random(seed)
    shapes = []
    for _ in range(count):
        k, d = rng.choice([1, 3, 5]), rng.choice([1, 2])
        pad = rng.choice([0, 1, d * (k - 1) // 2, d * (k - 1) // 2 + 1])
        least = max(1, d * (k - 1) + 1 - 2 * pad)
        shapes.append(
            (rng.choice([1, 3, 13, 64, 65, 67, 130]), rng.choice([1, 3, 8, 13, 33, 65, 67]),
             k, rng.choice([1, 2]), d, pad, rng.randint(least, 11), rng.randint(least, 11))
        )  # fmt: skip
    return shapes


SHAPES = [
    *random_shapes(40, seed=0),
    (3, 13, 3, 2, 1, 1, 9, 7),
    (13, 65, 5, 1, 2, 4, 10, 10),
    (65, 67, 1, 2, 1, 0, 7, 8),
    (67, 130, 3, 1, 2, 2, 6, 6),
    (130, 33, 5, 2, 1, 2, 11, 9),
]


def sign_conv(c_in: int, c_out: int, k: int, s: int, d: int, p: int) -> BinaryConv2d:
    """PyTorch's binary conv with integer outputs: sign weights, float64."""
    return BinaryConv2d(
        c_in, c_out, k, stride=s, padding=p, dilation=d, act="ste", weight="sign"
    ).double()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_packed_conv_matches_pytorch_binary_conv(shape, native, portable_c):
    c_in, c_out, k, s, d, p, h, w = shape
    torch.manual_seed(hash(shape) % 2**31)
    conv = sign_conv(c_in, c_out, k, s, d, p).eval()
    x = torch.randn(2, c_in, h, w).float().double()  # float32-exact values
    expected = conv(x)
    packed = PackedConv2d.from_folded(fold_conv(conv))
    for backend in backends(native, portable_c):
        packed.backend = backend
        got = packed.dot(x)
        assert got.dtype == torch.int32 and got.shape == expected.shape
        assert torch.equal(got.double(), expected), backend.describe()
        assert torch.equal(packed(x).double(), expected)  # scale 1, bias 0: the same integers


def random_grouped_shapes(count: int, seed: int) -> list[tuple[int, ...]]:
    """(groups, C_in, C_out, kernel, stride, dilation, padding, H, W): groups from 2 to
    depthwise, per-group channel counts below, at and above a 64-bit word."""
    rng = random.Random(seed)
    shapes = []
    for _ in range(count):
        g = rng.choice([2, 3, 4, 12])
        k, d = rng.choice([1, 3, 5]), rng.choice([1, 2])
        pad = rng.choice([0, 1, d * (k - 1) // 2, d * (k - 1) // 2 + 1])
        least = max(1, d * (k - 1) + 1 - 2 * pad)
        shapes.append(
            (g, g * rng.choice([1, 2, 3, 13, 64, 65]), g * rng.choice([1, 2, 3, 9, 33]),
             k, rng.choice([1, 2]), d, pad, rng.randint(least, 11), rng.randint(least, 11))
        )  # fmt: skip
    return shapes


GROUPED_SHAPES = [
    *random_grouped_shapes(30, seed=3),
    (12, 24, 24, 3, 1, 1, 1, 9, 7),  # BATS: 12 groups of 2 channels
    (12, 24, 24, 5, 2, 2, 4, 11, 9),  # its dilated 5x5 at stride 2
    (13, 13, 13, 3, 1, 1, 1, 7, 9),  # depthwise, odd channels
    (67, 67, 134, 3, 2, 2, 2, 9, 9),  # depthwise with a multiplier of 2
    (2, 130, 66, 3, 1, 1, 1, 5, 6),  # two groups of 65: a word and a bit each
    (5, 320, 10, 1, 1, 1, 0, 3, 3),  # groups of exactly one word
]


def grouped_sign_conv(g: int, c_in: int, c_out: int, k: int, s: int, d: int, p: int):
    return BinaryConv2d(
        c_in, c_out, k, stride=s, padding=p, dilation=d, groups=g, act="ste", weight="sign"
    ).double()


@pytest.mark.parametrize("shape", GROUPED_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_grouped_packed_conv_matches_pytorch_binary_conv(shape, native, portable_c):
    """Per group the XNOR-popcount over that group's input channels: the integers of
    torch's conv2d(groups=G) on the +-1 operands, zero padding ternary, on every backend,
    as G narrow convs and as one masked dense conv."""
    g, c_in, c_out, k, s, d, p, h, w = shape
    torch.manual_seed(hash(shape) % 2**31)
    conv = grouped_sign_conv(g, c_in, c_out, k, s, d, p).eval()
    x = torch.randn(2, c_in, h, w).float().double()
    expected = torch.nn.functional.conv2d(
        binary_sign(x), binary_sign(conv.weight), stride=s, padding=p, dilation=d, groups=g
    )
    assert torch.equal(conv(x), expected)  # the float binary conv: the same integers
    packed = PackedConv2d.from_folded(fold_conv(conv))
    assert packed.geometry.groups == g
    assert packed.weight_bits.numel() == -(-conv.weight.numel() // 64)  # 1 bit per weight
    for masked, backend in itertools.product((False, True), backends(native, portable_c)):
        packed.prepare(masked)
        packed.backend = backend
        got = packed.dot(x)
        assert got.dtype == torch.int32 and got.shape == expected.shape
        assert torch.equal(got.double(), expected), (masked, backend.describe())
        assert torch.equal(packed(x).double(), expected)


@pytest.mark.parametrize("shape", GROUPED_SHAPES[-8:], ids=lambda s: "x".join(map(str, s)))
def test_grouped_bn_folded_before_and_after_the_conv(shape, native, portable_c):
    """Thresholds per input channel, alpha and the BN affine per output channel, across
    groups; the kernel's residual lands on the right channels."""
    g, c_in, c_out, k, s, d, p, h, w = shape
    torch.manual_seed(hash(shape) % 2**31)
    conv = grouped_sign_conv(g, c_in, c_out, k, s, d, p).eval()
    pre, post = random_bn(c_in, 0), random_bn(c_out, 1)
    x = torch.randn(2, c_in, h, w).float().double()
    xnor = BinaryConv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, groups=g)
    xnor = xnor.double().eval()
    before = PackedConv2d.from_folded(fold_conv(conv, pre_bn=pre))
    after = PackedConv2d.from_folded(fold_conv(xnor, post_bn=post))
    residual = torch.randn_like(conv(x)).float()
    for masked, backend in itertools.product((False, True), backends(native, portable_c)):
        before.prepare(masked)
        after.prepare(masked)
        before.backend = after.backend = backend
        assert torch.equal(before.dot(x).double(), conv(pre(x)))
        expected = post(xnor(x))
        torch.testing.assert_close(after(x).double(), expected, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(
            after(x, residual).double(), expected + residual, rtol=1e-5, atol=1e-4
        )


def test_grouped_conv_on_two_threads(native):
    conv = grouped_sign_conv(12, 48, 48, 3, 1, 1, 1).eval()
    x = torch.randn(3, 48, 12, 12)
    packed = PackedConv2d.from_folded(fold_conv(conv))
    for masked in (False, True):
        packed.prepare(masked)
        packed.backend = native
        one = packed.dot(x)
        packed.backend = NativeBackend(native.library, threads=2)
        assert torch.equal(packed.dot(x), one)


def test_small_groups_run_as_one_masked_conv():
    """BATS's 12 groups of 4 channels: one word per pixel and 48 output lanes beat 12
    narrow convs of 8 lanes each; wide groups stay separate."""
    from bnn_nas.export.kernels import masked_is_cheaper

    small = fold_conv(grouped_sign_conv(12, 48, 48, 3, 1, 1, 1)).geometry
    wide = fold_conv(grouped_sign_conv(4, 256, 256, 3, 1, 1, 1)).geometry
    assert masked_is_cheaper(small) and not masked_is_cheaper(wide)
    assert not masked_is_cheaper(fold_conv(sign_conv(48, 48, 3, 1, 1, 1)).geometry)
    params = PackedConv2d(small).prepare()
    assert params.mask is not None and params.weights.shape == (1, 9, 1, 48)
    assert PackedConv2d(wide).prepare().mask is None


def random_bn(channels: int, seed: int) -> nn.BatchNorm2d:
    """Trained-looking BN statistics, with negative and zero scales among them."""
    gen = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels).double().eval()
    bn.weight.data = torch.randn(channels, generator=gen, dtype=torch.float64)
    bn.weight.data[::5] = 0.0
    bn.bias.data = torch.randn(channels, generator=gen, dtype=torch.float64)
    bn.running_mean.copy_(torch.randn(channels, generator=gen, dtype=torch.float64))
    bn.running_var.copy_(torch.rand(channels, generator=gen, dtype=torch.float64) + 0.1)
    return bn


@pytest.mark.parametrize("shape", SHAPES[:12], ids=lambda s: "x".join(map(str, s)))
def test_bn_folded_before_and_after_the_conv(shape, native, portable_c):
    """bn_conv: conv(sign(bn(x))) as integers; conv_bn: bn(alpha * dot) as the affine."""
    c_in, c_out, k, s, d, p, h, w = shape
    torch.manual_seed(hash(shape) % 2**31)
    conv = sign_conv(c_in, c_out, k, s, d, p).eval()
    pre, post = random_bn(c_in, 0), random_bn(c_out, 1)
    x = torch.randn(2, c_in, h, w).float().double()
    xnor = BinaryConv2d(c_in, c_out, k, stride=s, padding=p, dilation=d).double().eval()
    before = PackedConv2d.from_folded(fold_conv(conv, pre_bn=pre))
    after = PackedConv2d.from_folded(fold_conv(xnor, post_bn=post))
    for backend in backends(native, portable_c):
        before.backend = after.backend = backend
        assert torch.equal(before.dot(x).double(), conv(pre(x)))
        torch.testing.assert_close(after(x).double(), post(xnor(x)), rtol=1e-5, atol=1e-4)


def test_residual_is_added_by_the_kernel(native, portable_c):
    conv = BinaryConv2d(13, 67, 3, stride=2, padding=1).eval()
    packed = PackedConv2d.from_folded(fold_conv(conv, post_bn=random_bn(67, 3).float()))
    x = torch.randn(2, 13, 9, 9)
    for backend in backends(native, portable_c):
        packed.backend = backend
        plain = packed(x)
        for residual in (torch.randn_like(plain), torch.randn(2, 67, 5, 5).double()):
            torch.testing.assert_close(packed(x, residual), plain + residual)
        torch.testing.assert_close(packed(x, torch.ones(1)), plain + 1)  # broadcast: torch's add


def test_two_threads_give_the_same_integers(native):
    conv = sign_conv(67, 65, 3, 1, 1, 1).eval()
    x = torch.randn(3, 67, 12, 12)
    packed = PackedConv2d.from_folded(fold_conv(conv))
    packed.backend = native
    one = packed.dot(x)
    packed.backend = NativeBackend(native.library, threads=2)
    assert torch.equal(packed.dot(x), one)


@pytest.mark.parametrize(
    "seed, convs, channels",
    [
        (1, lambda: (sign_conv(13, 5, 3, 2, 1, 1), sign_conv(13, 4, 3, 2, 1, 1)), 13),
        (4, lambda: (grouped_sign_conv(3, 12, 6, 3, 2, 1, 1),
                     grouped_sign_conv(3, 12, 9, 3, 2, 1, 1)), 12),
    ],
    ids=["dense", "grouped"],
)  # fmt: skip
def test_factorized_reduce_reads_the_shifted_grid(seed, convs, channels, native, portable_c):
    """conv_b sees the input moved up-left by one pixel, with sign(0) = +1 filled in;
    dense and grouped (3 groups) halves alike."""
    torch.manual_seed(seed)
    fr = FactorizedReduce(*convs()).eval()
    packed = PackedFactorizedReduce(
        PackedConv2d.from_folded(fold_conv(fr.conv_a)),
        PackedConv2d.from_folded(fold_conv(fr.conv_b), shift_input=True),
    )
    x = torch.randn(2, channels, 9, 8).double()
    for backend in backends(native, portable_c):
        packed.conv_a.backend = packed.conv_b.backend = backend
        assert torch.equal(packed(x).double(), fr(x))


def bn_for_threshold(gamma: float, beta: float, mean: float) -> nn.BatchNorm2d:
    """A BN with sqrt(var + eps) = 2 exactly: bn(x) = gamma * (x - mean) / 2 + beta."""
    bn = nn.BatchNorm2d(1, eps=0.0).eval()
    bn.weight.data.fill_(gamma)
    bn.bias.data.fill_(beta)
    bn.running_mean.fill_(mean)
    bn.running_var.fill_(4.0)
    return bn


@pytest.mark.parametrize(
    "gamma, beta",
    [(2.0, -1.0), (-2.0, 1.0), (0.0, 0.0), (0.0, -0.3), (0.0, 0.3), (1e-30, 1.0), (-3.0, -1.5)],
)
def test_bn_then_sign_folds_to_an_exact_threshold(gamma, beta):
    """Negative scale flips the comparison; bn(x) = 0 maps to +1; zero scale is constant."""
    bn = bn_for_threshold(gamma, beta, mean=0.5)
    mul, thr = input_threshold(bn, 1)
    tie = 0.5 - 2 * beta / gamma if gamma else 0.0  # where bn(x) = 0
    points = torch.tensor([tie, -7.0, -1.0, 0.0, 0.5, 1.5, 3.0, 1e6, -1e6], dtype=torch.float32)
    points = torch.cat([points, torch.nextafter(points, torch.tensor(1e38)),
                        torch.nextafter(points, torch.tensor(-1e38))])  # fmt: skip
    exact = binary_sign(bn.double()(points.double().view(1, 1, -1, 1))).flatten() > 0
    folded = mul * points >= thr
    assert torch.equal(folded, exact)


def test_folded_thresholds_agree_with_float64_bn_on_random_inputs():
    torch.manual_seed(2)
    bn = nn.BatchNorm2d(37).eval()
    bn.weight.data.normal_()
    bn.weight.data[:4] = 0
    bn.bias.data.normal_()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.1, 3)
    mul, thr = input_threshold(bn, 37)
    x = torch.randn(64, 37, 6, 6) * 3
    exact = bn.double()(x.double()) >= 0
    folded = mul.view(1, -1, 1, 1) * x >= thr.view(1, -1, 1, 1)
    assert torch.equal(folded, exact)


def test_bit_layouts_round_trip():
    signs = torch.rand(5, 67, 3, 3) > 0.5
    assert torch.equal(unpack_dense(pack_dense(signs), tuple(signs.shape)), signs)
    flags = torch.rand(4, 130) > 0.5
    assert torch.equal(unpack_last(pack_last(flags), 130), flags)
    kernel = kernel_weights(signs)  # [T, K, Opad]
    assert kernel.shape == (9, 2, 8) and not kernel[:, :, 5:].any()
    assert torch.equal(unpack_last(kernel[4, :, 2], 67), signs[2, :, 1, 1])
    assert pack_dense(signs).numel() == -(-5 * 67 * 9 // 64)  # 1 bit per weight
    grouped = torch.rand(6, 65, 3, 3) > 0.5  # 3 groups of 65 input, 2 output channels
    kernel = grouped_kernel_weights(grouped, 3)  # [G, T, K, Opad]
    assert kernel.shape == (3, 9, 2, 8) and not kernel[..., 2:].any()
    assert torch.equal(unpack_last(kernel[2, 4, :, 1], 65), grouped[5, :, 1, 1])
    words = group_words(flags, 2)  # two groups of 65: two words each
    assert words.shape == (4, 4)
    assert torch.equal(unpack_last(words[:, 2:], 65), flags[:, 65:])


def test_what_cannot_be_packed_says_why():
    assert not_packable(BinaryConv2d(4, 4, 3, groups=2)) is None  # grouped convs pack
    assert not_packable(BinaryConv2d(4, 4, 3, groups=4)) is None  # depthwise too
    assert "binary" in not_packable(BinaryConv2d(4, 4, 3, act="identity"))
    assert not_packable(BinaryConv2d(4, 4, 3, weight="bireal")) is None
    assert not_packable(nn.Conv2d(4, 4, 3)) == "not a BinaryConv2d"


def test_no_compiler_falls_back_to_torch_and_says_so(capsys):
    backend = select_backend(native=True, compiler="/nonexistent/bnn-cc")
    assert isinstance(backend, TorchBackend)
    first = capsys.readouterr().err
    assert "portable torch fallback" in first and "/nonexistent/bnn-cc" in first
    select_backend(native=True, compiler="/nonexistent/bnn-cc")
    assert capsys.readouterr().err == ""  # announced once per process
    assert isinstance(select_backend(native=False), TorchBackend)


BINARY_PRIMITIVES = [spec.name for spec in list_primitives() if spec.precision == "binary"]


@pytest.mark.parametrize("name", BINARY_PRIMITIVES)
def test_every_binary_primitive_packs_exactly(name, native):
    """Driven by the registry: each binary primitive, packed, computes what its exact
    (integer-arithmetic) PyTorch twin computes, at stride 1 and 2."""
    for stride, c_out in ((1, 6), (2, 12), (2, 10)):
        torch.manual_seed(stride + c_out)
        module = build_primitive(name, 6, c_out, stride).eval()
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                if m.weight is not None:
                    m.weight.data.normal_()
        reference = exact_reference(module)
        packed = copy.deepcopy(module)
        conversion = pack_model(packed)
        set_backend(packed, native)
        assert conversion.layers and not conversion.skipped
        x = torch.randn(3, 6, 9, 9)
        with torch.no_grad():
            torch.testing.assert_close(
                packed(x).double(), reference(x.double()), rtol=1e-5, atol=1e-4
            )


GROUPED_OPTIONS = [
    ("xnor_conv_3x3",
     {"groups": 3, "shuffle": True, "shortcut": "identity", "activation": "prelu"}),
    ("xnor_dil_conv_5x5", {"groups": 6, "shuffle": True}),
    ("bireal_conv_3x3", {"groups": 3, "shuffle": True}),  # conv -> shuffle -> BN: folded through
    ("bireal_conv_3x3_skip_connect", {"groups": 2, "reduce": "factorized"}),
    ("bireal_conv_5x5", {"groups": 2, "shuffle": True, "reduce": "factorized"}),
    ("xnor_conv_3x3", {"groups": 6}),  # depthwise at stride 1 (C_in = 6)
    ("xnor_resnet_block", {"groups": 3, "shuffle": True}),
]  # fmt: skip


@pytest.mark.parametrize("name, options", GROUPED_OPTIONS, ids=lambda v: str(v))
def test_grouped_primitives_pack_exactly(name, options, native):
    """Grouped binary primitives, with channel shuffle in both orders (a BN after the
    shuffle folds channel by channel through it), pack every conv and compute what their
    exact PyTorch twin computes."""
    for stride, c_out in ((1, 6), (2, 12)):
        torch.manual_seed(stride + c_out)
        module = build_primitive(name, 6, c_out, stride, **options).eval()
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.normal_()
                m.bias.data.normal_()
        reference = exact_reference(module)
        packed = copy.deepcopy(module)
        conversion = pack_model(packed)
        set_backend(packed, native)
        binary = [m for m in module.modules() if isinstance(m, BinaryConv2d)]
        assert len(conversion.layers) == len(binary) and not conversion.skipped
        assert {layer.geometry.groups for layer in conversion.layers} >= {options["groups"]}
        x = torch.randn(3, 6, 9, 9)
        with torch.no_grad():
            torch.testing.assert_close(
                packed(x).double(), reference(x.double()), rtol=1e-5, atol=1e-4
            )
