"""The hooks of :func:`bnn_nas.train.fit`: what a training does around its epochs.

The loop trains and measures; everything else is a :class:`Callback` it calls at four
points: ``setup`` (the model, optimiser and schedule are made: a checkpoint may restore
them), ``on_start`` (before the first epoch), ``on_epoch`` (after each) and ``on_end``
(always, also when training failed). Each sees the :class:`FitRun`, the state of the
training. One callback object may serve several fits in turn (a staged training's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from bnn_nas.config import TrainConfig
from bnn_nas.errors import CheckpointError
from bnn_nas.train.checkpoint import (
    check_training_checkpoint,
    load_checkpoint,
    restoring,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bnn_nas.train.metrics import EpochMetrics, write_metrics_csv


@dataclass
class FitRun:
    """One fit as it goes: what it trains, and where it stands.

    ``local``: this fit's epochs are 0 .. ``settings.epochs`` - 1, numbered
    ``epoch_offset`` + local in the metrics (a staged training counts across stages);
    ``start``: the first one still to train (a resumed checkpoint moves it on);
    ``history``: the metrics of every epoch so far, the stages before this one included.
    """

    model: nn.Module
    optimizer: Any
    scheduler: Any
    settings: TrainConfig
    device: Any
    stage: int = 0
    epoch_offset: int = 0
    history: list[EpochMetrics] = field(default_factory=list)
    start: int = 0

    @property
    def epochs(self) -> int:
        return self.settings.epochs

    def is_last(self, local: int) -> bool:
        return local == self.settings.epochs - 1


class Callback:
    """A hook of fit; every method does nothing unless a subclass says otherwise."""

    def setup(self, run: FitRun) -> None:
        """The model, optimiser and schedule are made, nothing trained yet."""

    def on_start(self, run: FitRun) -> None:
        """Setup is done (a resumed checkpoint loaded): the first epoch comes next."""

    def on_epoch(self, run: FitRun, local: int, metrics: EpochMetrics) -> None:
        """Epoch ``local`` of this fit has ended; ``metrics`` is ``run.history[-1]``."""

    def on_end(self, run: FitRun, finished: bool) -> None:
        """The fit ends: ``finished`` when every epoch trained, else an error ends it."""


class Checkpoint(Callback):
    """Saves model, optimiser, schedule, RNG states, stage and history to ``path`` every
    ``settings.checkpoint_every`` epochs and after the last; with ``resume``, continues
    from the file when it exists (``state``: the file as the caller has loaded it
    already, with ``map_location`` the training's device, not read again)."""

    def __init__(self, path: Path, *, resume: bool = False, state: dict | None = None) -> None:
        self.path, self.resume, self.state = Path(path), resume, state

    def setup(self, run: FitRun) -> None:
        if not (self.resume and self.path.is_file()):
            return
        state = self.state if self.state is not None else load_checkpoint(
            self.path, map_location=run.device
        )
        self.state = None  # a later fit with this callback reads the file it finds then
        check_training_checkpoint(state, self.path)
        if state.get("stage", 0) != run.stage:
            raise CheckpointError(
                f"checkpoint {self.path} is of stage {state.get('stage', 0)}, not {run.stage}; "
                "resume it with the stages it was trained with"
            )
        with restoring(self.path):  # missing keys, wrong shapes: one line, not a traceback
            run.model.load_state_dict(state["model"])
            run.optimizer.load_state_dict(state["optimizer"])
            run.scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
            run.history = [EpochMetrics(**m) for m in state["metrics"]]
        run.start = state["epoch"] + 1

    def on_epoch(self, run: FitRun, local: int, metrics: EpochMetrics) -> None:
        if run.is_last(local) or (local + 1) % run.settings.checkpoint_every == 0:
            save_checkpoint(
                self.path,
                {
                    "model": run.model.state_dict(),
                    "optimizer": run.optimizer.state_dict(),
                    "scheduler": run.scheduler.state_dict(),
                    "rng": rng_state(),
                    "epoch": local,
                    "stage": run.stage,
                    "metrics": [m.to_dict() for m in run.history],
                },
            )


class OnEpoch(Callback):
    """Calls ``fn(history)`` after each epoch (the history so far, resumed epochs
    included)."""

    def __init__(self, fn: Callable[[list[EpochMetrics]], None]) -> None:
        self.fn = fn

    def on_epoch(self, run: FitRun, local: int, metrics: EpochMetrics) -> None:
        self.fn(run.history)


class OnStart(Callback):
    """Calls ``fn()`` once setup is done, before the first epoch."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def on_start(self, run: FitRun) -> None:
        self.fn()


class MetricsCSV(Callback):
    """Rewrites ``path`` (metrics.csv: one row per epoch) after each epoch."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def on_epoch(self, run: FitRun, local: int, metrics: EpochMetrics) -> None:
        write_metrics_csv(self.path, run.history)


class TensorBoard(Callback):
    """Adds each epoch's scalars to ``curves`` (a
    :class:`~bnn_nas.train.tensorboard_log.TensorBoardCurves`; its owner closes it, after
    the last stage)."""

    def __init__(self, curves: Any) -> None:
        self.curves = curves

    def on_epoch(self, run: FitRun, local: int, metrics: EpochMetrics) -> None:
        self.curves.add(metrics)


class ProgressBar(Callback):
    """A tqdm bar over this fit's epochs: loss, accuracy and eval accuracy as it goes; a
    failed training's bar is erased, so its error stands alone."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_start(self, run: FitRun) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=run.epochs, initial=run.start, unit="epoch", dynamic_ncols=True)

    def on_epoch(self, run: FitRun, local: int, metrics: EpochMetrics) -> None:
        if self.bar is None:
            return
        shown = {"loss": f"{metrics.train_loss:.3f}", "acc": f"{metrics.train_acc:.3f}"}
        if metrics.eval_acc is not None:
            shown["eval_acc"] = f"{metrics.eval_acc:.3f}"
        self.bar.set_postfix(shown)
        self.bar.update(1)

    def on_end(self, run: FitRun, finished: bool) -> None:
        if self.bar is not None:
            self.bar.leave = finished
            self.bar.close()
            self.bar = None
