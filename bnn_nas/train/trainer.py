"""The training loop: fit a model on device-resident data, evaluate; resume through callbacks.

One loop serves the short trainings of a search (no checkpoints, score at the end) and
the long final training (per-epoch evaluation, checkpoints, exact resume). The loop
trains and measures; checkpoints, metrics.csv, the progress bar and TensorBoard are
callbacks (bnn_nas/train/callbacks.py). Batches are a pure function of (seed, epoch,
batch), and every RNG state is checkpointed, so a resumed run continues exactly as if it
had never stopped.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from bnn_nas.config import MixConfig, TrainConfig
from bnn_nas.data.arrays import ImageSet
from bnn_nas.data.loader import DeviceLoader
from bnn_nas.errors import ConfigError
from bnn_nas.space.cell_parts import with_auxiliary_loss
from bnn_nas.train.callbacks import Callback, FitRun, OnEpoch
from bnn_nas.train.compile_scope import compiled_regions, regions_of
from bnn_nas.train.distill_loss import DistillLoss
from bnn_nas.train.metrics import EpochMetrics
from bnn_nas.train.mix_loss import MixCrossEntropy
from bnn_nas.train.optim import CosineSchedule, build_optimizer
from bnn_nas.train.seeding import seed_everything
from bnn_nas.train.step import bf16_autocast, graph_capturable, make_step

__all__ = [
    "EpochMetrics",
    "StageStart",
    "TrainingDivergedError",
    "evaluate",
    "fit",
    "resolve_device",
]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the run cannot go on."""


def resolve_device(spec: str, setting: str = "device", cpu: str = "cpu") -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU. ``setting`` (and
    its CPU value ``cpu``) is what a CUDA-less machine's error tells the user to set: in
    the config or with ``--set``, wherever the CUDA device came from."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"device {str(spec)[:40]!r} is not valid; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"{setting} {spec} asked for but CUDA is not available; set {setting}: {cpu} "
            f"in the config or --set {setting}={cpu}"
        )
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ConfigError(
                f"device {spec} does not exist: this machine has {count} GPU(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    return device


def _loader(
    data: ImageSet,
    batch_size: int,
    device: torch.device,
    *,
    augment: bool,
    shuffle: bool,
    seed: int,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    channels_last: bool,
    cutout: int = 0,
    mix: MixConfig | None = None,
) -> DeviceLoader:
    mean, std = stats
    return DeviceLoader(
        data,
        batch_size=batch_size,
        device=device,
        augment=augment,
        mean=mean,
        std=std,
        shuffle=shuffle,
        drop_last=shuffle,
        seed=seed,
        cutout=cutout,
        mix=None if mix is None else mix.kind,
        mix_alpha=1.0 if mix is None else mix.alpha,
        mix_prob=1.0 if mix is None else mix.prob,
        channels_last=channels_last,
    )


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, bf16: bool = True) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over one pass of ``loader``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for x, y in loader.epoch(0):
        with bf16_autocast(device, bf16):
            logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
        count += len(y)
    model.train(was_training)
    return float(loss_sum) / max(count, 1), float(correct) / max(count, 1)


@dataclass(frozen=True)
class StageStart:
    """Where a fit starts in a staged training (final.stages): its ``stage`` (written into
    the checkpoint and the metrics), ``epoch_offset`` (this stage's epochs, and its
    batches' seeds, are numbered after the stages before) and ``history`` (the metrics
    of the stages before)."""

    stage: int = 0
    epoch_offset: int = 0
    history: tuple[EpochMetrics, ...] = ()


