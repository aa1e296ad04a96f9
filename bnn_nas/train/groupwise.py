"""The step shared by bnn-nas's own optimisers: one multi-tensor update per parameter group.

CycledAdam and TensorLrSGD differ only in ``_update``; both skip parameters without a
gradient and hand the rest of a group to it at once, so each update is one launch of
``torch._foreach_*`` kernels per group (what keeps a captured step short).
"""

from __future__ import annotations

import torch
from torch import Tensor


class GroupwiseOptimizer(torch.optim.Optimizer):
    """An optimiser whose subclass updates one group's parameters (with gradients) at once."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._update(group, params)
        return loss

    def _update(self, group: dict, params: list[Tensor]) -> None:
        raise NotImplementedError
