"""Does a finished fit give its device memory back? A diagnosis tool, not a timing.

A streams search on one H200 ran out of memory after ~130 graphed trials in one process,
with 114 GiB held in CUDA-graph private pools. This fits ``--fits`` small cell networks
one after another with Python's automatic collection off (as in a long search, where
full passes are rare) and prints the memory reserved after each, then what the last fit
left in reference cycles (gc.garbage by type) and the device tensors still reachable
after a full collection:

    python -m benchmarks.fit_memory [--fits 6] [--no-graph]
"""

from __future__ import annotations

import argparse
import collections
import gc
import random
import sys
import warnings

import torch

from benchmarks.common import emit
from bnn_nas.config import TrainConfig
from bnn_nas.data import load_cifar10_sample
from bnn_nas.space.network import CellNetwork
from bnn_nas.space.search_space import load_search_space
from bnn_nas.train import fit, resolve_device

MB = 2**20


def device_tensors(device: torch.device) -> list[torch.Tensor]:
    """Every tensor on ``device`` that the collector can see."""
    found = []
    with warnings.catch_warnings():  # probing deprecated module attributes warns
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            try:
                if isinstance(obj, torch.Tensor) and obj.device == device:
                    found.append(obj)
            except Exception:  # some objects refuse isinstance probes
                continue
    return found


def largest_holders(tensors: list[torch.Tensor], count: int = 5) -> list[dict]:
    """The biggest live tensors and the types of what refers to them (one level up)."""
    biggest = sorted(tensors, key=lambda t: t.numel() * t.element_size(), reverse=True)[:count]
    ours = {id(tensors), id(biggest)}
    rows = []
    for t in biggest:
        referrers = [type(r).__name__ for r in gc.get_referrers(t) if id(r) not in ours]
        rows.append({"shape": list(t.shape), "dtype": str(t.dtype), "held_by": referrers[:6]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=6)
    parser.add_argument("--no-graph", action="store_true", help="eager steps")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    data = load_cifar10_sample()
    space = load_search_space("tiny")
    settings = TrainConfig(epochs=1, batch_size=100, cuda_graph=not args.no_graph)
    reserved = []
    gc.disable()
    try:
        for i in range(args.fits):
            if i == args.fits - 1:
                gc.collect()
                gc.set_debug(gc.DEBUG_SAVEALL)  # the last fit's cycles land in gc.garbage
            net = CellNetwork(space.random_sample(random.Random(i)), space, 10)
            fit(net, data.train, settings, device=device, seed=i,
                stats=data.train.channel_stats())  # fmt: skip
            del net
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                reserved.append(round(torch.cuda.memory_reserved() / MB, 1))
            print(f"fit {i}: reserved {reserved[-1] if reserved else '-'} MB", file=sys.stderr)
        gc.collect()
        cycles = collections.Counter(type(o).__name__ for o in gc.garbage).most_common(15)
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
        alive = device_tensors(device)
        alive_mb = round(sum(t.numel() * t.element_size() for t in alive) / MB, 1)
        holders = largest_holders(alive)
    finally:
        gc.enable()
    emit("fit_memory", device, graphed=not args.no_graph, reserved_mb=reserved,
         cycle_types_of_last_fit=cycles, device_tensors_alive=len(alive),
         device_tensor_mb=alive_mb, largest_and_their_holders=holders)  # fmt: skip


if __name__ == "__main__":
    main()
