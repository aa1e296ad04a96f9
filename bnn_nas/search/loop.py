"""The search loop: controller.ask -> store -> evaluate -> store -> controller.tell.

:class:`SearchRun` keeps an executor full until the budget is spent, recording every
outcome in the store and telling the controller; a resumed run rebuilds the controller
from the stored trials. It works on any :class:`~bnn_nas.search.store.TrialStore` (the
run directory's SQLite file, or the in-memory twin) and any executor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from bnn_nas.config import Config
from bnn_nas.objectives import DEFAULT_OBJECTIVES, Objective
from bnn_nas.search.controllers import Controller, make_controller
from bnn_nas.search.curves import write_curve_files
from bnn_nas.search.derive import best_trial
from bnn_nas.search.executors import Executor, Outcome, OutcomeKind
from bnn_nas.search.export import write_pareto_csv, write_trials_csv
from bnn_nas.search.store import TrialStore
from bnn_nas.search.trials import TrialRecord, TrialStatus
from bnn_nas.space.genotype import Genotype
from bnn_nas.space.search_space import SearchSpace


@dataclass(frozen=True)
class Progress:
    """What a progress display needs after each trial."""

    finished: int
    budget: int
    last: TrialRecord
    best: TrialRecord | None
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored meanwhile: Ctrl-C typed twice, or a stop sent to the whole process
    group (``kill -INT -PGID``, ``timeout -s INT``, a scheduler), which reaches the search
    both directly and forwarded by ``bnn-nas search``'s supervisor. One already caught but
    not yet raised is dropped too. Outside the main thread no KeyboardInterrupt comes."""
    previous = signal.getsignal(signal.SIGINT)  # None: not Python's to set, left alone
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def death_note(record: TrialRecord, max_process_deaths: int | None) -> str:
    """What a resume says about a trial that was training inside the search process when
    it died: failed (``executor.max_process_deaths`` reached) or run again. With the
    setting unset, from the trial's second death on, it says how to have it failed: the
    value deaths + 1, the largest that fails it at the resume after its next death (its
    deaths so far would do the same for it, but fail other trials one death sooner)."""
    if record.status is TrialStatus.FAILED:
        return f"trial {record.id} failed: {record.error}"
    deaths = record.process_deaths
    if max_process_deaths is not None:
        times = f"death {deaths} of executor.max_process_deaths {max_process_deaths}"
    else:
        times = {1: "once", 2: "twice"}.get(deaths, f"{deaths} times")
    note = (f"trial {record.id} was training when the search process died ({times}); "
            "running it again")  # fmt: skip
    if max_process_deaths is None and deaths >= 2:
        note += (f". If this trial is what kills the search (a crash, the OOM killer), "
                 f"--set executor.max_process_deaths={deaths + 1} on the next resume records "
                 f"it failed")  # fmt: skip
    return note


class SearchRun:
    """One search in one run directory (or on an in-memory store)."""

    def __init__(
        self,
        config: Config,
        space: SearchSpace,
        store: TrialStore,
        cost_of: Callable[[Genotype], Mapping[str, float] | float],
        run_dir: Path | None = None,
        controller: Controller | None = None,
    ) -> None:
        """``cost_of(genotype)``: its cost metrics before training (ops, bops, params,
        ...), or just its OPs as a number. ``controller``: a controller object to use
        instead of the one the config's ``search`` section names."""
        self.config, self.space, self.store, self.run_dir = config, space, store, run_dir
        self.notes: list[str] = []  # what prepare() has to say about trials it reclaimed

        def costs(genotype: Genotype) -> Mapping[str, float]:
            value = cost_of(genotype)
            return {"ops": float(value)} if isinstance(value, int | float) else value

        self.controller: Controller = controller or make_controller(
            config.search, space, config.seed, costs, config
        )

    def prepare(self) -> list[int]:
        """Reclaim trials a dead process left running and rebuild the controller.

        Returns the ids of the trials that run again; none used an attempt. A trial that
        was running inside the search process when it died (``local``, ``streams``) has
        that death counted: it runs again, unless ``executor.max_process_deaths`` is set
        and reached, then it is failed and the search goes on as after any failed trial;
        ``notes`` then holds one line for each such trial, for the user."""
        executor = self.config.executor
        died = [r.id for r in self.store.trials()
                if r.status is TrialStatus.RUNNING and r.in_process]  # fmt: skip
        reclaimed = self.store.reclaim(max_process_deaths=executor.max_process_deaths)
        self.notes = [death_note(self.store.get(i), executor.max_process_deaths) for i in died]
        # who runs the trials now (the run directory's lock keeps it to one process)
        self.store.set_meta("driver", {"pid": os.getpid(), "host": socket.gethostname(),
                                       "started": time.time()})  # fmt: skip
        self.controller.restore(self.store.trials())
        self._write_files()  # a kill between the store and the files (the last trial's too)
        return reclaimed

    def _write_files(self) -> None:
        """trials.csv, pareto.csv and the curves' files, regenerated from the store."""
        if self.run_dir is None:
            return
        records = self.store.trials()
        write_trials_csv(self.run_dir / "trials.csv", records)
        write_pareto_csv(self.run_dir / "pareto.csv", records, self.config.search.objectives)
        write_curve_files(self.run_dir, records, tensorboard=self.config.train.tensorboard)

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
        proposals = self.controller.ask(1)
        if not proposals:  # the controller waits for results (a rung still running)
            return None
        (trial_id,) = self.store.add(proposals)
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

        On Ctrl-C the trials in flight go back to pending, to run again on resume. With
        an executor that runs trials in this process (``in_process``), a trial this process
        already died under (``process_deaths``) runs alone: the next death is then its own,
        not that of the trials beside it (``streams`` runs several at once).
        """
        budget = self.config.search.budget
        in_process = getattr(executor, "in_process", False)
        in_flight: set[int] = set()
        alone: set[int] = set()  # the trial in flight alone, if any
        try:
            while self.finished() < budget:
                while executor.in_flight() < executor.capacity and not alone:
                    record = self._next_trial()
                    if record is None:
                        break
                    suspect = in_process and record.process_deaths > 0
                    if suspect and in_flight:
                        break  # it starts once the trials in flight are done
                    self.store.start(record.id, in_process=in_process)
                    executor.submit(self.store.get(record.id))
                    in_flight.add(record.id)
                    if suspect:
                        alone.add(record.id)
                if not in_flight:
                    break
                outcome = executor.next_outcome()
                in_flight.discard(outcome.trial_id)
                alone.discard(outcome.trial_id)
                record = self._record(outcome)
                self._write_files()
                if on_trial is not None and record.finished:
                    records = self.store.trials()
                    finished = sum(r.finished for r in records)
                    objectives = self.config.search.objectives
                    best = best_trial(records, objectives)
                    on_trial(Progress(finished, budget, record, best, objectives))
        except KeyboardInterrupt:
            with _sigint_ignored():  # a second one must not cut the release short
                for trial_id in in_flight:
                    self.store.release(trial_id, count_attempt=False)
            raise
        return self.store.trials()
