"""The search loop: controller.ask -> store -> evaluate -> store -> controller.tell.

A run directory holds ``trials.sqlite`` (the single source of truth), ``config.yaml``
and ``trials.csv`` (regenerated from the store after every trial). Running ``search``
again on the same directory resumes: interrupted trials go back to pending and the
controller is rebuilt from the stored trials, so nothing done is lost or redone.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bnn_nas import __version__
from bnn_nas.config import Config, check_batch_fits, config_from_dict, config_to_dict
from bnn_nas.errors import BnnNasError, ConfigError
from bnn_nas.io import dump_yaml, write_text_atomic
from bnn_nas.objectives import DEFAULT_OBJECTIVES, Objective, ranking_key
from bnn_nas.rundir import check_run_dir, creating, lock_run_dir, remove_stale_parts, run_kind
from bnn_nas.search.controllers import Controller, make_controller
from bnn_nas.search.evaluator import Evaluator, load_search_data
from bnn_nas.search.executors import (  # noqa: F401  (make_executor, format_error: re-exported)
    Executor,
    Outcome,
    OutcomeKind,
    format_error,
    make_executor,
)
from bnn_nas.search.export import write_trials_csv
from bnn_nas.search.store import STORE_FILE, SQLiteStore, TrialStore
from bnn_nas.search.trials import TrialRecord, TrialStatus, completed
from bnn_nas.space.genotype import Genotype
from bnn_nas.space.search_space import SearchSpace, load_search_space
from bnn_nas.train.trainer import resolve_device

# settings that may change between an interrupted search and its resumption: they do not
# shape the trials (final training and baselines are not part of the search; where the
# same data set lives changes when a search moves to another machine)
RESUMABLE_CHANGES = (
    "search.budget", "executor", "device", "run_dir", "final", "model",
    "data.root", "data.cache_dir", "data.download",
)  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """What a progress display needs after each trial."""

    finished: int
    budget: int
    last: TrialRecord
    best: TrialRecord | None
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _normalised(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config in today's form: settings added since take their defaults."""
    try:
        return config_to_dict(config_from_dict(stored, "<stored config>"))
    except BnnNasError:  # compared as it is: any difference is named below
        return stored


def check_resumable(stored: dict[str, Any], current: dict[str, Any], run_dir: Path) -> None:
    """A resumed search must keep every setting that shaped its trials."""
    old, new = _flatten(_normalised(stored)), _flatten(current)
    for key in sorted(set(old) | set(new)):
        if any(key == k or key.startswith(k + ".") for k in RESUMABLE_CHANGES):
            continue
        if old.get(key) != new.get(key):
            raise ConfigError(
                f"{run_dir} was searched with {key}={old.get(key)!r}, the config now says "
                f"{new.get(key)!r}; restore it or use another --run-dir"
            )


def best_trial(
    records: list[TrialRecord], objectives: Sequence[Objective] = DEFAULT_OBJECTIVES
) -> TrialRecord | None:
    """The best finished trial by the primary objective, ties by the others, then the
    earlier trial."""
    done = completed(records)
    return min(
        done, key=lambda r: (*ranking_key(r.result.metrics, objectives), r.id), default=None
    )


