"""Binarizers: forward values and gradients against the formulas of DESIGN.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bnn_nas.binary import (
    ACTIVATION_BINARIZERS,
    WEIGHT_BINARIZERS,
    BinaryConv2d,
    activation_binarizer,
    weight_binarizer,
)
from bnn_nas.errors import PrimitiveError

# per-channel binarizers (rsign) need a channel count: tested on their own below
BINARY_ACTS = [
    n
    for n, cls in ACTIVATION_BINARIZERS.items()
    if n != "identity" and not getattr(cls, "per_channel", False)
]
BINARY_WEIGHTS = [n for n in WEIGHT_BINARIZERS if n != "identity"]

# boundary points of every surrogate plus random values
SPECIAL = torch.tensor([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.0 + 1e-6, -1.0 - 1e-6, 2.0, -3.0])


def _inputs(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([SPECIAL, torch.randn(500, generator=g, dtype=torch.float32) * 1.5]).double()


@pytest.mark.parametrize("name", BINARY_ACTS)
@pytest.mark.parametrize("training", [True, False])
def test_activation_forward_is_plus_minus_one_and_sign_zero_is_plus_one(name, training):
    b = activation_binarizer(name).train(training)
    x = _inputs()
    y = b(x)
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    if not (name == "stochastic" and training):
        expected = np.where(x.numpy() >= 0, 1.0, -1.0)
        np.testing.assert_array_equal(y.numpy(), expected)
        assert b(torch.zeros(3)).tolist() == [1.0, 1.0, 1.0]


def _reference_act_grad(name: str, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    if name == "ste":
        return g
    if name in ("clipped_ste", "stochastic"):
        return g * (np.abs(x) <= 1)
    if name == "approx_sign":
        return g * np.maximum(0.0, 2 - 2 * np.abs(x))
    raise AssertionError(name)


@pytest.mark.parametrize("name", BINARY_ACTS)
def test_activation_backward_matches_formula(name):
    x = _inputs(1).requires_grad_(True)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    activation_binarizer(name).train(True)(x).backward(g)
    expected = _reference_act_grad(name, x.detach().numpy(), g.numpy())
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_stochastic_probability_matches_hard_sigmoid():
    torch.manual_seed(0)
    b = activation_binarizer("stochastic").train(True)
    levels = torch.tensor([-1.5, -1.0, -0.6, -0.2, 0.0, 0.3, 0.7, 0.95, 1.0, 1.4])
    n = 40_000
    x = levels.repeat(n, 1)
    frac_plus = (b(x) > 0).double().mean(dim=0)
    p = ((levels.double() + 1) / 2).clamp(0, 1)
    # 5 standard errors of a binomial proportion, plus exactness where p is 0 or 1
    tol = 5 * torch.sqrt(p * (1 - p) / n)
    assert torch.all((frac_plus - p).abs() <= tol), (frac_plus, p)


def test_stochastic_is_seeded_and_deterministic_in_eval():
    x = torch.randn(1000, generator=torch.Generator().manual_seed(3))
    a = activation_binarizer(ACTIVATION_BINARIZERS["stochastic"](seed=7)).train(True)
    b = ACTIVATION_BINARIZERS["stochastic"](seed=7).train(True)
    torch.testing.assert_close(a(x), b(x))
    c = ACTIVATION_BINARIZERS["stochastic"](seed=8).train(True)
    assert not torch.equal(a(x), c(x))
    a.eval()
    torch.testing.assert_close(a(x), a(x))
    torch.testing.assert_close(a(x), torch.where(x >= 0, 1.0, -1.0))


def _weights(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 3, 3, 3, generator=g, dtype=torch.float64) * 0.9
    w[0, 0, 0, 0], w[1, 1, 1, 1], w[2, 2, 2, 2], w[3, 0, 1, 2] = 0.0, 1.0, -1.0, 1.5
    return w


def _reference_weight(name: str, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent numpy forward and gradient of each weight binarizer."""
    s = np.where(w >= 0, 1.0, -1.0)
    inside = (np.abs(w) <= 1).astype(float)
    n = w[0].size
    alpha = np.abs(w).reshape(w.shape[0], -1).mean(axis=1).reshape(-1, 1, 1, 1)
    if name == "sign":
        return s, g * inside
    if name == "bireal":
        return s * alpha, g * alpha * inside
    if name == "xnor":
        # d/dW [S(W) * alpha(W)] = g * alpha * STE'(W) + sign(W) / n * sum_channel(g * S)
        through_alpha = (
            np.sign(w) / n * (g * s).reshape(w.shape[0], -1).sum(axis=1).reshape(-1, 1, 1, 1)
        )
        return s * alpha, g * alpha * inside + through_alpha
    raise AssertionError(name)


