"""torch.compile sees the binarizers as custom ops (bnn_nas/binary/compiled_sign.py):
the compiled forward and backward equal the eager ones, with no graph break."""

from __future__ import annotations

import copy

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


@pytest.mark.parametrize(
    "view",
    [
        lambda t: t[:, ::2],
        lambda t: t.transpose(2, 3),
        lambda t: t.contiguous(memory_format=torch.channels_last),
        lambda t: t.contiguous(memory_format=torch.channels_last)[:, 1:],
    ],
    ids=["sliced", "transposed", "channels_last", "channels_last_sliced"],
)
def test_the_ops_lay_out_their_results_as_their_fakes_promise(view):
    """Inductor plans the kernels around an op with the fake's strides: the real op must
    return those, for every layout of x and of the incoming gradient."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from bnn_nas.binary import compiled_sign as ops

    x = view(torch.randn(2, 6, 5, 7))
    g = torch.randn(2, 6, 5, 7).contiguous(memory_format=torch.channels_last)[:, : x.shape[1]]
    g = g.reshape(x.shape) if g.shape != x.shape else g
    calls = [
        (ops._sign_clipped_ste, (x,)),
        (ops._sign_stochastic, (x, torch.rand(x.shape))),
        (ops._clipped_ste_grad_op, (g, x)),
        (ops._approx_sign_grad_op, (g, x)),
    ]
    with FakeTensorMode() as mode:
        fakes = [[mode.from_tensor(a) for a in args] for _, args in calls]
        promised = [op(*args).stride() for (op, _), args in zip(calls, fakes, strict=True)]
    real = [op(*args).stride() for op, args in calls]
    assert real == promised


BINARIZERS = {**ACTIVATION_BINARIZERS, **WEIGHT_BINARIZERS}  # "identity" in both: left out


@pytest.mark.parametrize("name", sorted(set(BINARIZERS) - {"identity"}))
def test_torch_compile_sees_one_custom_op_and_torch_export_none(name):
    """The routing itself (on CPU the traced autograd Functions happened to be right, so
    the equalities above would hold without it): torch.compile's graph holds the
    binarizer as one bnn_nas op, torch.export's (the ONNX exporter's) ATen ops only."""
    binarizer = BINARIZERS[name](10) if name == "rsign" else BINARIZERS[name]()
    x = torch.randn(2, 10, 3, 3, requires_grad=True)
    seen: list[str] = []

    def backend(gm, inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    torch.compile(binarizer, backend=backend, fullgraph=True)(x)
    assert len([t for t in seen if t.startswith("bnn_nas.")]) == 1, seen
    exported = torch.export.export(binarizer, (x.detach(),))
    targets = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert targets and not [t for t in targets if "bnn_nas" in t], targets
