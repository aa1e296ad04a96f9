"""How many operators one training step runs (forward + backward), per network.

A small network on a GPU is bound by kernel launches, even inside a CUDA graph (each
kernel still costs a few microseconds), so the operator count predicts its step time
better than its OPs do. Counted on the CPU with torch.profiler: the ATen operators that
Python code and autograd call (each one kernel or a few on a GPU), without views and
allocations. The optimiser is left out: its update is a fixed few dozen multi-tensor
kernels for all parameter tensors (fused Adam on CUDA, or CycledAdam with
``momentum_cycle``).

    python -m benchmarks.op_count [--genotype G [--config configs/cifar.yaml]]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import emit
from benchmarks.train_step import final_network, models

# operators that only make views or allocate: no kernel of their own
NO_KERNEL = {
    "aten::view", "aten::as_strided", "aten::empty", "aten::empty_like", "aten::t",
    "aten::transpose", "aten::expand", "aten::reshape", "aten::_reshape_alias",
    "aten::empty_strided", "aten::unsqueeze", "aten::squeeze", "aten::detach",
    "aten::alias", "aten::permute", "aten::slice", "aten::select", "aten::resize_",
    "aten::lift_fresh", "aten::result_type", "aten::_unsafe_view", "aten::unsafe_view",
    "aten::narrow", "aten::as_strided_", "aten::flatten", "aten::unflatten",
    "aten::view_as", "aten::expand_as", "aten::split", "aten::split_with_sizes",
    "aten::chunk", "aten::unbind", "aten::movedim",
}  # fmt: skip


def operators_per_step(model: nn.Module) -> int:
    """Top-level, kernel-launching ATen operators of one forward + backward (batch 2)."""
    model.train()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))

    def step() -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()

    step()  # first-call work (lazy init) is not the steady state
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return sum(launches(e) for e in prof.events())


def launches(event) -> bool:
    """An ATen operator called from Python or from autograd, not from inside another ATen
    operator (whose internals differ by device: a CPU convolution reorders and copies,
    cuDNN's does not), and not a view or an allocation."""
    if not event.name.startswith("aten::") or event.name in NO_KERNEL:
        return False
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return False
        parent = parent.cpu_parent
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genotype", help="also count this genotype's final network")
    parser.add_argument("--config", default="configs/cifar.yaml",
                        help="with --genotype: its search space, cells and channels")  # fmt: skip
    args = parser.parse_args()
    chosen = {k: v for k, v in models().items() if not k.endswith("_float_twin")}
    if args.genotype:
        chosen["genotype"] = final_network(args.genotype, args.config)
    counts = {name: operators_per_step(model) for name, model in chosen.items()}
    emit("op_count", torch.device("cpu"), genotype=args.genotype, operators_per_step=counts)


if __name__ == "__main__":
    main()
