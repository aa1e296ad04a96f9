"""The training loop: fit a model on device-resident data, evaluate, checkpoint, resume.

One loop serves the short trainings of a search (no checkpoints, score at the end) and
the long final training (per-epoch evaluation, checkpoints, exact resume). Batches are a
pure function of (seed, epoch, batch), and every RNG state is checkpointed, so a resumed
run continues exactly as if it had never stopped.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from bnn_nas.config import TrainConfig
from bnn_nas.data.arrays import ImageSet
from bnn_nas.data.loader import DeviceLoader
from bnn_nas.errors import CheckpointError, ConfigError
from bnn_nas.space.cell_parts import with_auxiliary_loss
from bnn_nas.train.checkpoint import (
    check_training_checkpoint,
    load_checkpoint,
    restoring,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bnn_nas.train.distill_loss import DistillLoss
from bnn_nas.train.optim import CosineSchedule, build_optimizer
from bnn_nas.train.seeding import seed_everything
from bnn_nas.train.step import bf16_autocast, graph_capturable, make_step


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the run cannot go on."""


@dataclass(frozen=True)
class EpochMetrics:
    """What one epoch measured; ``eval_*`` is None on epochs without evaluation."""

    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    eval_loss: float | None
    eval_acc: float | None
    seconds: float
    images_per_s: float
    stage: int = 0  # staged training (final.stages): the stage this epoch belongs to

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU."""
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
        raise ConfigError(f"device {spec} asked for but CUDA is not available; use device: cpu")
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
    checkpoint: Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[list[EpochMetrics]], None] | None = None,
    progress: bool = False,
    teacher: nn.Module | None = None,
    stage: int = 0,
    epoch_offset: int = 0,
    history: list[EpochMetrics] | None = None,
    on_start: Callable[[], None] | None = None,
    resume_state: dict | None = None,
) -> list[EpochMetrics]:
    """Train ``model`` for ``settings.epochs``; returns the metrics of every epoch.

    ``eval_every``: evaluate on ``eval_set`` every that many epochs (0: only after the
    last). ``on_epoch`` receives the history so far (resumed epochs included) after
    each epoch's checkpoint; ``on_start`` is called once the setup (a resumed checkpoint
    included) is done, before the first epoch. ``checkpoint``: file written every
    ``settings.checkpoint_every`` epochs and at the end; with ``resume`` an existing one
    is continued from.

    Distillation (``settings.distill``): ``teacher`` is the frozen network whose logits
    the loss takes; the caller loads it (:func:`bnn_nas.train.distill.teacher_for`). Staged
    training (one call per stage): ``stage`` is written into the checkpoint and the
    metrics, ``epoch_offset`` numbers this stage's epochs (and its batches' seeds) after
    the stages before, whose metrics ``history`` holds; a resumed checkpoint must be of
    this stage and brings its own history. ``resume_state``: ``checkpoint`` as the caller
    has loaded it already (with ``map_location=device``), not read again.
    """
    if settings.distill is not None and teacher is None:
        raise ConfigError(
            "settings.distill is set but no teacher was given; load it with "
            "bnn_nas.train.distill.teacher_for(settings, train_set, device)"
        )
    seed_everything(seed)
    cuda = device.type == "cuda"
    channels_last = settings.channels_last and cuda
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train_loader = _loader(
        train_set, settings.batch_size, device, augment=settings.augment, shuffle=True,
        seed=seed, stats=stats, channels_last=channels_last,
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
    scheduler = CosineSchedule(optimizer, settings, len(train_loader))
    history = list(history or [])
    start = 0
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = resume_state if resume_state is not None else load_checkpoint(
            checkpoint, map_location=device
        )
        check_training_checkpoint(state, checkpoint)
        if state.get("stage", 0) != stage:
            raise CheckpointError(
                f"checkpoint {checkpoint} is of stage {state.get('stage', 0)}, not {stage}; "
                "resume it with the stages it was trained with"
            )
        with restoring(checkpoint):  # missing keys, wrong shapes: one line, not a traceback
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            history = [EpochMetrics(**m) for m in state["metrics"]]
        start = state["epoch"] + 1
    forward = torch.compile(model) if settings.compile else model
    criterion: nn.Module = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    if teacher is not None:
        if settings.distill is None:
            raise ConfigError("a teacher was given but settings.distill is not set")
        criterion = DistillLoss(settings.distill, settings.label_smoothing)
    # DARTS's auxiliary head (network.auxiliary_head): its cross-entropy joins with its weight
    aux_loss = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    criterion = with_auxiliary_loss(criterion, model, settings.auxiliary_weight, aux_loss)
    step = None
    bar = None
    if on_start is not None:
        on_start()
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.epochs, initial=start, unit="epoch", dynamic_ncols=True)
    finished = False
    try:
        for local in range(start, settings.epochs):
            epoch = epoch_offset + local
            if hasattr(model, "drop_path_prob"):
                model.drop_path_prob = settings.drop_path * local / settings.epochs
            model.train()
            tic = time.perf_counter()
            seen = 0
            lr = scheduler.lr
            for x, y in train_loader.epoch(epoch):
                if step is None:
                    step = make_step(
                        model, forward, optimizer, criterion, bf16=settings.bf16,
                        grad_clip=settings.grad_clip, device=device, cuda_graph=use_graph,
                        first_batch=(x, y), teacher=teacher,
                    )  # fmt: skip
                step(x, y)
                scheduler.step()
                seen += len(y)
            assert step is not None
            loss_sum, correct = step.loss_sum, step.correct
            train_loss = float(loss_sum) / seen  # one sync per epoch
            train_acc = float(correct) / seen
            step.reset()
            if not math.isfinite(train_loss):
                raise TrainingDivergedError(f"training loss became {train_loss} in epoch {epoch}")
            if cuda:  # this stream only: other threads' trials run on their own streams
                torch.cuda.current_stream(device).synchronize()
            seconds = time.perf_counter() - tic
            eval_loss = eval_acc = None
            last = local == settings.epochs - 1
            if eval_loader is not None and (last or (eval_every and (local + 1) % eval_every == 0)):
                eval_loss, eval_acc = evaluate(model, eval_loader, bf16=settings.bf16)
            metrics = EpochMetrics(
                epoch=epoch,
                lr=lr,
                train_loss=train_loss,
                train_acc=train_acc,
                eval_loss=eval_loss,
                eval_acc=eval_acc,
                seconds=seconds,
                images_per_s=seen / seconds,
                stage=stage,
            )
            history.append(metrics)
            if checkpoint is not None and (last or (local + 1) % settings.checkpoint_every == 0):
                save_checkpoint(
                    checkpoint,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": rng_state(),
                        "epoch": local,
                        "stage": stage,
                        "metrics": [m.to_dict() for m in history],
                    },
                )
            if on_epoch is not None:
                on_epoch(history)
            if bar is not None:
                shown = {"loss": f"{train_loss:.3f}", "acc": f"{metrics.train_acc:.3f}"}
                if eval_acc is not None:
                    shown["eval_acc"] = f"{eval_acc:.3f}"
                bar.set_postfix(shown)
                bar.update(1)
        finished = True
    finally:  # also when a trial is cancelled or diverges
        if step is not None:
            try:
                step.release()
            except Exception:
                if finished:  # else the error that ended training is the one to see
                    raise
        if bar is not None:
            bar.leave = finished  # a failed training's bar is erased: its error stands alone
            bar.close()
        if cuda:
            # a search fits thousands of models in one process (an H200 ran out of
            # memory after ~130 graphed trials): should anything of a fit sit in a
            # reference cycle, its device memory (data, weights) would wait for the
            # collector's rare full passes; collecting here keeps at most one fit's worth
            gc.collect()
    return history
