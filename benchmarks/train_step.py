"""Images/s of the training step: binary ResNet-18 (xnor, bireal), their float twins, and a
search candidate (8 cells x 16 channels) with its twin; prints the binary/float time ratio.

The float twin is the same network with both binarizers set to ``identity``, so the ratio
isolates what binarization costs. Data is synthetic and already on the device.
``--genotype G`` adds the final network of G as ``genotype`` (built as `bnn-nas train
--config C --genotype G` builds it); ``--momentum-cycle`` times the optimiser that
one-cycle's beta1 needs; ``--sgd`` times SGD with Nesterov momentum (TensorLrSGD).
``--distill`` also times each binary model's step with a teacher's forward inside (the
float twin of bireal ResNet-18 in bf16, eval mode, as `final.distill` runs it) and prints
``distill_over_student_time`` (the issue's target: <= 1.35).

    python -m benchmarks.train_step [--batch-size 256] [--steps 30] [--compile] [--profile]
        [--genotype G [--config configs/cifar.yaml]] [--momentum-cycle] [--sgd] [--distill]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

import torch
from torch import nn

from benchmarks.common import FLOAT_TWIN, emit
from bnn_nas.config import COMPILE_SCOPES, DistillConfig, TrainConfig
from bnn_nas.search.evaluator import trial_seed
from bnn_nas.space.network import CellNetwork, build_baseline
from bnn_nas.space.search_space import load_search_space
from bnn_nas.train import resolve_device
from bnn_nas.train.compile_scope import compiled_regions, regions_of
from bnn_nas.train.distill import DistillLoss
from bnn_nas.train.optim import build_optimizer
from bnn_nas.train.step import GraphedStep, graph_capturable, make_step


def candidate(twin: bool) -> nn.Module:
    space = load_search_space("bnn_darts")
    if twin:  # the same ops with binarizers off
        from dataclasses import replace

        ops = tuple(
            replace(op, options=tuple(sorted({**op.options_dict, **FLOAT_TWIN}.items())))
            if op.name.startswith(("xnor_", "bireal_")) and op.name != "xnor_skip_connect"
            else op
            for op in space.normal_ops
        )
        space = replace(space, normal_ops=ops, reduce_ops=ops)
    genotype = load_search_space("bnn_darts").random_sample(random.Random(0))
    torch.manual_seed(trial_seed(0, genotype))
    return CellNetwork(genotype, space, 10)


def final_network(genotype: str, config_path: str) -> nn.Module:
    """The network `bnn-nas train` would build: the config's space, cells and channels."""
    from bnn_nas.cli.options import load_run_config  # the config with its plugins loaded
    from bnn_nas.space.genotype import load_genotype
    from bnn_nas.train.final_network import build_final_network

    return build_final_network(load_run_config(config_path, ()), load_genotype(genotype), 10)


def models() -> dict[str, nn.Module]:
    return {
        "resnet18_xnor": build_baseline("resnet18", "xnor", 10),
        "resnet18_xnor_float_twin": build_baseline("resnet18", "xnor", 10, **FLOAT_TWIN),
        "resnet18_bireal": build_baseline("resnet18", "bireal", 10),
        "resnet18_bireal_float_twin": build_baseline("resnet18", "bireal", 10, **FLOAT_TWIN),
        "candidate_8x16": candidate(False),
        "candidate_8x16_float_twin": candidate(True),
    }


