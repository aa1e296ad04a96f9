"""Scoring a candidate: build it, train it on search-train, measure it on search-valid."""

from __future__ import annotations

import copy
import math
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bnn_nas.config import Config, TrainConfig
from bnn_nas.cost import ModelCost, count_cost
from bnn_nas.data import Dataset, ImageSet, data_settings, load_dataset
from bnn_nas.data.splits import class_balanced_split
from bnn_nas.errors import CheckpointError, ConfigError
from bnn_nas.search.budget import Budget
from bnn_nas.search.trials import CurvePoint, TrialResult
from bnn_nas.space.genotype import Genotype
from bnn_nas.space.network import CellNetwork
from bnn_nas.space.search_space import SearchSpace
from bnn_nas.train.callbacks import Checkpoint
from bnn_nas.train.distill import place_teacher, teacher_for
from bnn_nas.train.seeding import seeded_build
from bnn_nas.train.trainer import fit


@dataclass(frozen=True)
class SearchData:
    """The search's view of a dataset: search-train and search-valid, never the test set."""

    train: ImageSet
    valid: ImageSet
    stats: tuple[tuple[float, ...], tuple[float, ...]]
    num_classes: int
    image_shape: tuple[int, int, int]  # C, H, W


def split_for_search(dataset: Dataset, config: Config) -> SearchData:
    """Seeded, class-balanced split of the training set; optional caps on each part."""
    d = config.data
    train_idx, valid_idx = class_balanced_split(
        dataset.train.labels, valid_fraction=d.valid_fraction, seed=config.seed
    )
    rng = np.random.default_rng(config.seed)
    train_idx = _cap(train_idx, d.search_train_size, dataset.train.labels, rng)
    valid_idx = _cap(valid_idx, d.search_valid_size, dataset.train.labels, rng)
    train = dataset.train.subset(train_idx)
    h, w, c = dataset.train.image_shape
    return SearchData(
        train=train,
        valid=dataset.train.subset(valid_idx),
        stats=train.channel_stats(),
        num_classes=dataset.num_classes,
        image_shape=(c, h, w),
    )


def _cap(indices: np.ndarray, size: int | None, labels: np.ndarray, rng) -> np.ndarray:
    if size is None or size >= len(indices):
        return indices
    keep, _ = class_balanced_split(labels[indices], n_train=size, seed=int(rng.integers(2**31)))
    return indices[keep]


def load_search_data(config: Config) -> SearchData:
    return split_for_search(load_dataset(data_settings(config.data)), config)


class TrialCancelledError(Exception):
    """A trial was stopped from outside before it finished (not the candidate's fault)."""


def _stop_if(should_stop: Callable[[], bool], history: object) -> None:
    if should_stop():
        raise TrialCancelledError("the search is stopping")


def _after_epoch(
    should_stop: Callable[[], bool] | None,
    report: Callable[[int, int], None] | None,
    epochs: int,
    resumed: list[int],
    history: list,
) -> None:
    """fit's ``on_epoch``: report the epochs done (progress), then stop if asked.

    A continued trial's history starts with its parent's epochs (``resumed``, found at
    the first call): it reports its own, so the bar's share and time left are the
    trial's (``epoch 1/4`` for the 4 epochs it trains, not ``3/6`` of the schedule)."""
    if not resumed:
        resumed.append(len(history) - 1)
    if report is not None:
        report(len(history) - resumed[0], epochs - resumed[0])
    if should_stop is not None:
        _stop_if(should_stop, history)


def trial_seed(seed: int, genotype: Genotype) -> int:
    """A candidate's training seed: the same genotype trains the same way in any run."""
    return (seed * 1_000_003 + int(genotype.hash[:8], 16)) % 2**31


