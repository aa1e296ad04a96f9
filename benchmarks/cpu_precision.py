"""Does bf16 autocast pay on this CPU? A training step in float32 against one under
``torch.autocast("cpu", dtype=torch.bfloat16)``.

bnn-nas trains in float32 on CPUs whatever ``bf16`` says (``bnn_nas.train.step.uses_bf16``):
on an AVX2-only CPU bf16 autocast made binary networks' steps several times slower; on
one with ``avx512_bf16`` a step took half the time, yet the quickstart search was not
faster (docs/benchmarks.md, "bf16 autocast on the CPU"). This prints the step figures for
the CPU at hand (with its bf16 instruction flags), rounds of the two alternating so that
a busy machine slows both alike:

    python -m benchmarks.cpu_precision [--batch-size 32] [--steps 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import MIXED_GENOTYPE, MIXED_OPS, emit
from bnn_nas.space.genotype import parse_genotype
from bnn_nas.space.network import CellNetwork, build_baseline
from bnn_nas.space.search_space import search_space_from_dict


def networks() -> dict[str, nn.Module]:
    """Binary ResNet-20 and a cell network of the quickstart's size (every op family)."""
    space = search_space_from_dict(
        {"steps": 3, "ops": MIXED_OPS, "network": {"cells": 5, "channels": 16}}, "mixed"
    )
    return {
        "resnet20_xnor": build_baseline("resnet20", "xnor", 10),
        "cell_network_5x16": CellNetwork(parse_genotype(MIXED_GENOTYPE), space, 10),
    }


def images_per_s(model: nn.Module, batch: int, steps: int, bf16: bool) -> float:
    """Training steps (forward, backward, Adam) per second times the batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocations, oneDNN's kernel choice
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - tic)


def cpu_flags() -> list[str]:
    try:
        with Path("/proc/cpuinfo").open() as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle
                          if line.startswith("flags")), [])  # fmt: skip
    except OSError:
        return []
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx") or f == "avx512f")


def cpu_name() -> str:
    try:
        with Path("/proc/cpuinfo").open() as handle:
            return next((line.split(":", 1)[1].strip() for line in handle
                         if line.startswith("model name")), "unknown")  # fmt: skip
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    figures = {}
    for name, model in networks().items():
        model.train()
        runs: dict[str, list[float]] = {"float32": [], "bf16": []}
        for _ in range(args.rounds):
            for label in runs:
                speed = images_per_s(model, args.batch_size, args.steps, label == "bf16")
                runs[label].append(speed)
        median = {label: statistics.median(v) for label, v in runs.items()}
        figures[name] = {
            "float32_images_per_s": round(median["float32"], 1),
            "bf16_images_per_s": round(median["bf16"], 1),
            "bf16_over_float32_time": round(median["float32"] / median["bf16"], 2),
        }
        print(f"{name}: float32 {median['float32']:.1f} images/s, bf16 autocast "
              f"{median['bf16']:.1f} ({figures[name]['bf16_over_float32_time']}x the time)",
              file=sys.stderr)  # fmt: skip
    emit("cpu_precision", torch.device("cpu"), cpu=cpu_name(), cpu_flags=cpu_flags(),
         batch_size=args.batch_size, networks=figures)  # fmt: skip


if __name__ == "__main__":
    main()