def batch_norm_in_float32(model: nn.Module) -> None:
    """A step variant: affine BN layers normalise a float32 copy of their bf16 input.

    PyTorch's cuDNN batch norm (NHWC kernels) refuses bf16 input; on float32 it runs.
    The output goes back to bf16, as the next layer would get it under autocast.
    """

    def to_float(module: nn.Module, args: tuple) -> tuple | None:
        return (args[0].float(),) if args[0].dtype == torch.bfloat16 else None

    def to_bf16(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        return out.to(torch.bfloat16) if torch.is_autocast_enabled("cuda") else out

    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and module.affine:
            module.register_forward_pre_hook(to_float)
            module.register_forward_hook(to_bf16)


def images_per_s(model: nn.Module, device, batch: int, steps: int, compile_: bool,
                 graph: bool, profile: bool, bf16: bool = True,
                 settings: TrainConfig | None = None,
                 teacher: nn.Module | None = None,
                 compile_scope: str = "network") -> tuple[float, bool]:  # fmt: skip
    """The trainer's own step (bnn_nas.train.step), timed on a fixed device batch; and
    whether it ran as a CUDA graph (a failed capture falls back to eager steps).
    ``teacher``: a distillation teacher whose forward runs inside the step."""
    cuda = device.type == "cuda"
    model.to(device).train()
    if cuda:
        model.to(memory_format=torch.channels_last)
    graph = graph and graph_capturable(model, device)
    optimizer = build_optimizer(model, settings or TrainConfig(), capturable=graph)
    x = torch.randn(batch, 3, 32, 32, device=device)
    if cuda:
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    # compile_scope ops: a cell network's regions compiled one by one (as the trainer does)
    regions = regions_of(model, TrainConfig(compile=compile_, compile_scope=compile_scope))
    forward = torch.compile(model) if compile_ and not regions else model
    with compiled_regions(regions):
        return _timed_step(model, forward, optimizer, x, y, device, steps, graph, profile,
                           bf16, teacher)  # fmt: skip


def _timed_step(model: nn.Module, forward, optimizer, x, y, device, steps: int, graph: bool,
                profile: bool, bf16: bool, teacher) -> tuple[float, bool]:  # fmt: skip
    cuda = device.type == "cuda"
    batch = len(x)
    criterion: nn.Module = nn.CrossEntropyLoss()
    if teacher is not None:
        criterion = DistillLoss(DistillConfig(teacher="benchmark"))
        teacher.to(device).eval().requires_grad_(False)
        if cuda:
            teacher.to(memory_format=torch.channels_last)
            if bf16:
                teacher.to(torch.bfloat16)
    warm_up = time.perf_counter()
    step = make_step(
        model, forward, optimizer, criterion, bf16=cuda and bf16, grad_clip=None,
        device=device, cuda_graph=graph, first_batch=(x, y), teacher=teacher,
    )  # fmt: skip
    for _ in range(5 if cuda else 2):
        step(x, y)
    if cuda:
        torch.cuda.synchronize(device)
    # what a training pays once per network before its first timed step: compilation
    # (with --compile), the graph's capture and the warm-up steps
    print(f"  warm-up (compile, capture, first steps): {time.perf_counter() - warm_up:.1f} s",
          file=sys.stderr, flush=True)  # fmt: skip
    tic = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - tic
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as run_profiler

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with run_profiler(activities=activities) as prof:
            for _ in range(3):
                step(x, y)
            if cuda:
                torch.cuda.synchronize(device)
        key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=12), file=sys.stderr)
    return batch * steps / seconds, isinstance(step, GraphedStep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--compile-scope", default="network", choices=COMPILE_SCOPES,
                        help="with --compile: the whole forward, or a cell network op by op")
    parser.add_argument("--no-cuda-graph", action="store_true", help="eager steps on CUDA")
    parser.add_argument("--no-bf16", action="store_true", help="float32 activations on CUDA")
    parser.add_argument("--bn-fp32", action="store_true",
                        help="batch norm on a float32 copy of bf16 input")  # fmt: skip
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN time its conv algorithms per shape")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="torch.profiler table to stderr")
    parser.add_argument("--only", help="comma-separated model names")
    parser.add_argument("--genotype", help="also time this genotype's final network")
    parser.add_argument("--config", default="configs/cifar.yaml",
                        help="with --genotype: its search space, cells and channels")  # fmt: skip
    parser.add_argument("--momentum-cycle", action="store_true",
                        help="Adam with one-cycle beta1 (momentum_cycle [0.85, 0.95])")  # fmt: skip
    parser.add_argument("--sgd", action="store_true", help="SGD, Nesterov momentum 0.9")
    parser.add_argument("--distill", action="store_true",
                        help="also time each binary model with a teacher inside")  # fmt: skip
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark  # this process only
    settings = TrainConfig(momentum_cycle=(0.85, 0.95) if args.momentum_cycle else None)
    if args.sgd:
        settings = TrainConfig(optimizer="sgd", lr=0.1, weight_decay=5e-4)
    chosen = models()
    if args.genotype:
        chosen["genotype"] = final_network(args.genotype, args.config)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    figures, graphed = {}, {}
    for name, model in chosen.items():
        if args.bn_fp32:
            batch_norm_in_float32(model)
        speed, graphed[name] = images_per_s(model, device, args.batch_size, args.steps,
                                            args.compile, not args.no_cuda_graph,
                                            args.profile, not args.no_bf16,
                                            settings, compile_scope=args.compile_scope)  # fmt: skip
        figures[name] = round(speed)
        print(f"{name}: {figures[name]} images/s", file=sys.stderr)
        if args.distill and "float_twin" not in name:
            teacher = build_baseline("resnet18", "bireal", 10, **FLOAT_TWIN)
            speed, graphed[f"{name}_distilled"] = images_per_s(
                model, device, args.batch_size, args.steps, args.compile,
                not args.no_cuda_graph, False, not args.no_bf16, settings, teacher,
            )  # fmt: skip
            figures[f"{name}_distilled"] = round(speed)
            print(f"{name}_distilled: {figures[name + '_distilled']} images/s", file=sys.stderr)
    ratios = {
        f"{name}_time_ratio": round(figures[f"{name}_float_twin"] / figures[name], 3)
        for name in ("resnet18_xnor", "resnet18_bireal", "candidate_8x16")
        if name in figures and f"{name}_float_twin" in figures
    }
    distill_ratios = {
        name: round(figures[name] / figures[f"{name}_distilled"], 3)
        for name in figures
        if f"{name}_distilled" in figures
    }
    # what ran, not what was asked for: a model whose capture failed stepped eagerly
    emit("train_step", device, batch_size=args.batch_size, compile=args.compile,
         compile_scope=args.compile_scope,
         cuda_graph=graphed,
         bf16=device.type == "cuda" and not args.no_bf16, bn_fp32=args.bn_fp32,
         cudnn_benchmark=args.cudnn_benchmark, momentum_cycle=args.momentum_cycle,
         sgd=args.sgd, distill_teacher="resnet18_bireal_float_twin" if args.distill else None,
         distill_over_student_time=distill_ratios,
         genotype=args.genotype, images_per_s=figures,
         binary_over_float_time=ratios)  # fmt: skip


if __name__ == "__main__":
    main()