class SearchTeachers:
    """The teacher of ``train.distill`` for a search's trials: read, hashed, rebuilt and
    checked once (on the CPU), copied once to each device; shared by an evaluator and its
    :meth:`Evaluator.on_device` twins, so trials neither reload it nor hold the global RNG
    lock for it."""

    def __init__(self, settings: TrainConfig, train_set: ImageSet) -> None:
        self.settings, self.train_set = settings, train_set
        self._lock = threading.Lock()
        self._loaded: nn.Module | None = None
        self._placed: dict[torch.device, nn.Module] = {}

    def check(self) -> None:
        """Load the teacher now: one that does not fit the data is a ConfigError here."""
        with self._lock:
            self._load()

    def _load(self) -> nn.Module | None:
        if self._loaded is None:
            self._loaded = teacher_for(self.settings, self.train_set, torch.device("cpu"))
        return self._loaded

    def on(self, device: torch.device) -> nn.Module | None:
        """The frozen teacher on ``device`` (None without ``train.distill``)."""
        if self.settings.distill is None:
            return None
        with self._lock:
            if device not in self._placed:
                loaded = self._load()
                assert loaded is not None
                self._placed[device] = (
                    loaded if device.type == "cpu"
                    else place_teacher(copy.deepcopy(loaded), device, self.settings.bf16)
                )  # fmt: skip
            return self._placed[device]