@pytest.mark.parametrize("name", BINARY_WEIGHTS)
def test_weight_binarizer_forward_and_backward(name):
    w = _weights(4).requires_grad_(True)
    g = torch.randn(w.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = weight_binarizer(name)(w)
    out.backward(g)
    ref_out, ref_grad = _reference_weight(name, w.detach().numpy(), g.numpy())
    np.testing.assert_allclose(out.detach().numpy(), ref_out, rtol=1e-12, atol=0)
    np.testing.assert_allclose(w.grad.numpy(), ref_grad, rtol=1e-10, atol=1e-12)
    signs = out.detach() / out.detach().abs().amax(dim=(1, 2, 3), keepdim=True)
    assert set(signs.unique().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize("act", BINARY_ACTS)
def test_binarizers_run_under_bf16_autocast(act):
    conv = BinaryConv2d(4, 8, 3, padding=1, act=act, weight="xnor")
    x = torch.randn(2, 4, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        assert set(conv.act(x.bfloat16()).unique().tolist()) <= {-1.0, 1.0}
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


def test_unknown_binarizer_names_are_errors():
    with pytest.raises(PrimitiveError, match=r"unknown activation binarizer 'sgn'.*clipped_ste"):
        activation_binarizer("sgn")
    with pytest.raises(PrimitiveError, match="unknown weight binarizer"):
        BinaryConv2d(2, 2, 3, weight="xnr")
    with pytest.raises(PrimitiveError, match="is a weight binarizer"):
        activation_binarizer(weight_binarizer("xnor"))


def test_binary_layer_settings_are_immutable():
    conv = BinaryConv2d(2, 2, 3)
    with pytest.raises(AttributeError):
        conv.act = activation_binarizer("ste")
    with pytest.raises(AttributeError):
        conv.act.name = "ste"
    conv.eval()  # train/eval must still work
    assert not conv.act.training
    assert conv.is_binary and not BinaryConv2d(2, 2, 3, act="identity").is_binary


def test_rsign_forward_and_gradients_match_the_formulas():
    """sign(x - b) forward; backward approx_sign's slope at u = x - b, to x and (minus,
    summed per channel) to b (ReActNet, Liu et al. 2020)."""
    gen = torch.Generator().manual_seed(4)
    rsign = activation_binarizer("rsign", channels=3).double()
    with torch.no_grad():
        rsign.threshold.copy_(torch.tensor([0.0, 0.5, -0.25], dtype=torch.float64))
    x = torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64)
    x[0, 1, 0, 0] = 0.5  # x == b: sign(0) = +1
    x.requires_grad_(True)
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    y = rsign(x)
    b = rsign.threshold.detach().view(1, 3, 1, 1)
    u = (x.detach() - b).numpy()
    np.testing.assert_array_equal(y.detach().numpy(), np.where(u >= 0, 1.0, -1.0))
    assert y[0, 1, 0, 0].item() == 1.0
    y.backward(g)
    slope = np.maximum(0.0, 2 - 2 * np.abs(u))
    np.testing.assert_allclose(x.grad.numpy(), g.numpy() * slope, rtol=0, atol=0)
    np.testing.assert_allclose(
        rsign.threshold.grad.numpy(), -(g.numpy() * slope).sum(axis=(0, 2, 3)), rtol=1e-12
    )


def test_rsign_needs_channels_and_works_on_features():
    with pytest.raises(PrimitiveError, match="needs the layer's channel count"):
        activation_binarizer("rsign")
    conv = BinaryConv2d(6, 4, 3, act="rsign")
    assert conv.act.threshold.shape == (6,) and conv.is_binary
    rsign = activation_binarizer("rsign", channels=2)
    with torch.no_grad():
        rsign.threshold.copy_(torch.tensor([1.0, -1.0]))
    assert rsign(torch.tensor([[0.5, -0.5]])).tolist() == [[-1.0, 1.0]]
    with pytest.raises(AttributeError):
        rsign.channels = 3


def test_rprelu_forward_and_gradients_match_the_formulas():
    """y = x - gamma + zeta where x >= gamma, else beta * (x - gamma) + zeta (ReActNet)."""
    from bnn_nas.binary import RPReLU

    gen = torch.Generator().manual_seed(5)
    act = RPReLU(3).double()
    with torch.no_grad():
        act.shift_in.copy_(torch.tensor([0.0, 0.3, -0.2], dtype=torch.float64))
        act.shift_out.copy_(torch.tensor([0.1, -0.4, 0.0], dtype=torch.float64))
        act.prelu.weight.copy_(torch.tensor([0.25, 0.1, 0.5], dtype=torch.float64))
    x = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    y = act(x)
    gamma = act.shift_in.detach().view(1, 3, 1, 1).numpy()
    zeta = act.shift_out.detach().view(1, 3, 1, 1).numpy()
    beta = act.prelu.weight.detach().view(1, 3, 1, 1).numpy()
    u = x.detach().numpy() - gamma
    np.testing.assert_allclose(y.detach().numpy(), np.where(u >= 0, u, beta * u) + zeta, atol=1e-15)
    y.backward(g)
    gn = g.numpy()
    dx = gn * np.where(u > 0, 1.0, beta)
    np.testing.assert_allclose(x.grad.numpy(), dx, atol=1e-12)
    np.testing.assert_allclose(act.shift_in.grad.numpy(), -dx.sum(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(act.shift_out.grad.numpy(), gn.sum(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(
        act.prelu.weight.grad.numpy(), (gn * np.minimum(u, 0)).sum(axis=(0, 2, 3)), atol=1e-12
    )