def fit(
    model: nn.Module,
    train_set: ImageSet,
    settings: TrainConfig,
    *,
    device: torch.device,
    seed: int,
    stats: tuple[tuple[float, ...], tuple[float, ...]],
    eval_set: ImageSet | None = None,
    eval_every: int = 1,
    teacher: nn.Module | None = None,
    callbacks: Sequence[Callback] = (),
    on_epoch: Callable[[list[EpochMetrics]], None] | None = None,
    start: StageStart = StageStart(),
) -> list[EpochMetrics]:
    """Train ``model`` for ``settings.epochs``; returns the metrics of every epoch.

    ``eval_every``: evaluate on ``eval_set`` every that many epochs (0: only after the
    last). ``callbacks`` are called in order (bnn_nas/train/callbacks.py: a
    :class:`~bnn_nas.train.callbacks.Checkpoint` saves and resumes); ``on_epoch``, last
    after each epoch, receives the history so far (resumed epochs included).

    Distillation (``settings.distill``): ``teacher`` is the frozen network whose logits
    the loss takes; the caller loads it (:func:`bnn_nas.train.distill.teacher_for`).
    Staged training (one call per stage, :func:`bnn_nas.train.stages.fit_stages`):
    ``start`` says where this stage begins; a resumed checkpoint must be of this stage
    and brings its own history.
    """
    if settings.distill is not None and teacher is None:
        raise ConfigError(
            "settings.distill is set but no teacher was given; load it with "
            "bnn_nas.train.distill.teacher_for(settings, train_set, device)"
        )
    if teacher is not None and settings.distill is None:
        raise ConfigError("a teacher was given but settings.distill is not set")
    hooks = [*callbacks, *([OnEpoch(on_epoch)] if on_epoch is not None else [])]
    seed_everything(seed)
    channels_last = settings.channels_last and device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train_loader = _loader(
        train_set, settings.batch_size, device, augment=settings.augment, shuffle=True,
        seed=seed, stats=stats, channels_last=channels_last, cutout=settings.cutout,
        mix=settings.mix,
    )  # fmt: skip
    eval_loader = None
    if eval_set is not None:
        eval_loader = _loader(
            eval_set, settings.eval_batch_size, device, augment=False, shuffle=False,
            seed=seed, stats=stats, channels_last=channels_last,
        )  # fmt: skip
    # CUDA graphs replay fixed values: a drop-path rate that ramps per epoch rules them out
    use_graph = (
        settings.cuda_graph
        and settings.drop_path == 0
        and graph_capturable(model, device)
    )
    optimizer = build_optimizer(model, settings, capturable=use_graph)
    run = FitRun(
        model, optimizer, CosineSchedule(optimizer, settings, len(train_loader)), settings,
        device, start.stage, start.epoch_offset, list(start.history),
    )  # fmt: skip
    for hook in hooks:
        hook.setup(run)
    regions = regions_of(model, settings)  # compile_scope: ops
    step = _Step(model, settings, device, use_graph, teacher, whole=not regions)
    for hook in hooks:
        hook.on_start(run)
    finished = False
    with compiled_regions(regions):  # compile_scope: ops (nothing otherwise)
        try:
            for local in range(run.start, settings.epochs):
                metrics = _train_epoch(run, step, train_loader, local)
                if eval_loader is not None and (
                    run.is_last(local) or (eval_every and (local + 1) % eval_every == 0)
                ):
                    eval_loss, eval_acc = evaluate(model, eval_loader, bf16=settings.bf16)
                    metrics = replace(metrics, eval_loss=eval_loss, eval_acc=eval_acc)
                run.history.append(metrics)
                for hook in hooks:
                    hook.on_epoch(run, local, metrics)
            finished = True
        finally:  # also when a trial is cancelled or diverges
            try:
                step.release(finished)
            finally:
                for hook in hooks:
                    hook.on_end(run, finished)
                if device.type == "cuda":
                    # a search fits thousands of models in one process (an H200 ran out of
                    # memory after ~130 graphed trials): should anything of a fit sit in a
                    # reference cycle, its device memory (data, weights) would wait for the
                    # collector's rare full passes; collecting here keeps at most one fit's worth
                    gc.collect()
    return run.history


