"""``compile_scope: ops``: a cell network compiled op by op rather than as one graph.

Why: a whole cell network is one long graph for torch.compile (the searched 8 x 32
network: 1,621 operators forward and backward); its first step took 801 s to compile on a
2-core CPU, 326 s cell by cell and 102 s op by op (2026-12-01, /tmp timings of one
process on a loaded box; the GPU figures are in docs/benchmarks.md once measured). A
cell network's ops repeat in kind and shape, so op by op there are few small graphs. The
price: no fusion across ops, and the cells' sums, concats and the classifier run eagerly
(inside the CUDA graph where that is on, so without launch overhead).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from bnn_nas.config import TrainConfig


def regions_of(model: nn.Module, settings: TrainConfig) -> list[nn.Module]:
    """The modules compiled one by one for ``settings`` (none: compile whole, or not)."""
    regions = getattr(model, "regions", None)
    if not (settings.compile and settings.compile_scope == "ops" and callable(regions)):
        return []
    unique = {id(m): m for m in regions() if not isinstance(m, nn.Identity)}
    return list(unique.values())


@contextlib.contextmanager
def compiled_regions(regions: list[nn.Module], *, reset: bool = True) -> Iterator[None]:
    """Within: every region's forward is ``torch.compile`` of it (set on the instance, so
    the module, its parameters and state-dict keys stay as they are) with Dynamo's
    recompile limits raised to cover them; after: the plain forwards are back, so the
    trained network copies, saves and exports as one never compiled.

    The limits: every region of a kind shares its class's forward code, which Dynamo
    caches once per input shape and mode (training, evaluation); past its limit (8 per
    code object) later regions would run eagerly with only a log line."""
    if not regions:
        yield
        return
    if reset:  # a fresh cache per fit, as bnn_nas.train.trainer.compiled
        torch.compiler.reset()
    for region in regions:
        region.forward = torch.compile(region.forward)
    limit = 4 * len(regions)
    try:
        with torch._dynamo.config.patch(
            recompile_limit=max(8, limit), accumulated_recompile_limit=max(256, limit)
        ):
            yield
    finally:
        for region in regions:
            region.__dict__.pop("forward", None)
