"""Where does a compiled bf16 step lose precision that the eager bf16 step keeps?

In float64 every torch.compile backend agrees with the eager step to ~1e-13
(`benchmarks.step_agreement`), yet under bf16 autocast the compiled step trained binary
ResNet-18 to 57% where the eager one reached 75%. A bf16 trajectory is chaotic (a rounding
change flips a sign), so comparing trajectories proves nothing; this compares ONE step
instead: the gradients and batch-norm buffers of each bf16 variant against the float64
step on the same weights and batch, tensor by tensor. A correct variant is about as far
from float64 as eager bf16 is; a tensor where a variant is many times further points at
the fault.

    python -m benchmarks.compile_precision [--model resnet20] [--family xnor]
        [--backends aot_eager,inductor] [--top 8]
"""

from __future__ import annotations

import argparse
import copy
import sys

import torch
from torch import nn

from benchmarks.common import emit
from bnn_nas.space.network import build_baseline
from bnn_nas.train import resolve_device
from bnn_nas.train.step import bf16_autocast


def one_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, backend: str | None, bf16: bool
) -> dict[str, torch.Tensor]:
    """Gradients and buffers after one training forward + backward, as float64 tensors."""
    model = copy.deepcopy(model)
    model.train()
    forward = torch.compile(model, backend=backend) if backend else model
    with bf16_autocast(x.device, bf16):
        loss = nn.functional.cross_entropy(forward(x), y, label_smoothing=0.1)
    loss.backward()
    out = {"loss": loss.detach().double().reshape(1)}
    for name, p in model.named_parameters():
        if p.grad is not None:
            out[f"grad:{name}"] = p.grad.double()
    for name, b in model.named_buffers():
        if b.is_floating_point():
            out[f"buffer:{name}"] = b.double()
    return out


def relative_errors(a: dict, reference: dict) -> dict[str, float]:
    return {
        k: float((a[k] - v).norm() / v.norm().clamp_min(1e-30)) for k, v in reference.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20", choices=["resnet18", "resnet20"])
    parser.add_argument("--family", default="xnor", choices=["xnor", "bireal"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--backends", default="aot_eager,inductor")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model = build_baseline(args.model, args.family, 10).to(device).to(memory_format=layout)
    x = torch.randn(args.batch_size, 3, 32, 32, device=device).to(memory_format=layout)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    reference = one_step(model.double(), x.double(), y, backend=None, bf16=False)
    model = model.float()
    variants = {"eager": None, **{f"compile:{b}": b for b in args.backends.split(",") if b}}
    errors = {
        name: relative_errors(one_step(model, x, y, backend=backend, bf16=True), reference)
        for name, backend in variants.items()
    }
    eager = errors["eager"]
    summary = {}
    for name, err in errors.items():
        ratio = {k: err[k] / max(eager[k], 1e-12) for k in err}
        worst = sorted(ratio, key=ratio.get, reverse=True)[: args.top]
        summary[name] = {
            "median_rel_error": float(torch.tensor(list(err.values())).median()),
            "loss_rel_error": err["loss"],
            "worst": {k: {"rel_error": err[k], "eager_rel_error": eager[k]} for k in worst},
        }
        print(f"{name}: median relative error vs float64 {summary[name]['median_rel_error']:.3g}, "
              f"loss {err['loss']:.3g}", file=sys.stderr)  # fmt: skip
        for k in worst:
            print(f"    {k:45s} {err[k]:.3g}  (eager bf16 {eager[k]:.3g})", file=sys.stderr)
    emit("compile_precision", device, model=f"{args.model}_{args.family}", variants=summary)


if __name__ == "__main__":
    main()
