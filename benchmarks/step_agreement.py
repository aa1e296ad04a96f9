"""Do the training-step variants compute the same thing? A diagnosis tool, not a timing.

Trains copies of one binary network from the same weights on the same batches with each
step variant (eager; CUDA graph; torch.compile; torch.compile captured in a CUDA graph)
and prints, per variant, the loss of every step and the largest parameter difference
from the eager step. In float64 (the default) rounding cannot flip a sign, so a correct
variant agrees to ~1e-12 and a wrong one differs by about the learning rate.

Written after the compiled + graphed step trained binary ResNet-18 to 57% where the
graphed eager step reached 75% (docs/benchmarks.md); the CPU agrees, so run it on a GPU:

    python -m benchmarks.step_agreement [--model resnet20] [--family xnor] [--steps 4]
        [--dtype float64|bf16] [--backends inductor,aot_eager,eager]

``--backends`` bisects torch.compile: ``eager`` runs Dynamo's captured graph with eager
kernels, ``aot_eager`` adds AOTAutograd (functionalised forward + backward, buffer
mutations as copies), ``inductor`` adds its generated kernels; each is run with and
without the CUDA-graph capture of the step.
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch
from torch import nn

from benchmarks.common import emit
from bnn_nas.config import TrainConfig
from bnn_nas.space.network import build_baseline
from bnn_nas.train import resolve_device
from bnn_nas.train.optim import CosineSchedule, build_optimizer
from bnn_nas.train.step import EagerStep, GraphedStep


def run_variant(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    compiled: str | None,
    graphed: bool,
    bf16: bool,
    settings: TrainConfig | None = None,
) -> tuple[nn.Module, list[float]]:
    """Train a copy of ``model`` on ``batches``; returns it and the loss of every step.

    ``compiled``: the torch.compile backend, or None for the eager module.
    ``settings``: its optimiser and schedule (stepped after every batch, as fit does:
    the graph must see the values the schedule writes); default a fixed lr of 0.01.
    """
    model = copy.deepcopy(model)
    # every variant gets the graph's optimiser (device-tensor learning rate, capturable
    # update), so the step is all that differs: a float32 lr tensor alone moves float64
    # weights by ~1e-8, and binary nets amplify that through sign flips
    capturable = device.type == "cuda"
    optimizer = build_optimizer(model, settings or TrainConfig(lr=0.01), capturable=capturable)
    schedule = CosineSchedule(optimizer, settings, len(batches)) if settings else None
    forward = torch.compile(model, backend=compiled) if compiled else model
    common = {"bf16": bf16, "grad_clip": None, "device": device}
    criterion = nn.CrossEntropyLoss()
    x0, y0 = batches[0]
    if graphed:
        step = GraphedStep(model, forward, optimizer, criterion, x_like=x0, y_like=y0, **common)
    else:
        step = EagerStep(model, forward, optimizer, criterion, **common)
    losses = []
    for x, y in batches:
        step.reset()
        step(x, y)
        losses.append(float(step.loss_sum) / len(y))
        if schedule is not None:
            schedule.step()
    return model, losses


def max_difference(a: nn.Module, b: nn.Module) -> tuple[float, str]:
    """Largest absolute difference over parameters and buffers, and where it is."""
    worst, where = 0.0, ""
    b_state = b.state_dict()
    for name, value in a.state_dict().items():
        if not value.is_floating_point():
            continue
        diff = float((value.double() - b_state[name].double()).abs().max())
        if diff > worst:
            worst, where = diff, name
    return worst, where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=["resnet18", "resnet20"])
    parser.add_argument("--family", default="xnor", choices=["xnor", "bireal"])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dtype", default="float64", choices=["float64", "bf16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--backends", default="inductor", help="torch.compile backends to try, comma-separated"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    bf16 = args.dtype == "bf16"
    dtype = torch.float32 if bf16 else torch.float64
    # the trainer's layout on CUDA: channels_last weights and inputs
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = build_baseline(args.model, args.family, 10).to(device, dtype)
    model.to(memory_format=layout)
    batches = [
        (
            torch.randn(args.batch_size, 3, 32, 32, device=device, dtype=dtype).to(
                memory_format=layout
            ),
            torch.randint(0, 10, (args.batch_size,), device=device),
        )
        for _ in range(args.steps)
    ]
    backends = [b for b in args.backends.split(",") if b]
    variants: dict[str, tuple[str | None, bool]] = {"eager": (None, False)}
    if device.type == "cuda":
        variants["graph"] = (None, True)
    for backend in backends:
        variants[f"compile:{backend}"] = (backend, False)
        if device.type == "cuda":
            variants[f"compile:{backend}+graph"] = (backend, True)
    reference: nn.Module | None = None
    results = {}
    for name, (compiled, graphed) in variants.items():
        trained, losses = run_variant(
            model, batches, device, compiled=compiled, graphed=graphed, bf16=bf16
        )
        if reference is None:
            reference = trained
        diff, where = max_difference(reference, trained)
        results[name] = {"losses": [round(v, 6) for v in losses], "max_diff": diff, "at": where}
        print(f"{name:24s} max |param - eager| {diff:.3g} ({where}) losses {losses}",
              file=sys.stderr)  # fmt: skip
    emit("step_agreement", device, model=f"{args.model}_{args.family}", dtype=args.dtype,
         steps=args.steps, variants=results)  # fmt: skip


if __name__ == "__main__":
    main()
