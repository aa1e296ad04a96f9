"""The binarizers as torch.compile (and torch.export) trace them: plain ATen arithmetic.

Why: Dynamo traces a Python ``autograd.Function`` into the compiled graph. On an H200
(torch 2.11) the traced binarizers gave binary ResNet-18 the eager step's logits bit for
bit but wrong gradients (cosine 0 to the eager step's on the last blocks' batch-norm
parameters), and an 8-epoch training fell from 75.0% to 57.9% with Dynamo alone
(backend ``eager``), AOTAutograd or Inductor (docs/benchmarks.md,
docs/results/compile-graph-diagnosis/). Session 8 routed the binarizers to
torch.library custom ops while ``is_compiling() and not is_exporting()``; but torch
2.11's Dynamo answers ``is_exporting()`` True while it traces for torch.compile, so the
routing never took the custom ops there and compiled training was as wrong as before
(bireal ResNet-18, 143 epochs: 82.7% against 89.3%; session 9).

So under any compiler trace a binarizer is written without an ``autograd.Function``,
as the straight-through identity every BNN code base knows::

    out = sign(x) + (s - s.detach()),    s = clamp(x, -1, 1) * slope(x).detach()

Forward: ``s - s.detach()`` is exactly 0 (s is finite), so out is sign(x) in {-1, +1}.
Backward: autograd differentiates ``s`` only: ``g * slope(x)`` where |x| <= 1 (clamp
passes the gradient there) and 0 outside, where every surrogate here is 0 anyway. The
slope is computed in x's dtype as the eager Functions compute it (clipped STE:
1{|x| <= 1}; ApproxSign: max(0, 2 - 2|x|)), and the product is one multiplication, so
the gradient equals the eager one value for value (the sign of a zero gradient may
differ) under Dynamo and AOTAutograd, and under Inductor in float32 and float64. Inductor
computes bf16 and fp16 arithmetic in float32 and rounds once, where eager rounds the
slope to x's dtype first: ApproxSign's (and RSign's) gradient may then differ by one
bf16/fp16 step (about 8% of random values; exact with
``torch._inductor.config.emulate_precision_casts``). Nothing is opaque to the compiler:
Inductor may fuse the sign, its surrogate and the batch norm before it into its own
kernels (not yet profiled). With no gradient wanted (export, evaluation, ``no_grad``)
only the sign is traced.

Eager steps keep the autograd Functions and the fused Triton kernels
(bnn_nas/binary/fused.py), which cost less Python per call. Differences from them,
under tracing only: a NaN input gives NaN (eager: -1), and ``ste``'s x - x.detach() is
NaN for an infinite x. Inductor draws ``stochastic``'s noise from its own generator, so
its draws are not eager's under the same seed (same distribution;
``torch._inductor.config.fallback_random`` draws eager's). A seeded ``stochastic``
(``StochasticSign(seed=...)``) breaks the graph: Dynamo traces no ``torch.Generator``.
"""

import torch
from torch import Tensor


def tracing() -> bool:
    """Whether a compiler (torch.compile or torch.export) is tracing the binarizer."""
    return torch.compiler.is_compiling()


def traced_sign(x: Tensor) -> Tensor:
    """sign with sign(+-0) = +1, in x's dtype (Inductor fuses compare, select and cast)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def _wants_grad(x: Tensor) -> bool:
    return torch.is_grad_enabled() and x.requires_grad


def _straight_through(forward: Tensor, x: Tensor, slope: Tensor) -> Tensor:
    """``forward``'s values with the gradient g * slope (slope 0 wherever |x| > 1)."""
    surrogate = x.clamp(-1, 1) * slope.detach()
    return forward + (surrogate - surrogate.detach())


def _inside(x: Tensor) -> Tensor:
    return (x.abs() <= 1).to(x.dtype)


def clipped_ste_sign(x: Tensor) -> Tensor:
    """BinaryNet's sign, gradient g * 1{|x| <= 1}."""
    if not _wants_grad(x):
        return traced_sign(x)
    return _straight_through(traced_sign(x), x, _inside(x))


def approx_sign(x: Tensor) -> Tensor:
    """Bi-Real's ApproxSign, gradient g * max(0, 2 - 2|x|)."""
    if not _wants_grad(x):
        return traced_sign(x)
    return _straight_through(traced_sign(x), x, (2 - 2 * x.abs()).clamp_min(0))


def ste_sign(x: Tensor) -> Tensor:
    """sign with the plain straight-through gradient g."""
    if not _wants_grad(x):
        return traced_sign(x)
    return traced_sign(x) + (x - x.detach())


def stochastic_sign(x: Tensor, uniform: Tensor) -> Tensor:
    """BinaryNet's stochastic sign given the uniform noise, clipped STE gradient."""
    # P(+1) = clip((x + 1) / 2, 0, 1)  <=>  +1 iff u < (x + 1) / 2, u ~ U[0, 1)
    drawn = torch.where(uniform * 2 - 1 < x, 1.0, -1.0).to(x.dtype)
    if not _wants_grad(x):
        return drawn
    return _straight_through(drawn, x, _inside(x))
