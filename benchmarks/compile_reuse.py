"""Search candidates trained one after another in one process under torch.compile: does
``compile_scope: ops`` reuse the graphs of earlier candidates, and what does a warm-up cost?

Variants, each in a child process of its own with an empty Inductor cache directory (so no
variant, and no earlier run, warms another's on-disk FX graph / AOTAutograd caches):
  reset    compile_scope ops with ``torch.compiler.reset()`` at every fit (as the trainer did
           before 2026-12-01; the on-disk caches this process fills still hit)
  keep     compile_scope ops as the trainer runs it: Dynamo's cache kept from one candidate
           to the next (bnn_nas.train.compile_scope.compiled_regions)
  network  the whole network compiled as the trainer does (reset per fit)
  eager    nothing compiled
The candidates are the config's search space sampled as a controller's first proposals
(``random_sample``), seeded as trials are. Per candidate: warm-up seconds (the step made and
its first --warm-steps steps; less those steps at the steady speed: compile seconds), the
first evaluation forward's seconds (eval mode, no grad: a trial scores its network), steady
images/s over --steps, the graphs Dynamo compiled, its recompiles by the guard that failed,
Inductor's FX graph cache hits, and the trained weights' norm (equal across variants: the
same training). Synthetic data on the device, the trainer's step (bnn_nas.train.step, a
CUDA graph on a GPU).

    python -m benchmarks.compile_reuse [--config configs/cifar.yaml] [--candidates 4]
        [--cells 8] [--channels 16] [--batch-size 256] [--steps 20] [--warm-steps 2]
        [--variants reset,keep,network] [--network-candidates 2] [--backend inductor]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import replace

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from benchmarks.common import emit
from bnn_nas.search.evaluator import trial_seed
from bnn_nas.space.network import CellNetwork
from bnn_nas.space.search_space import load_search_space
from bnn_nas.train import resolve_device
from bnn_nas.train.compile_scope import compiled_regions, regions_of
from bnn_nas.train.optim import build_optimizer
from bnn_nas.train.step import bf16_autocast, graph_capturable, make_step

VARIANTS = ("reset", "keep", "network", "eager")
# the guard a recompile failed first, by kind (the text of torch._dynamo.guards' reasons)
GUARD_KINDS = (("size mismatch", "shape"), ("GLOBAL_STATE", "grad_mode"),
               ("check_type_id", "module_type"), ("training", "training"),
               ("_modules", "module_structure"), (" == ", "attribute"))  # fmt: skip


class Recompiles(logging.Handler):
    """Counts Dynamo's recompiles by the kind of their first failed guard."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.kinds: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        failed = [ln.strip()[2:] for ln in record.getMessage().splitlines()
                  if ln.strip().startswith("- ") and "/" in ln.split(":")[0]]  # fmt: skip
        first = failed[0] if failed else ""
        self.kinds[next((k for text, k in GUARD_KINDS if text in first), "other")] += 1


def count_recompiles() -> Recompiles:
    torch._logging.set_logs(recompiles=True)
    log = logging.getLogger("torch._dynamo.guards.__recompiles")
    log.propagate = False  # counted here, not printed
    handler = Recompiles()
    log.addHandler(handler)
    return handler


def candidates(config_path: str, cells: int, channels: int, n: int, seed: int):
    from bnn_nas.cli.options import load_run_config  # the config with its plugins loaded

    sizes = (f"search_space.network.cells={cells}", f"search_space.network.channels={channels}")
    config = load_run_config(config_path, (), sizes)
    space = load_search_space(config.search_space)
    rng = random.Random(seed)
    genotypes = [space.random_sample(rng) for _ in range(n)]
    return config, space, genotypes


