"""torch.compile traces the binarizers as ATen arithmetic (bnn_nas/binary/compiled_sign.py):
the compiled forward and backward equal the eager ones, with no graph break."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from torch import nn

from bnn_nas.binary.quantizers import ACTIVATION_BINARIZERS, WEIGHT_BINARIZERS
from bnn_nas.space.network import build_baseline

# the values where binarizers branch: 0, -0.0, +-1, just inside and outside
EDGES = [-2.0, -1.0, -0.999, -0.5, -0.0, 0.0, 0.5, 0.999, 1.0, 1.5]


def _values_and_gradient(binarizer: nn.Module, x: torch.Tensor, backend: str | None):
    leaf = x.clone().requires_grad_(True)
    fn = torch.compile(binarizer, backend=backend, fullgraph=True) if backend else binarizer
    torch.manual_seed(0)  # stochastic's noise
    out = fn(leaf)
    (grad,) = torch.autograd.grad(out, leaf, torch.arange(1.0, 1.0 + out.numel()).view_as(out))
    return out.detach(), grad


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("name", sorted(set(ACTIVATION_BINARIZERS) - {"identity"}))
def test_compiled_activation_binarizers_equal_the_eager_ones(name, backend):
    torch._dynamo.reset()
    kind = ACTIVATION_BINARIZERS[name]
    binarizer = kind(10) if name == "rsign" else kind()
    x = torch.tensor(EDGES).view(1, 10, 1, 1)
    eager = _values_and_gradient(binarizer, x, None)
    compiled = _values_and_gradient(binarizer, x, backend)
    assert torch.equal(eager[0], compiled[0]) and torch.equal(eager[1], compiled[1])
    assert set(eager[0].flatten().tolist()) <= {-1.0, 1.0}


@pytest.mark.parametrize("name", sorted(set(WEIGHT_BINARIZERS) - {"identity"}))
def test_compiled_weight_binarizers_equal_the_eager_ones(name):
    torch._dynamo.reset()
    binarizer = WEIGHT_BINARIZERS[name]()
    w = torch.tensor(EDGES).view(2, 5, 1, 1)
    eager = _values_and_gradient(binarizer, w, None)
    compiled = _values_and_gradient(binarizer, w, "aot_eager")
    assert torch.equal(eager[0], compiled[0]) and torch.equal(eager[1], compiled[1])


@pytest.mark.parametrize("family", ["xnor", "bireal"])
def test_a_compiled_binary_network_has_one_graph_and_the_eager_gradients(family):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_baseline("resnet20", family, 10)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    explained = torch._dynamo.explain(copy.deepcopy(model))(x)
    assert explained.graph_count == 1 and explained.graph_break_count == 0
    grads = []
    for backend in (None, "aot_eager"):
        m = copy.deepcopy(model).train()
        forward = torch.compile(m, backend=backend) if backend else m
        nn.functional.cross_entropy(forward(x), y).backward()
        grads.append([p.grad for p in m.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


BINARIZERS = {**ACTIVATION_BINARIZERS, **WEIGHT_BINARIZERS}  # "identity" in both: left out


@pytest.mark.parametrize("name", sorted(set(BINARIZERS) - {"identity"}))
def test_compiler_traces_hold_no_autograd_function(name):
    """The routing itself (on CPU a traced autograd Function happened to be right, so the
    equalities above would hold without it; on CUDA it gave wrong gradients, and torch
    2.11 answers is_exporting() True under torch.compile, which defeated session 8's
    routing): torch.compile's graph and torch.export's hold ATen ops only, no
    autograd Function and no custom op."""
    binarizer = BINARIZERS[name](10) if name == "rsign" else BINARIZERS[name]()
    x = torch.randn(2, 10, 3, 3, requires_grad=True)
    seen: list[str] = []

    def backend(gm, inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    torch.compile(binarizer, backend=backend, fullgraph=True)(x)
    assert seen and not [t for t in seen if "autograd_function" in t or "bnn_nas" in t], seen
    exported = torch.export.export(binarizer, (x.detach(),))
    targets = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert targets and all(t.startswith("aten.") for t in targets), targets


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", ["clipped_ste", "approx_sign", "ste"])
def test_traced_binarizers_equal_the_eager_functions_on_random_values(name, dtype):
    """Forward exactly +-1 and the gradient value for value, in each dtype autocast uses
    (the surrogate's slope is rounded to x's dtype as the eager Functions round it)."""
    from bnn_nas.binary import compiled_sign, quantizers

    traced = {"clipped_ste": compiled_sign.clipped_ste_sign,
              "approx_sign": compiled_sign.approx_sign, "ste": compiled_sign.ste_sign}[name]
    eager = {"clipped_ste": quantizers._SignClippedSTE.apply,
             "approx_sign": quantizers._SignApprox.apply, "ste": quantizers._SignSTE.apply}[name]
    generator = torch.Generator().manual_seed(1)
    x = (torch.randn(4096, generator=generator) * 1.5).to(dtype)
    x[:len(EDGES)] = torch.tensor(EDGES, dtype=dtype)
    g = torch.randn(4096, generator=generator).to(dtype)
    results = []
    for fn in (traced, eager):
        leaf = x.clone().requires_grad_(True)
        out = fn(leaf)
        (grad,) = torch.autograd.grad(out, leaf, g)
        results.append((out.detach(), grad))
    assert results[0][0].dtype == results[1][0].dtype == dtype
    assert torch.equal(results[0][0], results[1][0])
    assert torch.equal(results[0][1], results[1][1])
    with torch.no_grad():
        assert torch.equal(traced(x), results[1][0])  # sign only, no surrogate term



def _cpu_inductor_available() -> bool:
    return any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++"))  # it writes C++


class _ElementwiseBinarizers(nn.Module):
    """The binarizers whose forward and gradient are elementwise (no reduction)."""

    def __init__(self) -> None:
        super().__init__()
        names = ("ste", "clipped_ste", "approx_sign")
        self.binarizers = nn.ModuleList(
            [ACTIVATION_BINARIZERS[n]() for n in names] + [WEIGHT_BINARIZERS["sign"]()]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([b(x) for b in self.binarizers])


@pytest.mark.skipif(not _cpu_inductor_available(), reason="CPU Inductor needs a C++ compiler")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_inductor_keeps_the_straight_through_gradient(dtype):
    """Inductor (torch.compile's default backend, the one training uses) computes the
    eager forward exactly and the eager gradient: equal in float32 and float64; in bf16
    it computes in float32 and rounds once, so ApproxSign's g * (2 - 2|x|) may differ by
    one bf16 step where eager rounds the slope first. A compiler that simplified
    s - s.detach() to 0 across the joint graph would zero every gradient: this fails then."""
    torch._dynamo.reset()
    module = _ElementwiseBinarizers()
    generator = torch.Generator().manual_seed(2)
    x = (torch.randn(16, 8, 8, 8, generator=generator) * 1.5).to(dtype)
    x.view(-1)[: len(EDGES)] = torch.tensor(EDGES, dtype=dtype)
    g = torch.randn(4, *x.shape, generator=generator).to(dtype)
    results = []
    for forward in (module, torch.compile(module, backend="inductor", fullgraph=True)):
        leaf = x.clone().requires_grad_(True)
        out = forward(leaf)
        per_binarizer = [torch.autograd.grad(out[i], leaf, g[i], retain_graph=True)[0]
                         for i in range(len(module.binarizers))]  # fmt: skip
        results.append((out.detach(), per_binarizer))
    (eager_out, eager_grads), (compiled_out, compiled_grads) = results
    assert torch.equal(eager_out, compiled_out)
    assert set(compiled_out.unique().tolist()) == {-1.0, 1.0}
    for name, a, b in zip(("ste", "clipped_ste", "approx_sign", "sign"), eager_grads,
                          compiled_grads, strict=True):  # fmt: skip
        assert b.abs().sum() > 0, name
        if dtype == torch.bfloat16 and name == "approx_sign":
            step = torch.finfo(dtype).eps * a.abs().float().clamp_min(1e-30)
            assert ((a.float() - b.float()).abs() <= step).all(), name
        else:
            assert torch.equal(a, b), name