class Evaluator:
    """Trains and scores candidates of one search space on one device."""

    def __init__(
        self,
        space: SearchSpace,
        data: SearchData,
        settings: TrainConfig,
        device: torch.device,
        seed: int,
        teachers: SearchTeachers | None = None,
    ) -> None:
        self.space, self.data, self.settings = space, data, settings
        self.device, self.seed = device, seed
        self._costs: dict[Genotype, ModelCost] = {}
        self._subsets: dict[int, ImageSet] = {}
        # where continued multi-fidelity trials keep their checkpoints (the run directory's
        # rungs/ folder; set by the search that owns one)
        self.checkpoints: Path | None = None
        self.teachers = teachers if teachers is not None else SearchTeachers(settings, data.train)

    def on_device(self, device: str | torch.device) -> Evaluator:
        """The same evaluator (space, data, settings, seed, teacher) on another device."""
        device = torch.device(device)
        if device == self.device:
            return self
        twin = Evaluator(self.space, self.data, self.settings, device, self.seed, self.teachers)
        twin.checkpoints = self.checkpoints
        return twin

    def _continued(self, budget: Budget) -> Path:
        """The checkpoint a continued trial trains into: a copy of its parent's (the lower
        rung's state) for a promotion, none for a new candidate."""
        if self.checkpoints is None:
            raise ConfigError(
                "search.promotion: continue needs a run directory for the rungs' checkpoints "
                "(and an executor whose workers share it); use promotion: retrain"
            )
        assert budget.save is not None
        target = self.checkpoints / budget.save
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # a rerun starts again from its start point
        if budget.resume is not None:
            source = self.checkpoints / budget.resume
            if not source.is_file():
                raise CheckpointError(
                    f"the promoted trial's parent checkpoint {source} is missing; "
                    "use search.promotion: retrain"
                )
            partial_copy = target.with_name(target.name + ".part")
            shutil.copyfile(source, partial_copy)
            partial_copy.replace(target)
        return target

    def check_teacher(self) -> None:
        """Load and check ``train.distill``'s teacher now (a search does before it makes
        its run directory); nothing without distillation."""
        if self.settings.distill is not None:
            self.teachers.check()

    def build(self, genotype: Genotype) -> CellNetwork:
        return CellNetwork(genotype, self.space, self.data.num_classes)

    def cost(self, genotype: Genotype, model: nn.Module | None = None) -> ModelCost:
        """Cost of a candidate, counted once per genotype (Pareto asks before training):
        on ``model`` when the caller has built it already, else on a fresh build."""
        if genotype not in self._costs:
            if model is None:  # building draws initial weights from the global RNG
                model = seeded_build(partial(self.build, genotype))
            self._costs[genotype] = count_cost(model, (1, *self.data.image_shape))
        return self._costs[genotype]

    def ops(self, genotype: Genotype) -> float:
        return self.cost(genotype).ops

    def cost_metrics(self, genotype: Genotype) -> dict[str, float]:
        """The metrics known before training (what cost objectives and limits read)."""
        return _cost_metrics(self.cost(genotype))

    def train_subset(self, size: int | None) -> ImageSet:
        """The first ``size`` images of search-train (a seeded, class-balanced part, the
        same for every trial: a multi-fidelity rung's data fraction); all when None."""
        if size is None or size >= len(self.data.train):
            if size is not None and size > len(self.data.train):
                raise ConfigError(
                    f"a rung asks for {size} search-train images; there are "
                    f"{len(self.data.train)} (data.search_train_size, data.valid_fraction)"
                )
            return self.data.train
        if size not in self._subsets:
            keep, _ = class_balanced_split(self.data.train.labels, n_train=size, seed=self.seed)
            self._subsets[size] = self.data.train.subset(keep)
        return self._subsets[size]

    def __call__(
        self,
        genotype: Genotype,
        should_stop: Callable[[], bool] | None = None,
        on_epoch: Callable[[int, int], None] | None = None,
        budget: Budget | None = None,
    ) -> TrialResult:
        """Train and score ``genotype``; ``should_stop`` is asked after every epoch and
        ends the trial early with :class:`TrialCancelledError` (a search being stopped);
        ``on_epoch(done, epochs)`` is told after every epoch (the progress bar).
        ``budget`` (multi-fidelity trials): epochs and search-train images of this trial,
        and the checkpoints a continued trial saves and starts from."""
        settings, train_set = self.settings, self.data.train
        checkpoint, stop_at = None, None
        if budget is not None:
            train_set = self.train_subset(budget.train_size)
            if budget.epochs is not None:
                settings = replace(settings, epochs=budget.epochs)
            if budget.schedule_epochs is not None:  # continued: the last rung's schedule
                checkpoint = self._continued(budget)
                settings = replace(settings, epochs=budget.schedule_epochs,
                                   checkpoint_every=budget.epochs or budget.schedule_epochs)
                if budget.epochs is not None and budget.epochs < budget.schedule_epochs:
                    stop_at = budget.epochs
        seed = trial_seed(self.seed, genotype)
        # train.distill (off by default): the teacher, frozen, on this trial's device
        teacher = self.teachers.on(self.device)
        model = seeded_build(partial(self.build, genotype), seed)
        cost = self.cost(genotype, model)  # counting leaves the model as it was
        tic = time.perf_counter()
        seen: list = []
        after = None if should_stop is None and on_epoch is None else partial(
            _after_epoch, should_stop, on_epoch, stop_at or settings.epochs, [])
        if stop_at is not None:
            after = partial(_rung_end, stop_at, after, seen)
        try:
            history = fit(
                model,
                train_set,
                settings,
                device=self.device,
                seed=seed,
                stats=self.data.stats,
                eval_set=self.data.valid,
                eval_every=stop_at or 0,  # a continued rung is scored where it stops
                callbacks=() if checkpoint is None else (Checkpoint(checkpoint, resume=True),),
                on_epoch=after,
                teacher=teacher,
            )
        except _RungEndError:
            history = seen[-1]
        last = history[-1]
        assert last.eval_acc is not None and last.eval_loss is not None
        if not math.isfinite(last.eval_loss):
            raise FloatingPointError(f"validation loss is {last.eval_loss}")
        return TrialResult(
            {
                "accuracy": last.eval_acc,
                "loss": last.eval_loss,
                "train_loss": last.train_loss,
                **_cost_metrics(cost),
                "train_seconds": time.perf_counter() - tic,
            },
            curve=[
                CurvePoint(epoch=m.epoch, train_loss=m.train_loss, train_acc=m.train_acc,
                           eval_loss=m.eval_loss, eval_acc=m.eval_acc, lr=m.lr,
                           seconds=m.seconds)
                for m in history
            ],
        )


class _RungEndError(Exception):
    """A continued rung reached its epochs (its checkpoint is written): stop there."""


def _rung_end(stop_at: int, then: Callable | None, seen: list, history: list) -> None:
    if then is not None:
        then(history)
    if history[-1].epoch + 1 >= stop_at:
        seen.append(list(history))
        raise _RungEndError


def _cost_metrics(cost: ModelCost) -> dict[str, float]:
    return {
        "bops": cost.bops,
        "flops": cost.flops,
        "ops": cost.ops,
        "binary_params": cost.binary_params,
        "float_params": cost.float_params,
        "params": cost.binary_params + cost.float_params,
        "bytes": cost.bytes,
    }


def build_evaluator(config: Config, device: torch.device) -> Evaluator:
    """The evaluator a config describes (space and search data loaded here)."""
    from bnn_nas.space.search_space import load_search_space

    space = load_search_space(config.search_space)
    return Evaluator(space, load_search_data(config), config.train, device, config.seed)
