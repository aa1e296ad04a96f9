"""Adam whose learning rate and beta1 live in device tensors: one-cycle in a CUDA graph.

One-cycle moves Adam's beta1 against the learning rate every step. A captured CUDA graph
can only see such a value if it sits in a tensor the schedule fills in place. PyTorch's
fused and foreach Adam take beta1 as a host number (torch 2.11-2.13), and its per-tensor
update launches about 19 kernels per parameter tensor, a 20% slower ResNet-18 step on an
H200. Here every operation on the parameters is a multi-tensor (``torch._foreach_*``) one
whose scalar is a 0-dim tensor: a fixed number of launches (one per ~100 tensors each)
and no host reads.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from bnn_nas.train.groupwise import GroupwiseOptimizer


class CycledAdam(GroupwiseOptimizer):
    """Adam (L2 weight decay as in ``torch.optim.Adam``) with tensor ``lr`` and beta1.

    Each group's ``lr`` and ``betas[0]`` are 0-dim tensors on the parameters' device
    (fill them in place to change them); ``betas[1]`` and ``eps`` are numbers. The update
    is ``torch.optim.Adam``'s, bias correction with the current beta1 included, and its
    state (``step``, ``exp_avg``, ``exp_avg_sq``) has the same names and shapes. One
    difference: the bias correction of a group uses one step count, its first updated
    parameter's, so that every multi-tensor operation pairs a list with one 0-dim tensor
    (a list of 0-dim tensors sends PyTorch's CUDA kernels down a per-tensor path). This
    differs from torch only for a parameter that missed a gradient at some earlier step;
    in bnn-nas's networks every parameter gets one at every step.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        self._hold_in_tensors(self.param_groups[-1])

    @staticmethod
    def _hold_in_tensors(group: dict) -> None:
        """lr and beta1 as 0-dim tensors on the group's device, at least float32."""
        first = group["params"][0] if group["params"] else torch.empty(())
        like = {"device": first.device, "dtype": _scalar_dtype(first)}
        beta1, beta2 = group["betas"]
        group["lr"] = torch.as_tensor(group["lr"], **like).clone()
        group["betas"] = (torch.as_tensor(beta1, **like).clone(), float(beta2))

    def load_state_dict(self, state_dict: dict) -> None:
        """Loads values into the lr and beta1 tensors already held (a captured graph
        reads those), and moves each ``step`` next to its parameter."""
        held = [(group["lr"], group["betas"][0]) for group in self.param_groups]
        super().load_state_dict(state_dict)
        for group, (lr, beta1) in zip(self.param_groups, held, strict=True):
            lr.fill_(float(group["lr"]))
            beta1.fill_(float(group["betas"][0]))
            group["lr"], group["betas"] = lr, (beta1, float(group["betas"][1]))
            for p in group["params"]:  # torch.optim.Adam's may sit on the CPU
                state = self.state.get(p)
                if state and "step" in state:
                    state["step"] = torch.as_tensor(state["step"]).to(p.device, _scalar_dtype(p))

    def _update(self, group: dict, params: list[Tensor]) -> None:
        grads = [p.grad for p in params]
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = torch.zeros((), device=p.device, dtype=_scalar_dtype(p))
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        steps = [self.state[p]["step"] for p in params]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        lr, (beta1, beta2) = group["lr"], group["betas"]

        torch._foreach_add_(steps, 1.0)
        if group["weight_decay"] != 0:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        # m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, torch._foreach_mul(grads, 1.0 - beta1))
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        # bias corrections at the group's step t, as 0-dim tensors: c1 = 1 - beta1^t,
        # sqrt(c2) = sqrt(1 - beta2^t);  p <- p - lr / c1 * m / (sqrt(v) / sqrt(c2) + eps),
        # computed as p <- p - m / ((sqrt(v) / sqrt(c2) + eps) * c1 / lr)
        t = steps[0]
        c1_over_lr = (1.0 - torch.pow(beta1, t)) / lr
        c2_sqrt = torch.sqrt(1.0 - torch.pow(beta2, t))
        denominators = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_div_(denominators, c2_sqrt)
        torch._foreach_add_(denominators, group["eps"])
        torch._foreach_mul_(denominators, c1_over_lr)
        torch._foreach_addcdiv_(params, exp_avgs, denominators, value=-1.0)


def _scalar_dtype(p: Tensor) -> torch.dtype:
    """float32 for lower-precision parameters (a bf16 step count stops at 256), else theirs."""
    return torch.promote_types(p.dtype, torch.float32)
