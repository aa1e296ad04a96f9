"""How a search-size OPs limit carries over to the final network: for genotypes sampled
from a config's space, their OPs at the search size (the space's cells x channels) and at
the final size (the config's ``model`` cells x channels), the ratio between the two, and
the share of them under ``search.max_ops`` and under a final limit.

The search caps OPs at search size; the final network is what the limit is about (issue
21: no more than binary ResNet-18 xnor's 1.03e7). The ratio differs per genotype (float
parts scale otherwise than binary convs), so a search cap is safe when max_ops times the
largest ratio stays under the final limit.

    python -m benchmarks.ops_scale [--config configs/cifar.yaml] [--samples 40]
        [--final-limit 1.03e7] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

from benchmarks.common import emit
from bnn_nas.cli.options import load_run_config
from bnn_nas.config import ModelConfig
from bnn_nas.cost import count_cost
from bnn_nas.errors import BnnNasError
from bnn_nas.space.network import build_model
from bnn_nas.space.search_space import SearchSpace, load_search_space
from bnn_nas.train import resolve_device


@dataclass(frozen=True)
class Scale:
    search_ops: float
    final_ops: float

    @property
    def ratio(self) -> float:
        return self.final_ops / self.search_ops


def sampled_scales(
    space: SearchSpace, final: ModelConfig, samples: int, seed: int
) -> list[Scale]:
    """OPs at the space's size and at ``final``'s of ``samples`` genotypes drawn as a random
    controller would (seeded)."""
    rng = random.Random(seed)
    scales = []
    for _ in range(samples):
        genotype = space.random_sample(rng)
        small = count_cost(build_model(ModelConfig(), space, 10, genotype)).ops
        large = count_cost(build_model(final, space, 10, genotype)).ops
        scales.append(Scale(small, large))
    return scales


def summary(scales: list[Scale], max_ops: float | None, final_limit: float) -> dict:
    ratios = sorted(s.ratio for s in scales)
    finals = sorted(s.final_ops for s in scales)
    n = len(scales)
    figures = {
        "samples": n,
        "ratio_min": round(ratios[0], 3),
        "ratio_mean": round(sum(ratios) / n, 3),
        "ratio_max": round(ratios[-1], 3),
        "final_ops_min": finals[0],
        "final_ops_median": finals[n // 2],
        "share_under_final_limit": sum(f <= final_limit for f in finals) / n,
        "final_limit": final_limit,
    }
    if max_ops is not None:
        admitted = [s for s in scales if s.search_ops <= max_ops]
        figures |= {
            "max_ops": max_ops,
            "share_under_max_ops": len(admitted) / n,
            "admitted_over_final_limit": sum(s.final_ops > final_limit for s in admitted),
            "max_ops_times_ratio_max": round(max_ops * ratios[-1]),
        }
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cifar.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument(
        "--final-limit", type=float, default=1.03e7,
        help="OPs limit of the final network (default: ResNet-18 xnor's)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.samples < 1:
        parser.error("--samples must be at least 1")
    try:  # a bad config or --set: its one line, as bnn-nas's commands print it
        config = load_run_config(args.config, (), tuple(args.overrides))
    except BnnNasError as err:
        raise SystemExit(err.line()) from None
    space = load_search_space(config.search_space)
    final = ModelConfig(cells=config.model.cells, channels=config.model.channels)
    scales = sampled_scales(space, final, args.samples, args.seed)
    figures = summary(scales, config.search.max_ops, args.final_limit)
    network = space.network  # what build_model falls back to where final names no size
    final_size = f"{final.cells or network.cells} x {final.channels or network.channels}"
    emit("ops_scale", resolve_device("cpu"), config=args.config, final_size=final_size, **figures)
    return figures


if __name__ == "__main__":
    main()