def run_variant(args: argparse.Namespace) -> list[dict]:
    """Every candidate trained in this process under ``args.variant``; their figures."""
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    config, space, genotypes = candidates(args.config, args.cells, args.channels,
                                          args.candidates, args.seed)  # fmt: skip
    settings = replace(config.train, compile=args.variant != "eager",
                       compile_scope="network" if args.variant == "network" else "ops")  # fmt: skip
    real_compile = torch.compile
    if args.backend != "inductor":
        torch.compile = lambda f, **kw: real_compile(f, **kw, backend=args.backend)  # type: ignore
    recompiles = count_recompiles()
    data = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch_size, 3, 32, 32, generator=data).to(device)
    y = torch.randint(0, 10, (args.batch_size,), generator=data).to(device)
    if cuda and settings.channels_last:
        x = x.to(memory_format=torch.channels_last)
    rows = []
    for i, genotype in enumerate(genotypes):
        torch.manual_seed(trial_seed(args.seed, genotype))
        model = CellNetwork(genotype, space, 10).to(device).train()
        if cuda and settings.channels_last:
            model.to(memory_format=torch.channels_last)
        regions = regions_of(model, settings)
        forward = model
        if settings.compile and not regions:
            torch.compiler.reset()  # as bnn_nas.train.trainer.compiled
            forward = torch.compile(model)
        graph = settings.cuda_graph and graph_capturable(model, device)
        optimizer = build_optimizer(model, settings, capturable=graph)
        before = defaultdict(Counter, {k: Counter(v) for k, v in counters.items()})
        recompiles.kinds.clear()
        with compiled_regions(regions, reset=args.variant == "reset"):
            tic = time.perf_counter()
            step = make_step(model, forward, optimizer, torch.nn.CrossEntropyLoss(),
                             bf16=settings.bf16, grad_clip=None, device=device,
                             cuda_graph=graph, first_batch=(x, y))  # fmt: skip
            for _ in range(args.warm_steps):
                step(x, y)
            sync(device)
            warm_up = time.perf_counter() - tic
            train_graphs = counters["stats"]["unique_graphs"] - before["stats"]["unique_graphs"]
            tic = time.perf_counter()
            for _ in range(args.steps):
                step(x, y)
            sync(device)
            speed = args.batch_size * args.steps / (time.perf_counter() - tic)
            step.release()
            model.eval()
            tic = time.perf_counter()
            with torch.no_grad(), bf16_autocast(device, settings.bf16):  # as evaluate()
                model(x)
            sync(device)
            eval_warm_up = time.perf_counter() - tic
        new = defaultdict(Counter, {k: Counter(v) - before[k] for k, v in counters.items()})
        norm = torch.cat([p.detach().double().flatten() for p in model.parameters()]).norm()
        rows.append({
            "candidate": i + 1, "genotype_hash": genotype.hash[:8], "regions": len(regions),
            "warm_up_s": round(warm_up, 2), "eval_warm_up_s": round(eval_warm_up, 2),
            # the warm-up less its steps at the steady speed: what compiling cost
            "compile_s": round(warm_up - args.warm_steps * args.batch_size / speed, 2),
            "images_per_s": round(speed), "graphs_train": train_graphs,
            "graphs_eval": new["stats"]["unique_graphs"] - train_graphs,
            "recompiles": dict(recompiles.kinds),
            "fx_cache_hits": new["inductor"]["fxgraph_cache_hit"],
            "fx_cache_misses": new["inductor"]["fxgraph_cache_miss"],
            "weights_norm": float(norm),
        })  # fmt: skip
        print(f"{args.variant} candidate {i + 1}: {json.dumps(rows[-1])}", file=sys.stderr,
              flush=True)  # fmt: skip
        if args.variant == "network" and i + 1 >= args.network_candidates:
            break
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cifar.yaml")
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="steady steps timed")
    parser.add_argument("--warm-steps", type=int, default=2, help="first steps (warm-up)")
    parser.add_argument("--variants", default="reset,keep,network")
    parser.add_argument("--network-candidates", type=int, default=2,
                        help="candidates of the network variant (long compiles)")  # fmt: skip
    parser.add_argument("--backend", default="inductor",
                        help="torch.compile's (eager: Dynamo's graphs only)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # the child's
    args = parser.parse_args()
    if args.variant:  # a child: one variant, its rows as one JSON line
        print(json.dumps(run_variant(args)), flush=True)
        return
    figures = {}
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            parser.error(f"--variants: {variant!r} is not one of {', '.join(VARIANTS)}")
        with tempfile.TemporaryDirectory(prefix="compile_reuse_") as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            child = [*sys.argv[1:], "--variant", variant]
            done = subprocess.run([sys.executable, "-m", "benchmarks.compile_reuse", *child],
                                  env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
        if done.returncode:
            sys.exit(f"variant {variant} failed (exit {done.returncode})")
        figures[variant] = json.loads(done.stdout.strip().splitlines()[-1])
    emit("compile_reuse", resolve_device(args.device), config=args.config,
         cells=args.cells, channels=args.channels, batch_size=args.batch_size,
         steps=args.steps, warm_steps=args.warm_steps, backend=args.backend,
         variants=figures)  # fmt: skip


if __name__ == "__main__":
    main()
