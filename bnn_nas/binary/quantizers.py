"""Binarizers: the sign functions of binary networks and their surrogate gradients.

Each binarizer is a pure ``torch.autograd.Function`` (a few ATen elementwise ops
forward and backward) wrapped in a tiny, immutable ``nn.Module`` that carries
its name and settings. Forward values are exactly -1 or +1 with sign(0) = +1;
``torch.sign`` maps 0 to 0 and is therefore never used.

Activation binarizers (``g`` is the incoming gradient):

========== ==================================== =======================================
name       backward                             paper
========== ==================================== =======================================
ste        g                                    Bengio et al. 2013
clipped_ste g * 1{|x| <= 1}                     BinaryNet (Courbariaux et al. 2016)
approx_sign g * max(0, 2 - 2|x|)                Bi-Real Net (Liu et al. 2018)
stochastic  as clipped_ste; training forward    BinaryNet
            is +1 with prob clip((x+1)/2, 0, 1)
rsign       sign(x - b), b learnable per         ReActNet (Liu et al. 2020)
            channel; gradient as approx_sign
            at x - b, to x and (negated) to b
========== ==================================== =======================================

Weight binarizers (latent float W of shape [C_out, ...]):

======= ===================================== ==========================================
name    forward                               backward to W
======= ===================================== ==========================================
sign    sign(W)                               g * 1{|W| <= 1}           (BinaryConnect)
xnor    sign(W) * alpha, alpha = mean|W|      autograd through alpha and a clipped
        per output channel                    STE through sign          (XNOR-Net)
bireal  sign(W) * alpha, alpha detached       g * alpha * 1{|W| <= 1}: the gradient
                                              of alpha * clamp(W, -1, 1) (Bi-Real Net)
======= ===================================== ==========================================

``identity`` (both kinds) turns a binarizer off; it exists for the float twin
of a binary network, used to measure what binarization costs in speed.

On dense CUDA tensors clipped STE and ApproxSign run as fused Triton kernels
(bnn_nas/binary/fused.py) with bit-identical results; the ATen Functions below
are the reference and the path everywhere else.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from bnn_nas.binary import compiled_sign, fused
from bnn_nas.errors import PrimitiveError


@functools.lru_cache(maxsize=64)
def _plus_minus_one(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    # 0-dim operands give torch.where the result dtype of x: with Python floats it would
    # write float32 and need a second kernel to cast back (e.g. to bf16 under autocast)
    pair = torch.ones((), dtype=dtype, device=device), -torch.ones((), dtype=dtype, device=device)
    if device.type == "cuda":  # shared by trials on other streams: filled before anyone reads
        torch.cuda.current_stream(device).synchronize()
    return pair


def binary_sign(x: Tensor) -> Tensor:
    """sign with sign(0) = +1 (and sign(-0.0) = +1), written directly in x's dtype."""
    if compiled_sign.tracing():
        return compiled_sign.traced_sign(x)
    plus, minus = _plus_minus_one(x.dtype, x.device)
    return torch.where(x >= 0, plus, minus)


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return binary_sign(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        return g


class _SignClippedSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x.abs() <= 1)
        return binary_sign(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return g * inside


class _SignApprox(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return binary_sign(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * (2 - 2 * x.abs()).clamp_min(0)


class _SignStochastic(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, uniform: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x.abs() <= 1)
        # P(+1) = clip((x + 1) / 2, 0, 1)  <=>  +1 iff u < (x + 1) / 2, u ~ U[0, 1)
        plus, minus = _plus_minus_one(x.dtype, x.device)
        return torch.where(uniform * 2 - 1 < x, plus, minus)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return g * inside, None


# a compiler traces the binarizers as ATen arithmetic, never as an autograd Function
# (bnn_nas/binary/compiled_sign.py says why)


def clipped_ste_sign(x: Tensor) -> Tensor:
    """BinaryNet's sign, gradient passed where |x| <= 1: fused kernels where they apply."""
    if compiled_sign.tracing():
        return compiled_sign.clipped_ste_sign(x)
    return fused.clipped_ste_sign(x) if fused.applies(x) else _SignClippedSTE.apply(x)


def approx_sign(x: Tensor) -> Tensor:
    """Bi-Real's ApproxSign, gradient max(0, 2 - 2|x|): fused kernels where they apply."""
    if compiled_sign.tracing():
        return compiled_sign.approx_sign(x)
    return fused.approx_sign(x) if fused.applies(x) else _SignApprox.apply(x)


def ste_sign(x: Tensor) -> Tensor:
    """sign with the plain straight-through gradient."""
    if compiled_sign.tracing():
        return compiled_sign.ste_sign(x)
    return _SignSTE.apply(x)


class Binarizer(nn.Module):
    """Base of all binarizers: an immutable module with a ``name`` and ``bits``."""

    name: str = ""
    kind: str = ""  # "activation" or "weight"
    bits: int = 1

    def __setattr__(self, key: str, value: object) -> None:
        if getattr(self, "_frozen", False) and not key.startswith("_") and key != "training":
            raise AttributeError(f"{type(self).__name__} settings are immutable")
        super().__setattr__(key, value)

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def extra_repr(self) -> str:
        return self.name


class SteSign(Binarizer):
    """Sign with the plain straight-through estimator (gradient passed unchanged)."""

    name, kind = "ste", "activation"

    def __init__(self) -> None:
        super().__init__()
        self._freeze()

    def forward(self, x: Tensor) -> Tensor:
        return ste_sign(x)


class ClippedSteSign(Binarizer):
    """BinaryNet's sign: gradient passed where |x| <= 1 (hard-tanh STE)."""

    name, kind = "clipped_ste", "activation"

    def __init__(self) -> None:
        super().__init__()
        self._freeze()

    def forward(self, x: Tensor) -> Tensor:
        return clipped_ste_sign(x)


class ApproxSign(Binarizer):
    """Bi-Real Net's ApproxSign: piecewise-quadratic surrogate, gradient 2 - 2|x|."""

    name, kind = "approx_sign", "activation"

    def __init__(self) -> None:
        super().__init__()
        self._freeze()

    def forward(self, x: Tensor) -> Tensor:
        return approx_sign(x)


class StochasticSign(Binarizer):
    """BinaryNet's stochastic binarization; deterministic sign in eval mode.

    With ``seed`` the noise comes from a private generator (one per device), so
    a run is reproducible independent of other random draws; without it the
    global torch RNG is used (seeded by the trainer).
    """

    name, kind = "stochastic", "activation"

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}
        self._freeze()

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return clipped_ste_sign(x)
        uniform = torch.rand(
            x.shape, device=x.device, dtype=torch.float32, generator=self._generator(x.device)
        )
        if compiled_sign.tracing():
            return compiled_sign.stochastic_sign(x, uniform)
        return _SignStochastic.apply(x, uniform)

    def extra_repr(self) -> str:
        return f"{self.name}, seed={self.seed}"


class RSign(Binarizer):
    """ReActNet's RSign: sign(x - b) with a learnable threshold b per input channel.

    Forward: +1 where x >= b, else -1 (sign(0) = +1 as everywhere). Backward as
    ``approx_sign`` at u = x - b: dL/dx = g * max(0, 2 - 2|u|) and dL/db is minus the
    same, summed over every position of channel c. b starts at 0 (the plain sign). The
    exporter folds b into the packed conv's input threshold.
    """

    name, kind = "rsign", "activation"
    per_channel = True

    def __init__(self, channels: int) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise PrimitiveError(f"rsign needs a positive channel count, got {channels!r}")
        self.channels = channels
        self.threshold = nn.Parameter(torch.zeros(channels))
        self._freeze()

    def shaped_threshold(self, x: Tensor) -> Tensor:
        """b broadcast over x: channels on dim 1 ([N, C, ...] maps, [N, C] features)."""
        return self.threshold.view(1, self.channels, *([1] * (x.dim() - 2))).to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        return approx_sign(x - self.shaped_threshold(x))

    def extra_repr(self) -> str:
        return f"{self.name}, channels={self.channels}"


class IdentityActivation(Binarizer):
    """No binarization (full-precision twin)."""

    name, kind, bits = "identity", "activation", 32

    def __init__(self) -> None:
        super().__init__()
        self._freeze()

    def forward(self, x: Tensor) -> Tensor:
        return x


def _channel_mean_abs(w: Tensor) -> Tensor:
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


class SignWeight(Binarizer):
    """BinaryConnect: sign(W), clipped straight-through gradient."""

    name, kind = "sign", "weight"

    def __init__(self) -> None:
        super().__init__()
        self._freeze()

    def forward(self, w: Tensor) -> Tensor:
        return clipped_ste_sign(w)


class XnorWeight(Binarizer):
    """XNOR-Net: sign(W) scaled by the mean |W| of each output channel (alpha trained)."""

    name, kind = "xnor", "weight"

    def __init__(self) -> None:
        super().__init__()
        self._freeze()

    def forward(self, w: Tensor) -> Tensor:
        return clipped_ste_sign(w) * _channel_mean_abs(w)


class BirealWeight(Binarizer):
    """Bi-Real Net: magnitude-aware sign(W) * alpha with alpha treated as a constant."""

    name, kind = "bireal", "weight"

    def __init__(self) -> None:
        super().__init__()
        self._freeze()

    def forward(self, w: Tensor) -> Tensor:
        return clipped_ste_sign(w) * _channel_mean_abs(w).detach()


class IdentityWeight(Binarizer):
    """No binarization (full-precision twin)."""

    name, kind, bits = "identity", "weight", 32

    def __init__(self) -> None:
        super().__init__()
        self._freeze()

    def forward(self, w: Tensor) -> Tensor:
        return w


ACTIVATION_BINARIZERS: dict[str, type[Binarizer]] = {
    cls.name: cls
    for cls in (SteSign, ClippedSteSign, ApproxSign, StochasticSign, RSign, IdentityActivation)
}
WEIGHT_BINARIZERS: dict[str, type[Binarizer]] = {
    cls.name: cls for cls in (SignWeight, XnorWeight, BirealWeight, IdentityWeight)
}


def _resolve(
    spec: str | Binarizer, table: dict[str, type[Binarizer]], kind: str, channels: int | None
) -> Binarizer:
    if isinstance(spec, Binarizer):
        if spec.kind != kind:
            raise PrimitiveError(f"{spec.name!r} is a {spec.kind} binarizer, not a {kind} one")
        return spec
    if isinstance(spec, str) and spec in table:
        cls = table[spec]
        if getattr(cls, "per_channel", False):
            if channels is None:
                raise PrimitiveError(f"the {spec} binarizer needs the layer's channel count")
            return cls(channels)  # type: ignore[call-arg]
        return cls()
    raise PrimitiveError(
        f"unknown {kind} binarizer {spec!r}; choose one of: {', '.join(sorted(table))}"
    )


def activation_binarizer(spec: str | Binarizer, channels: int | None = None) -> Binarizer:
    """Resolve an activation binarizer given by name or object (the only place that does).

    ``channels``: the input channels of the layer, for per-channel binarizers (``rsign``).
    """
    return _resolve(spec, ACTIVATION_BINARIZERS, "activation", channels)


def weight_binarizer(spec: str | Binarizer) -> Binarizer:
    """Resolve a weight binarizer given by name or object (the only place that does)."""
    return _resolve(spec, WEIGHT_BINARIZERS, "weight", None)
