"""The training step, eager or captured whole in one CUDA graph.

A small candidate's step is bound by kernel launches, not by the GPU (docs/benchmarks.md):
replaying forward, backward and the optimiser update as one CUDA graph removes hundreds
of launches per step. Both variants accumulate the epoch's loss and correct predictions
on the device, so an epoch costs one host sync.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from bnn_nas.binary.quantizers import StochasticSign
from bnn_nas.data.mix import MixedTargets
from bnn_nas.train.mix_loss import majority_labels


def bf16_autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, nothing elsewhere.

    No weight-cast cache: a captured graph must recompute the casts at every replay.
    """
    if uses_bf16(device, enabled):
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


def uses_bf16(device: torch.device, enabled: bool) -> bool:
    """Whether a training with ``bf16: enabled`` on ``device`` runs under bf16 autocast:
    on CUDA only (on a CPU the setting changes nothing). On an AVX2-only CPU bf16 was
    ~10x slower; on one with ``avx512_bf16`` a step took half the time but the quickstart
    search was not faster (docs/benchmarks.md, "bf16 autocast on the CPU")."""
    return enabled and device.type == "cuda"


def precision_note(device: torch.device, enabled: bool) -> str:
    """The line `train` and `search` print to say which precision runs."""
    if uses_bf16(device, enabled):
        return "precision: bf16 autocast (CUDA)"
    if enabled:
        return f"precision: float32 on {device.type} (bf16 autocast is used on CUDA only)"
    return "precision: float32 (bf16 autocast off)"


class EagerStep:
    """forward + backward + update, op by op.

    With a ``teacher`` (distillation), its forward runs first on the same batch, without
    gradients, and ``criterion`` is called as ``criterion(logits, y, teacher_logits)``.
    ``y``: the labels, or a mixed batch's :class:`~bnn_nas.data.mix.MixedTargets` (mixup,
    CutMix; the criterion takes it, accuracy counts the label with the larger share).
    """

    def __init__(
        self,
        model: nn.Module,
        forward: Callable[[Tensor], Tensor],
        optimizer: torch.optim.Optimizer,
        criterion: nn.Module,
        *,
        bf16: bool,
        grad_clip: float | None,
        device: torch.device,
        teacher: nn.Module | None = None,
    ) -> None:
        self.teacher = teacher
        self.model, self.forward, self.optimizer, self.criterion = (
            model,
            forward,
            optimizer,
            criterion,
        )
        self.bf16, self.grad_clip, self.device = bf16, grad_clip, device
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)

    def _step(self, x: Tensor, y: Tensor | MixedTargets) -> None:
        with bf16_autocast(self.device, self.bf16):
            if self.teacher is not None:
                with torch.no_grad():
                    soft = self.teacher(x).float()
            logits = self.forward(x)
            if self.teacher is not None:
                loss = self.criterion(logits.float(), y, soft)
            else:
                loss = self.criterion(logits.float(), y)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip, foreach=True)
        self.optimizer.step()
        self.loss_sum += loss.detach() * x.shape[0]
        self.correct += (logits.detach().argmax(dim=1) == majority_labels(y)).sum()

    def __call__(self, x: Tensor, y: Tensor | MixedTargets) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self._step(x, y)

    def reset(self) -> None:
        self.loss_sum.zero_()
        self.correct.zero_()

    def release(self) -> None:
        """Free what the step holds beyond the model; it is not called again after this."""


def graph_capturable(model: nn.Module, device: torch.device) -> bool:
    """CUDA graphs need CUDA and no private RNG generators (a torch.compile'd forward is
    captured too: it traces the binarizers as ATen ops, bnn_nas/binary/compiled_sign.py)."""
    if device.type != "cuda":
        return False
    return not any(isinstance(m, StochasticSign) and m.seed is not None for m in model.modules())


