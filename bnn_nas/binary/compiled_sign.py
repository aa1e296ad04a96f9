"""The binarizers as torch.library custom ops: what torch.compile sees of them.

Why: Dynamo traces a Python ``autograd.Function`` into the compiled graph. On an H200
(torch 2.11) the traced binarizers gave binary ResNet-18 the eager step's logits bit for
bit but wrong gradients (cosine 0 to the eager step's on the last blocks' batch-norm
parameters), and an 8-epoch training fell from 75.0% to 57.9% with Dynamo alone
(backend ``eager``), AOTAutograd or Inductor; with the binarizers kept out of Dynamo it
gave the eager step's gradients and accuracy exactly (docs/benchmarks.md,
docs/results/compile-graph-diagnosis/). A custom op is opaque to Dynamo: its forward
is one call and its backward the formula registered here, so the compiled graph
computes what the eager step computes. torch.export (the ONNX exporter) keeps the ATen
Functions: it traces the forward only, and ONNX has no translation for these ops.

Each op runs the fused Triton kernel where ``fused.applies`` (dense CUDA tensors) and
the ATen formula elsewhere, so the ops give the eager binarizers' values bit for bit (a
Dynamo-only step equals the eager step; Inductor's kernels around them round BN
differently, as for any network). Only
torch.compile takes this path (``quantizers`` routes by :func:`tracing`); eager steps keep
the autograd Functions, which cost less Python per call.
"""

import torch
from torch import Tensor

from bnn_nas.binary import fused


def tracing() -> bool:
    """Whether torch.compile is tracing (torch.export, which also compiles, is not).

    ``torch.compiler.is_exporting`` came with torch 2.6; on the older torch that
    pyproject allows (>= 2.4) every compiling trace takes the custom ops, export's too
    (compiled training stays right; ONNX export wants torch >= 2.6)."""
    if not torch.compiler.is_compiling():
        return False
    return not (hasattr(torch.compiler, "is_exporting") and torch.compiler.is_exporting())


def _sign(x: Tensor) -> Tensor:
    if fused.applies(x):
        return fused.sign(x)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(x >= 0, one, -one, out=torch.empty_like(x))


# Every op's output is laid out as torch.empty_like(x) (x: the binarized input), in the
# real kernels as in the fakes the compiler plans with: a stride the fake did not promise
# would be read wrongly by the kernels Inductor generates around the op.


def _clipped_ste_grad(g: Tensor, x: Tensor) -> Tensor:
    if fused.applies(x):
        return fused.clipped_ste_grad(g, x)
    return torch.mul(g, x.abs() <= 1, out=torch.empty_like(x))


def _approx_sign_grad(g: Tensor, x: Tensor) -> Tensor:
    if fused.applies(x):
        return fused.approx_sign_grad(g, x)
    return torch.mul(g, (2 - 2 * x.abs()).clamp_min(0), out=torch.empty_like(x))


def _like_x(x: Tensor) -> Tensor:
    return torch.empty_like(x)


def _like_second(g: Tensor, x: Tensor) -> Tensor:
    return torch.empty_like(x)


def _op(name: str, fn, schema: str, fake):
    """A custom op ``bnn_nas::name`` computing ``fn``, planned by the compiler as ``fake``."""
    op = torch.library.custom_op(f"bnn_nas::{name}", fn, mutates_args=(), schema=schema)
    op.register_fake(fake)
    return op


_sign_clipped_ste = _op("sign_clipped_ste", _sign, "(Tensor x) -> Tensor", _like_x)
_sign_approx = _op("sign_approx", _sign, "(Tensor x) -> Tensor", _like_x)
_sign_ste = _op("sign_ste", _sign, "(Tensor x) -> Tensor", _like_x)
_clipped_ste_grad_op = _op(
    "clipped_ste_grad", _clipped_ste_grad, "(Tensor g, Tensor x) -> Tensor", _like_second
)
_approx_sign_grad_op = _op(
    "approx_sign_grad", _approx_sign_grad, "(Tensor g, Tensor x) -> Tensor", _like_second
)


def _stochastic(x: Tensor, uniform: Tensor) -> Tensor:
    # P(+1) = clip((x + 1) / 2, 0, 1)  <=>  +1 iff u < (x + 1) / 2, u ~ U[0, 1)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(uniform * 2 - 1 < x, one, -one, out=torch.empty_like(x))


def _like_first(x: Tensor, uniform: Tensor) -> Tensor:
    return torch.empty_like(x)


_sign_stochastic = _op(
    "sign_stochastic", _stochastic, "(Tensor x, Tensor uniform) -> Tensor", _like_first
)


def _save_x(ctx, inputs: tuple, output: Tensor) -> None:
    ctx.save_for_backward(inputs[0])


def _clipped_backward(ctx, g: Tensor) -> Tensor:
    (x,) = ctx.saved_tensors
    return _clipped_ste_grad_op(g, x)


def _approx_backward(ctx, g: Tensor) -> Tensor:
    (x,) = ctx.saved_tensors
    return _approx_sign_grad_op(g, x)


def _ste_backward(ctx, g: Tensor) -> Tensor:
    return g


def _stochastic_backward(ctx, g: Tensor) -> tuple[Tensor, None]:
    (x,) = ctx.saved_tensors
    return _clipped_ste_grad_op(g, x), None


_sign_clipped_ste.register_autograd(_clipped_backward, setup_context=_save_x)
_sign_approx.register_autograd(_approx_backward, setup_context=_save_x)
_sign_ste.register_autograd(_ste_backward)
_sign_stochastic.register_autograd(_stochastic_backward, setup_context=_save_x)


def clipped_ste_sign(x: Tensor) -> Tensor:
    """BinaryNet's sign with the clipped straight-through gradient, as one custom op."""
    return _sign_clipped_ste(x)


def approx_sign(x: Tensor) -> Tensor:
    """Bi-Real's ApproxSign, as one custom op."""
    return _sign_approx(x)


def ste_sign(x: Tensor) -> Tensor:
    """sign with the plain straight-through gradient, as one custom op."""
    return _sign_ste(x)


def stochastic_sign(x: Tensor, uniform: Tensor) -> Tensor:
    """BinaryNet's stochastic sign given the uniform noise, clipped STE back, as one op."""
    return _sign_stochastic(x, uniform)