def compiled(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` from a clean Dynamo cache.

    Why: every cell network runs the same ``forward`` code, so Dynamo keeps one cache entry
    per network it has compiled and, past its recompile limit (8), runs every later one
    eagerly with only a log warning: a process training search candidates one after the
    other would stop compiling at the ninth. A fit trains one network, so the entries of
    earlier fits are dead: ``torch.compiler.reset`` drops them (and anything else compiled
    in this process; the streams executor, whose threads share the process, refuses
    ``train.compile``)."""
    torch.compiler.reset()
    return torch.compile(model)


class _Step:
    """The training step of one fit (bnn_nas/train/step.py), made at the first batch (a
    CUDA graph is captured on it): the model compiled when asked, the loss with
    distillation and DARTS's auxiliary head; every cross-entropy takes a mixed batch's
    targets (train/final.mix: lam * CE(labels) + (1 - lam) * CE(partners))."""

    def __init__(
        self,
        model: nn.Module,
        settings: TrainConfig,
        device: torch.device,
        use_graph: bool,
        teacher: nn.Module | None,
        whole: bool = True,
    ) -> None:
        self.model, self.settings, self.device = model, settings, device
        self.use_graph, self.teacher = use_graph, teacher
        # whole: compile the forward as one graph (else its regions are, or nothing is)
        self.forward = compiled(model) if settings.compile and whole else model
        criterion: nn.Module = MixCrossEntropy(label_smoothing=settings.label_smoothing)
        if teacher is not None:
            criterion = DistillLoss(settings.distill, settings.label_smoothing)
        # DARTS's auxiliary head (network.auxiliary_head): its cross-entropy joins with its weight
        aux_loss = MixCrossEntropy(label_smoothing=settings.label_smoothing)
        self.criterion = with_auxiliary_loss(criterion, model, settings.auxiliary_weight, aux_loss)
        self.made: Any = None

    def __call__(self, optimizer: Any, x: torch.Tensor, y: torch.Tensor) -> Any:
        if self.made is None:
            s = self.settings
            self.made = make_step(
                self.model, self.forward, optimizer, self.criterion, bf16=s.bf16,
                grad_clip=s.grad_clip, device=self.device, cuda_graph=self.use_graph,
                first_batch=(x, y), teacher=self.teacher,
            )  # fmt: skip
        self.made(x, y)
        return self.made

    def release(self, finished: bool) -> None:
        if self.made is None:
            return
        try:
            self.made.release()
        except Exception:
            if finished:  # else the error that ended training is the one to see
                raise


def _train_epoch(run: FitRun, step: _Step, loader: DeviceLoader, local: int) -> EpochMetrics:
    """Epoch ``local`` of ``run`` trained: its metrics, without evaluation."""
    model, settings = run.model, run.settings
    epoch = run.epoch_offset + local
    if hasattr(model, "drop_path_prob"):
        model.drop_path_prob = settings.drop_path * local / settings.epochs
    model.train()
    tic = time.perf_counter()
    seen = 0
    lr = run.scheduler.lr
    made = None
    for x, y in loader.epoch(epoch):
        made = step(run.optimizer, x, y)
        run.scheduler.step()
        seen += len(x)  # y: labels, or a mixed batch's MixedTargets
    assert made is not None
    train_loss = float(made.loss_sum) / seen  # one sync per epoch
    train_acc = float(made.correct) / seen
    made.reset()
    if not math.isfinite(train_loss):
        raise TrainingDivergedError(f"training loss became {train_loss} in epoch {epoch}")
    if run.device.type == "cuda":  # this stream only: other threads' trials run on their own
        torch.cuda.current_stream(run.device).synchronize()
    seconds = time.perf_counter() - tic
    return EpochMetrics(
        epoch=epoch, lr=lr, train_loss=train_loss, train_acc=train_acc, eval_loss=None,
        eval_acc=None, seconds=seconds, images_per_s=seen / seconds, stage=run.stage,
    )  # fmt: skip
