"""Packed XNOR-popcount inference vs PyTorch float32 on this CPU, at batch 1 and 1 thread.

1. Speed, binary ResNet-18 (CIFAR layout, xnor family): every binary conv layer as the
   packed engine runs it (binarize + pack + XNOR-popcount + affine, float in and out)
   against a float32 torch conv of the same shape; the whole exported network against the
   float32 twin (same architecture, binarizers off) and the PyTorch binary model.
2. Bytes: the exported file and its binary part against a float32 checkpoint.
3. Agreement: networks trained here for a short while (agreement is measured, not
   accuracy), exported, and run on the test set (--data-root: CIFAR-10's 10,000 images;
   else the 1,000 of the packaged sample) against PyTorch float32 and the exact-tie
   reference (``bnn_nas.export.reference``).

    python -m benchmarks.inference [--data-root DIR] [--epochs 2] [--train-images 10000]

One JSON line on stdout; the per-layer table and progress on stderr.
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import FLOAT_TWIN, MIXED_GENOTYPE, MIXED_OPS, emit, load_data
from bnn_nas.config import ModelConfig, TrainConfig
from bnn_nas.data.splits import class_balanced_split
from bnn_nas.export import Architecture, InputSpec, export_network, load_packed
from bnn_nas.export.modules import PackedConv2d
from bnn_nas.export.reference import exact_reference
from bnn_nas.space.genotype import parse_genotype
from bnn_nas.space.search_space import search_space_from_dict
from bnn_nas.train import fit


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def median_ms(fn: Callable[[], Any], repeats: int, rounds: int = 3, warmup: int = 5) -> float:
    """Wall time of one call in ms: the median of ``repeats`` calls, the best of ``rounds``
    rounds (other processes on a shared machine only ever add time)."""
    best = float("inf")
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        for _ in range(rounds):
            times = []
            for _ in range(repeats):
                tic = time.perf_counter()
                fn()
                times.append(time.perf_counter() - tic)
            best = min(best, statistics.median(times))
    return 1e3 * best


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Untrained BNs have trivial statistics; give them some so thresholds are real."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def layer_table(engine: Any, repeats: int) -> list[dict[str, Any]]:
    """Each packed conv vs a float32 torch conv of the same shape, on its real input."""
    inputs: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            inputs.setdefault(name, args[0])

        return hook

    hooks = [
        m.register_forward_hook(keep(name))
        for name, m in engine.module.named_modules()
        if isinstance(m, PackedConv2d)
    ]
    engine.logits(torch.randn(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    rows = []
    for name, module in engine.module.named_modules():
        if not isinstance(module, PackedConv2d):
            continue
        g = module.geometry
        w = torch.randn(g.out_channels, g.group_in, *g.kernel)

        def float_conv(x: torch.Tensor, w: torch.Tensor = w, g: Any = g) -> torch.Tensor:
            return F.conv2d(
                x, w, stride=g.stride, padding=g.padding, dilation=g.dilation, groups=g.groups
            )

        # each side gets the memory layout it runs best on: the float conv the faster of
        # NCHW and channels_last, the packed conv channels_last (what it gets in the net)
        nchw = inputs[name].contiguous()
        nhwc = nchw.contiguous(memory_format=torch.channels_last)
        float_ms = min(median_ms(lambda x=x: float_conv(x), repeats) for x in (nchw, nhwc))
        packed_ms = median_ms(lambda module=module, x=nhwc: module(x), repeats)
        x = nchw
        rows.append(
            {"layer": name, "c_in": g.in_channels, "c_out": g.out_channels,
             "kernel": g.kernel[0], "stride": g.stride[0], "hw": x.shape[-1],
             "float32_ms": round(float_ms, 4), "packed_ms": round(packed_ms, 4),
             "speedup": round(float_ms / packed_ms, 2)}
        )  # fmt: skip
    return rows


def speed_and_size(repeats: int, workdir: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    arch = Architecture(ModelConfig(type="resnet18", family="xnor"), 10)
    model = arch.build()
    randomize_bn(model)
    spec = InputSpec((0.5,) * 3, (0.25,) * 3, tuple(map(str, range(10))), 32, 32)
    summary = export_network(model, arch, spec, workdir / "resnet18_xnor.bnn")
    engine = load_packed(summary.path, threads=1)
    log(f"engine: {engine.backend.describe()}")
    rows = layer_table(engine, repeats)
    log(f"{'layer':<28}{'C_in':>6}{'C_out':>6}{'k':>3}{'s':>3}{'HxW':>5}"
        f"{'float32 ms':>12}{'packed ms':>11}{'speed-up':>10}")  # fmt: skip
    for r in rows:
        shape = f"{r['c_in']:>6}{r['c_out']:>6}{r['kernel']:>3}{r['stride']:>3}{r['hw']:>5}"
        times = f"{r['float32_ms']:>12.3f}{r['packed_ms']:>11.3f}{r['speedup']:>9.1f}x"
        log(f"{r['layer']:<28}{shape}{times}")
    twin = Architecture(ModelConfig(type="resnet18", family="xnor", options=FLOAT_TWIN), 10)
    float_model = twin.build()
    x1 = torch.randn(1, 3, 32, 32)
    net = {
        "engine_ms": median_ms(lambda: engine.logits(x1), repeats),
        "float32_twin_ms": median_ms(lambda: float_model(x1), repeats),
        "torch_binary_ms": median_ms(lambda: model.eval()(x1), max(repeats // 2, 5)),
    }
    net = {k: round(v, 3) for k, v in net.items()}
    net["speedup_vs_float32"] = round(net["float32_twin_ms"] / net["engine_ms"], 2)
    net["speedup_vs_torch_binary"] = round(net["torch_binary_ms"] / net["engine_ms"], 2)
    buffer = io.BytesIO()
    torch.save({k: v.float() for k, v in float_model.state_dict().items()}, buffer)
    checkpoint = len(buffer.getvalue())
    speedups = [r["speedup"] for r in rows]
    return {
        "engine": engine.backend.describe(),
        "layers": rows,
        "binary_conv_speedup": {"min": min(speedups), "median": statistics.median(speedups),
                                "max": max(speedups)},
        "binary_convs_ms": {"float32": round(sum(r["float32_ms"] for r in rows), 3),
                            "packed": round(sum(r["packed_ms"] for r in rows), 3)},
        "network_resnet18_xnor_batch1": net,
        "bytes": {
            "exported_file": summary.file_bytes,
            "binary_part": summary.binary_bytes,
            "binary_sign_bits": summary.binary_weight_bytes,
            "binary_weights_float32": summary.binary_float32_bytes,
            "float_parts": summary.float_bytes,
            "float32_checkpoint": checkpoint,
            "checkpoint_over_file": round(checkpoint / summary.file_bytes, 2),
            "binary_float32_over_binary_part": round(
                summary.binary_float32_bytes / summary.binary_bytes, 2
            ),
        },
    }  # fmt: skip


def candidates() -> dict[str, Architecture]:
    mixed = search_space_from_dict(
        {"steps": 3, "ops": MIXED_OPS,
         "network": {"cells": 5, "channels": 16, "stem_multiplier": 2, "preprocess": "xnor"}},
        "mixed",
    )  # fmt: skip
    return {
        "resnet20_xnor": Architecture(ModelConfig(type="resnet20", family="xnor"), 10),
        "resnet20_bireal": Architecture(ModelConfig(type="resnet20", family="bireal"), 10),
        "cells_mixed": Architecture(ModelConfig(), 10, mixed, parse_genotype(MIXED_GENOTYPE)),
    }


def agreement(data: Any, epochs: int, train_images: int, workdir: Path) -> list[dict[str, Any]]:
    stats = data.train.channel_stats()
    n_train = min(train_images, len(data.train))
    idx, _ = class_balanced_split(data.train.labels, n_train=n_train, seed=0)
    train = data.train.subset(idx)
    labels = torch.from_numpy(data.test.labels)
    results = []
    for name, arch in candidates().items():
        torch.manual_seed(0)
        model = arch.build()
        torch.set_num_threads(max(torch.get_num_threads(), 2))
        tic = time.perf_counter()
        settings = TrainConfig(epochs=epochs, batch_size=128, lr=2e-3)
        fit(model, train, settings, device=torch.device("cpu"), seed=0, stats=stats)
        train_s = time.perf_counter() - tic
        spec = InputSpec(stats[0], stats[1], data.classes, 32, 32)
        summary = export_network(model, arch, spec, workdir / f"{name}.bnn")
        engine = load_packed(summary.path, threads=1)
        model.eval()
        reference = exact_reference(model)
        torch_pred, exact_pred, engine_pred = [], [], []
        with torch.no_grad():
            for i in range(0, len(labels), 500):
                x = engine.normalize(data.test.images[i : i + 500])
                torch_pred.append(model(x).argmax(1))
                exact_pred.append(reference(x.double()).argmax(1))
                engine_pred.append(engine.logits(x).argmax(1))
        t, e, r = torch.cat(torch_pred), torch.cat(engine_pred), torch.cat(exact_pred)
        row = {
            "model": name,
            "train_images": n_train,
            "epochs": epochs,
            "train_s": round(train_s, 1),
            "test_images": len(labels),
            "accuracy_torch_float32": round(float((t == labels).float().mean()), 4),
            "accuracy_engine": round(float((e == labels).float().mean()), 4),
            "agreement_engine_vs_torch_float32": round(float((t == e).float().mean()), 5),
            "agreement_engine_vs_exact_reference": round(float((r == e).float().mean()), 5),
            "agreement_torch_float32_vs_exact_reference": round(float((t == r).float().mean()), 5),
            "packed_layers": summary.packed_layers,
        }
        log(str(row))
        results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="image-folder CIFAR-10 (default: packaged sample)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per network")
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per figure")
    parser.add_argument("--skip-agreement", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(1)
        figures = speed_and_size(args.repeats, Path(tmp))
        if not args.skip_agreement:
            data = load_data(args.data_root)
            figures["agreement"] = agreement(data, args.epochs, args.train_images, Path(tmp))
            figures["dataset"] = data.name
    torch.set_num_threads(1)
    emit("inference", torch.device("cpu"), cpu=cpu_model(), threads=1, batch=1, **figures)


if __name__ == "__main__":
    main()
