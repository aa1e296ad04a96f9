"""Executors run trials: in this process, in worker processes, or on a Ray cluster.

All share one small interface: ``submit`` a trial, ``next_outcome`` waits for one to end.
An outcome is a result, a candidate's failure (recorded, the search goes on) or a lost
worker (the trial is retried up to ``max_attempts``; nothing done is lost). A candidate
that takes down the search process itself (``in_process`` executors) is counted as it
dies by ``bnn-nas search``'s supervisor on Linux (``TrialStore.count_death``: failed at
``executor.max_process_deaths``, unset 2, and the search starts again,
bnn_nas/search/supervisor.py); a death only the next start sees (no supervisor) is
counted there and fails the trial only where that setting is set (``TrialStore.reclaim``).

Executors are registered by name (``bnn_nas.extensions.EXECUTORS``, the table that
``executor.type`` picks from): an entry is ``make(config, evaluator, plugins, settings)
-> Executor`` with ``settings`` an instance of the dataclass it declared. A plugin adds one
with ``@register_executor("name", settings=...)``.
"""

from __future__ import annotations

import enum
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnn_nas.config import Config, entry_settings
from bnn_nas.extensions import EXECUTORS, register_executor
from bnn_nas.search.budget import budget_kwargs, budget_of
from bnn_nas.search.running import RunningTrials
from bnn_nas.search.trials import TrialRecord, TrialResult
from bnn_nas.space.genotype import Genotype


def format_error(err: BaseException) -> str:
    """One line for the store: the exception and where it was raised."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}{where}"[:500]


class OutcomeKind(enum.Enum):
    DONE = "done"  # the candidate trained and was scored
    FAILED = "failed"  # the candidate itself failed (NaN loss, out of memory, exception)
    LOST = "lost"  # the worker died under it: not the candidate's fault, try again


@dataclass(frozen=True)
class Outcome:
    trial_id: int
    kind: OutcomeKind
    result: TrialResult | None = None
    error: str | None = None


class Executor(ABC):
    """Where trials run. ``capacity``: how many may be in flight at once."""

    capacity: int = 1
    running: RunningTrials | None = None  # where running trials' epochs are reported
    # True where trials run inside the search process (``local``, ``streams``): a candidate
    # that kills it (a segfault, the OOM killer) has its deaths counted, and is failed
    # after ``executor.max_process_deaths`` of them where that is set. False (trials in
    # workers): the search process's death never counts against a trial.
    in_process: bool = False

    def report_epochs(self, running: RunningTrials) -> bool:
        """Report each running trial's epochs to ``running`` from now on. False: this
        executor cannot see them (``ray``, a plugin's), and progress moves per trial."""
        return False

    @abstractmethod
    def submit(self, trial: TrialRecord) -> None: ...

    @abstractmethod
    def next_outcome(self) -> Outcome:
        """Block until a submitted trial ends."""

    @abstractmethod
    def in_flight(self) -> int: ...

    def close(self) -> None:  # noqa: B027  (most executors have nothing to stop)
        """Stop workers; trials still in flight are abandoned (the store reclaims them)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Runs each trial in this process, one at a time (the default; CPU or one GPU)."""

    in_process = True

    def __init__(
        self,
        evaluate: Callable[[Genotype], TrialResult],
        describe_error: Callable[[BaseException], str] = format_error,
    ) -> None:
        self.evaluate, self.describe_error = evaluate, describe_error
        self._queue: list[TrialRecord] = []

    def submit(self, trial: TrialRecord) -> None:
        self._queue.append(trial)

    def in_flight(self) -> int:
        return len(self._queue)

    def report_epochs(self, running: RunningTrials) -> bool:
        self.running = running  # the evaluator is then called with on_epoch=
        return True

    def next_outcome(self) -> Outcome:
        trial = self._queue.pop(0)
        running = self.running
        try:
            budget = budget_kwargs(trial)
            if running is None:
                result = self.evaluate(trial.genotype, **budget)
            else:
                running.started(trial.id, trial_epochs(trial, self.evaluate))
                result = self.evaluate(trial.genotype, on_epoch=running.reporter(trial.id),
                                       **budget)  # fmt: skip
        except Exception as err:  # a failing candidate is recorded; the search goes on
            return Outcome(trial.id, OutcomeKind.FAILED, error=self.describe_error(err))
        finally:
            if running is not None:
                running.ended(trial.id)
        return Outcome(trial.id, OutcomeKind.DONE, result=result)


def epochs_of(evaluator: Any) -> int | None:
    """The epochs an evaluator trains each trial (None for a bare function)."""
    epochs = getattr(getattr(evaluator, "settings", None), "epochs", None)
    return epochs if isinstance(epochs, int) else None


def trial_epochs(trial: TrialRecord, evaluator: Any) -> int | None:
    """The epochs ``trial`` trains: its multi-fidelity budget's, else the evaluator's."""
    budget = budget_of(trial)
    if budget is not None and budget.epochs is not None:
        return budget.epochs
    return epochs_of(evaluator)


@register_executor("local")
def make_local(
    config: Config, evaluator: Any, plugins: tuple[str, ...], settings: None
) -> Executor:
    """One trial at a time in this process (the default on the CPU)."""
    return LocalExecutor(evaluator, format_error)


def make_executor(config: Config, evaluator: Any, plugins: tuple[str, ...] = ()) -> Executor:
    """The executor a config's ``executor`` section names (``auto``: streams on a GPU,
    local on the CPU, where several trials side by side do not pay off)."""
    kind = config.executor.type
    if kind == "auto":
        kind = "streams" if evaluator.device.type == "cuda" else "local"
    entry = EXECUTORS.get(kind)
    return entry.obj(config, evaluator, plugins, entry_settings(config.executor, entry))
