"""benchmarks.op_count counts the operators a step launches: not views, not internals."""

from __future__ import annotations

from torch import nn

from benchmarks.op_count import operators_per_step


def _net(*middle: nn.Module) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), *middle, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 10),
    )  # fmt: skip


def test_views_are_free_and_layers_are_not():
    base = operators_per_step(_net())
    assert base > 0
    # a reshape round trip launches nothing
    assert operators_per_step(_net(nn.Flatten(), nn.Unflatten(1, (4, 32, 32)))) == base
    # a convolution is one operator each way, whatever it runs inside (CPU: reorders)
    assert operators_per_step(_net(nn.Conv2d(4, 4, 3, padding=1, bias=False))) == base + 2
    # a ReLU is a forward and a backward kernel at least
    assert operators_per_step(_net(nn.ReLU())) >= base + 2