class SearchRun:
    """One search in one run directory (or on an in-memory store)."""

    def __init__(
        self,
        config: Config,
        space: SearchSpace,
        store: TrialStore,
        cost_of: Callable[[Genotype], Mapping[str, float] | float],
        run_dir: Path | None = None,
    ) -> None:
        """``cost_of(genotype)``: its cost metrics before training (ops, bops, params,
        ...), or just its OPs as a number."""
        self.config, self.space, self.store, self.run_dir = config, space, store, run_dir

        def costs(genotype: Genotype) -> Mapping[str, float]:
            value = cost_of(genotype)
            return {"ops": float(value)} if isinstance(value, int | float) else value

        self.controller: Controller = make_controller(config.search, space, config.seed, costs)

    def prepare(self) -> list[int]:
        """Reclaim trials a dead process left running and rebuild the controller."""
        reclaimed = self.store.reclaim(self.config.executor.max_attempts)
        # who runs the trials now (the run directory's lock keeps it to one process)
        self.store.set_meta("driver", {"pid": os.getpid(), "host": socket.gethostname(),
                                       "started": time.time()})  # fmt: skip
        self.controller.restore(self.store.trials())
        return reclaimed

    def finished(self) -> int:
        return sum(r.finished for r in self.store.trials())

    def _next_trial(self) -> TrialRecord | None:
        """The oldest pending trial, or a new proposal while the budget allows."""
        records = self.store.trials()
        pending = [r for r in records if r.status is TrialStatus.PENDING]
        if pending:
            return pending[0]
        if len(records) >= self.config.search.budget:
            return None
        (trial_id,) = self.store.add(self.controller.ask(1))
        self.store.set_meta("controller", {"name": self.controller.name,
                                           "proposed": self.controller.proposed})  # fmt: skip
        return self.store.get(trial_id)

    def _record(self, outcome: Outcome) -> TrialRecord:
        if outcome.kind is OutcomeKind.DONE:
            assert outcome.result is not None
            self.store.finish(outcome.trial_id, outcome.result)
        elif outcome.kind is OutcomeKind.FAILED:
            self.store.fail(outcome.trial_id, outcome.error or "failed")
        else:  # the worker was lost: retry unless this trial has used up its attempts
            attempts = self.store.get(outcome.trial_id).attempts
            if attempts >= self.config.executor.max_attempts:
                self.store.fail(outcome.trial_id, f"{outcome.error}; gave up after {attempts}")
            else:
                self.store.release(outcome.trial_id)
        record = self.store.get(outcome.trial_id)
        self.controller.tell([record])
        return record

    def run(
        self, executor: Executor, on_trial: Callable[[Progress], None] | None = None
    ) -> list[TrialRecord]:
        """Keep the executor full until ``search.budget`` trials have finished.

        On Ctrl-C the trials in flight go back to pending, to run again on resume.
        """
        budget = self.config.search.budget
        in_flight: set[int] = set()
        try:
            while self.finished() < budget:
                while executor.in_flight() < executor.capacity:
                    record = self._next_trial()
                    if record is None:
                        break
                    self.store.start(record.id)
                    executor.submit(self.store.get(record.id))
                    in_flight.add(record.id)
                if not in_flight:
                    break
                outcome = executor.next_outcome()
                in_flight.discard(outcome.trial_id)
                record = self._record(outcome)
                if self.run_dir is not None:
                    write_trials_csv(self.run_dir / "trials.csv", self.store.trials())
                if on_trial is not None and record.finished:
                    records = self.store.trials()
                    finished = sum(r.finished for r in records)
                    objectives = self.config.search.objectives
                    best = best_trial(records, objectives)
                    on_trial(Progress(finished, budget, record, best, objectives))
        except KeyboardInterrupt:
            for trial_id in in_flight:
                self.store.release(trial_id, count_attempt=False)
            raise
        return self.store.trials()


def open_search(config: Config, run_dir: Path, *, resume: bool) -> tuple[SearchRun, Evaluator]:
    """Check everything, then create or reopen the run directory's search.

    All user input (space, plugins, data) is validated before the directory is touched,
    so a bad config leaves no half-made run behind.
    """
    run_dir = Path(run_dir)
    if check_run_dir(run_dir, "search", "search") and run_kind(run_dir) is not None:
        lock_run_dir(run_dir)  # held for this process's life: one search per run directory
        remove_stale_parts(run_dir)
    space = load_search_space(config.search_space)
    device = resolve_device(config.device)
    if config.executor.devices:  # ones that do not exist fail now, before anything is made
        from bnn_nas.search.processes import resolve_devices

        resolve_devices(config.executor.devices)
    data = load_search_data(config)
    check_batch_fits(config.train, len(data.train), "train")
    evaluator = Evaluator(space, data, config.train, device, config.seed)
    evaluator.check_teacher()  # train.distill: a teacher that does not fit fails here, once
    store_path = run_dir / STORE_FILE
    current = config_to_dict(config)
    if store_path.exists():
        # checked read-only first: a refused resume leaves the store as it was
        before = SQLiteStore(store_path, read_only=True)
        try:
            stored = before.get_meta("config")
        finally:
            before.close()
        if stored is None:
            raise ConfigError(f"{store_path} holds no search metadata; use another --run-dir")
        check_resumable(stored, current, run_dir)
        store = SQLiteStore(store_path)
        store.set_meta("config", current)  # a changed budget or device is recorded
        # the settings in force now (a resumed search may change its budget, final
        # schedule, data path, ...): derive points `bnn-nas train --config` at this file
        write_text_atomic(run_dir / "config.yaml", dump_yaml(current))
    else:
        if resume:
            raise ConfigError(f"no search to resume in {run_dir}; drop --resume to start one")
        # born whole (store, metadata, config) or not at all: a kill leaves nothing
        with creating(run_dir, "search") as staging:
            store = SQLiteStore(staging / STORE_FILE)
            store.set_meta("config", current)
            store.set_meta("bnn_nas", __version__)
            store.set_meta("seed", config.seed)
            store.set_meta("created", time.strftime("%Y-%m-%d %H:%M:%S"))
            store.close()
            write_text_atomic(staging / "config.yaml", dump_yaml(current))
        store = SQLiteStore(store_path)
    return SearchRun(config, space, store, evaluator.cost_metrics, run_dir), evaluator


def default_run_dir(config: Config) -> Path:
    if config.run_dir:
        return Path(config.run_dir)
    stem = Path(config.source).stem if config.source != "<defaults>" else "search"
    return Path("runs") / stem


def with_budget(config: Config, budget: int | None) -> Config:
    if budget is None:
        return config
    return replace(config, search=replace(config.search, budget=budget))