class _Snapshot:
    """Weights, buffers, optimiser state and CUDA RNG, to undo warm-up steps in place."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, device) -> None:
        self.model, self.optimizer, self.device = model, optimizer, device
        self.model_state = {k: v.clone() for k, v in model.state_dict().items()}
        self.optimizer_state = {
            id(p): {k: v.clone() if isinstance(v, Tensor) else v for k, v in state.items()}
            for p, state in optimizer.state.items()
        }
        self.rng = torch.cuda.get_rng_state(device)

    @torch.no_grad()
    def restore(self) -> None:
        for key, value in self.model.state_dict().items():
            value.copy_(self.model_state[key])
        for p, state in self.optimizer.state.items():
            saved = self.optimizer_state.get(id(p), {})
            for key, value in state.items():
                if isinstance(value, Tensor):
                    if key in saved:
                        value.copy_(saved[key])
                    else:
                        value.zero_()  # a fresh optimiser: as if never stepped
        torch.cuda.set_rng_state(self.rng, self.device)


def _capture_stream(device: torch.device) -> torch.cuda.Stream:
    """Where warm-up and capture run: the current stream unless it is the default one.

    The streams executor gives each trial thread its own stream; capturing there keeps
    the capture off every other thread's stream. A new stream would come from PyTorch's
    round-robin pool (32 per device) and, after enough trials, be a stream another thread
    is launching on: that thread's kernels would be captured into this graph instead of
    running. ``thread_local`` capture mode lets the other threads go on meanwhile.
    """
    current = torch.cuda.current_stream(device)
    if current != torch.cuda.default_stream(device):
        return current
    # one side stream per thread and device, reused by every fit: PyTorch keeps a cuBLAS
    # and a cuBLASLt workspace (tens of MiB on Hopper) for every stream they ran on
    streams = _SIDE_STREAMS.__dict__.setdefault("by_device", {})
    if current.device_index not in streams:
        streams[current.device_index] = torch.cuda.Stream(device)
    return streams[current.device_index]


_SIDE_STREAMS = threading.local()  # a cache of streams, not a setting

# Held through every capture and through every return of graph memory, so the two never
# overlap (give_back_graph_memory says why). Captures in threads take turns: a capture is
# one step, so a trial waits at most for the few other threads' captures, once.
_CAPTURE_LOCK = threading.Lock()


def give_back_graph_memory() -> None:
    """Return the pools of released graphs (and other unused cached memory) to the GPU.

    ``graph.reset()`` only marks a graph's private pool freeable. No later capture reuses
    it (each graph gets a pool of its own), and PyTorch's caching allocator cudaFrees it
    only in ``empty_cache`` or when an allocation would otherwise fail, and the allocator
    skips that retry while any capture is underway on the GPU. A capture's memory comes
    from new segments, so the allocation that runs out is most often a new trial's
    capture, the one time nothing can be freed: finished trials' pools piled up (73 GiB
    in private pools after 72 trials on 8 streams of an H200, 2026-12-01) and captures
    failed. So a released graph's memory goes back at once, never while a capture is
    underway here (PyTorch versions whose ``empty_cache`` syncs all events assert that
    none is): both hold ``_CAPTURE_LOCK``. This also frees the common pool's unused
    cache; the next allocations of trials still running cudaMalloc it again.
    """
    with _CAPTURE_LOCK:
        try:
            torch.cuda.empty_cache()  # nothing where CUDA was never used
        except RuntimeError as err:  # e.g. a failed capture left the allocator capturing
            warnings.warn(f"could not give CUDA graph memory back ({err})", stacklevel=2)


class GraphedStep(EagerStep):
    """The same step captured once and replayed: static input buffers, no host syncs.

    Capture needs a few warm-up steps; they are undone (weights, BN statistics, optimiser
    state and RNG restored in place) so training is the same as without the graph.
    A mixed batch's targets are static too: :class:`~bnn_nas.data.mix.MixedTargets` clones
    and copies in place like a label tensor, its lambda a device tensor the graph reads.
    """

    def __init__(
        self, *args, x_like: Tensor, y_like: Tensor | MixedTargets, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.static_x = x_like.clone()
        self.static_y = y_like.clone()  # a label tensor or MixedTargets: both copy_ in place
        snapshot = _Snapshot(self.model, self.optimizer, self.device)
        try:
            side = _capture_stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.stream(side):
                for _ in range(3):
                    super().__call__(self.static_x, self.static_y)
                self.optimizer.zero_grad(set_to_none=True)
                with _CAPTURE_LOCK:  # no memory is given back while this captures
                    graph.capture_begin(capture_error_mode="thread_local")
                    try:
                        self._step(self.static_x, self.static_y)
                    finally:
                        graph.capture_end()
            torch.cuda.current_stream(self.device).wait_stream(side)
        finally:
            snapshot.restore()
            self.reset()
        self.graph = graph

    def __call__(self, x: Tensor, y: Tensor | MixedTargets) -> None:
        self.static_x.copy_(x, non_blocking=True)
        self.static_y.copy_(y, non_blocking=True)
        self.graph.replay()

    def release(self) -> None:
        """Give the graph's private memory pool back to the GPU now.

        A search trains thousands of graphed candidates in one process (8 streams on an
        H200 ran out of memory after ~130 trials, 114 GiB held in graph pools). The
        gradients live in the pool: they are dropped first, as nothing allocated in the
        pool may stay alive if the pool is to be freed. ``graph.reset()`` alone only
        marks the pool freeable; :func:`give_back_graph_memory` frees it.
        """
        self.optimizer.zero_grad(set_to_none=True)
        self.graph.reset()
        del self.static_x, self.static_y
        give_back_graph_memory()


def make_step(
    model: nn.Module,
    forward: Callable[[Tensor], Tensor],
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    *,
    bf16: bool,
    grad_clip: float | None,
    device: torch.device,
    cuda_graph: bool,
    first_batch: tuple[Tensor, Tensor | MixedTargets],
    teacher: nn.Module | None = None,
) -> EagerStep:
    """A graphed step when asked for and possible, else eager (with a warning if it failed).

    ``teacher``: a frozen network in eval mode whose logits ``criterion`` takes third; its
    forward is part of the step (and of the graph).
    """
    common = {"bf16": bf16, "grad_clip": grad_clip, "device": device, "teacher": teacher}
    if cuda_graph:
        try:
            x, y = first_batch
            return GraphedStep(model, forward, optimizer, criterion, x_like=x, y_like=y, **common)
        except RuntimeError as err:  # an op that cannot be captured: train eagerly
            warnings.warn(f"CUDA graph capture failed ({err}); training eagerly", stacklevel=2)
        # the failed graph went with err's traceback: its pool and the gradients the
        # capture made go back (an out-of-memory capture left the GPU full of them)
        optimizer.zero_grad(set_to_none=True)
        give_back_graph_memory()
    return EagerStep(model, forward, optimizer, criterion, **common)
