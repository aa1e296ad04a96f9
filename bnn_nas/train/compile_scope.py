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
from collections.abc import Callable, Iterator
from typing import Any

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


# Dynamo's cache is process-wide; what compiled_regions knows of it since it last emptied
# it: the regions compiled into it, and Dynamo's count of frames it gave up on then
_since_reset = {"regions": 0, "failed_frames": 0}


@contextlib.contextmanager
def compiled_regions(regions: list[nn.Module], *, reset: bool = False) -> Iterator[None]:
    """Within: every region's forward in training is ``torch.compile`` of it (set on the
    instance, so the module, its parameters and state-dict keys stay as they are) with
    Dynamo's recompile limits raised to cover them; after: the plain forwards are back, so
    the trained network copies, saves and exports as one never compiled.

    Dynamo's cache is kept from one call to the next (``reset``: emptied first), so a
    search's later candidates reuse the graphs of earlier ones: Dynamo guards a graph on
    what it depends on (the region's class and settings such as stride or padding, input
    shapes, grad mode, the backend), not on the module instance, whose parameters are
    graph inputs. configs/cifar.yaml's space at 8 cells x 16 channels: the first candidate
    compiled 37 training graphs, the next three 7, 0 and 2 (31, 28 and 33 with a reset per
    fit); of 24 candidates none after the fifth had a new graph (benchmarks/compile_reuse,
    2026-12-01, CPU, before graphs were static). The cache is emptied anyway when Dynamo
    gave up on a frame since the last reset (a failed compile, a recompile limit hit): it
    runs that code eagerly until one.

    Graphs are static (``dynamic=False``): a shared forward seen at a second shape gets a
    graph of its own instead of Dynamo's automatic switch to one shape-generic graph. So a
    reused graph is the one a fresh compile makes for that shape, so what a candidate trains
    with does not depend on the candidates before (with the default, a CPU run under
    Inductor on 2 threads gave weight norms 2e-4 apart after 7 steps with the cache kept and
    emptied; put down to shape-generic graphs, not proven; not re-measured), and Inductor's
    kernels are specialised to the shapes, as a whole-network compile's are (the session-11
    GPU logs of ops scope showed symbolic-shape warnings from the 17th graph on).

    Only training runs the graphs: a forward in eval mode or without grad (a fit's
    evaluation between epochs) is the plain one, so it is the eager evaluation exactly, as
    under ``compile_scope: network``. Why: the graphs guard on the training flag (batch
    norm) and grad mode, so evaluation compiled as many graphs again (H200, 8 x 16: 31.5 s
    beside the first candidate's 145 s warm-up) for forwards cheap beside training's.

    The limits: every region of a kind shares its class's forward code, which Dynamo
    caches once per input shape; past its limit (8 per code object) later regions would
    run eagerly with only a log line. They allow 4 entries for every region compiled since
    the last reset."""
    if not regions:
        yield
        return
    if reset or _failed_frames() != _since_reset["failed_frames"]:
        torch.compiler.reset()
        _since_reset.update(regions=0, failed_frames=_failed_frames())
    for region in regions:
        region.forward = _when_training(region, torch.compile(region.forward, dynamic=False))
    _since_reset["regions"] += len(regions)
    limit = 4 * _since_reset["regions"]
    try:
        with torch._dynamo.config.patch(
            recompile_limit=max(8, limit), accumulated_recompile_limit=max(256, limit)
        ):
            yield
    finally:
        for region in regions:
            region.__dict__.pop("forward", None)


def _when_training(region: nn.Module, compiled: Callable[..., Any]) -> Callable[..., Any]:
    """``region``'s forward: ``compiled`` in training mode with grad, else the plain one."""
    plain = region.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        if region.training and torch.is_grad_enabled():
            return compiled(*args, **kwargs)
        return plain(*args, **kwargs)

    return forward


def _failed_frames() -> int:
    """Frames Dynamo did not compile in this process (its counters survive a reset)."""
    frames = torch._dynamo.utils.counters["frames"]
    return frames["total"] - frames["ok"]
