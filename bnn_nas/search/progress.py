"""Live progress of a search: trials done / budget, best so far, ETA, a clock that runs."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Sequence
from types import TracebackType

from tqdm.auto import tqdm  # a widget in notebooks, the text bar elsewhere

from bnn_nas.objectives import DEFAULT_OBJECTIVES, Objective, labelled, short
from bnn_nas.search.budget import describe_budget
from bnn_nas.search.derive import best_trial
from bnn_nas.search.executors import Executor
from bnn_nas.search.loop import Progress, SearchRun
from bnn_nas.search.running import RunningTrials
from bnn_nas.search.trials import TrialRecord


def describe(record: TrialRecord, objectives: Sequence[Objective] = DEFAULT_OBJECTIVES) -> str:
    """One line for a finished trial: its objectives, time and how it was proposed."""
    if record.result is None:
        return f"trial {record.id} failed: {record.error}"
    metrics = record.result.metrics
    shown = " ".join(labelled(o.name, o.value(metrics)) for o in objectives)
    seconds = metrics.get("train_seconds")
    took = f" ({seconds:.1f} s)" if seconds is not None else ""
    origin = record.origin.get("kind", "")
    if "rung" in record.origin:  # a multi-fidelity trial: "promotion of 6, rung 1 (3 ep)"
        parent = f" of {record.origin['parent']}" if "parent" in record.origin else ""
        origin += f"{parent}, {describe_budget(record.origin)}"
    return f"trial {record.id} {shown}{took} {origin}"


def busy_seconds(records: Iterable[TrialRecord]) -> float:
    """Wall seconds during which at least one trial ran: the union of the trials'
    [started, finished] intervals (trials side by side count once; pauses not at all)."""
    return union_seconds(
        (r.started_at, r.finished_at)
        for r in records
        if r.started_at is not None and r.finished_at is not None
    )


def union_seconds(spans: Iterable[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the ``(start, finish)`` spans."""
    total, end = 0.0, float("-inf")
    for start, finish in sorted(spans):
        if finish > end:
            total += finish - max(start, end)
            end = finish
    return total


class _Bar(tqdm):
    """tqdm with ``{eta}`` in its format: the search's own estimate of the time left; and
    until this session has a rate of its own, ``history_rate`` (trials per second of the
    earlier sessions), so a resumed bar shows a rate, not ``?trial/s``."""

    def __init__(self, *args, eta: str = "?", history_rate: float | None = None, **kwargs):
        self.eta, self.history_rate = eta, history_rate  # read by the first draw, in init
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self):  # type: ignore[override]
        shown = {**super().format_dict, "eta": self.eta}
        if shown.get("rate") is None and self.history_rate:
            shown["rate"] = self.history_rate
        return shown


BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{eta}, {rate_fmt}{postfix}]"


class SearchProgress:
    """A tqdm bar over the budget; one line per finished trial above it.

    On a terminal the bar is redrawn every ``tick`` seconds, so its clock moves while a
    long trial runs (``live``: default whether stderr is a terminal; a log file gets no
    redraw a second). A resumed search also shows the time its earlier sessions spent
    (``before``). ``running``: the epochs of the trials now running, as the executor
    reports them (``trial 13 epoch 1/2``). The time left (after ``<``) is estimated from
    the finished trials' times, this session's and earlier ones' (``records``): wall
    seconds per trial (trials side by side counted once) times the trials still to run,
    less the running trials' finished epochs. A run with more trials ``done`` than the
    ``budget`` (a lower ``--budget`` on resume) shows them all done (24/24), not 24/?.
    """

    def __init__(
        self,
        budget: int,
        done: int,
        *,
        before: float = 0.0,
        tick: float = 1.0,
        live: bool | None = None,
        records: Iterable[TrialRecord] = (),
        running: RunningTrials | None = None,
    ) -> None:
        self._spans = [
            (r.started_at, r.finished_at)
            for r in records
            if r.finished and r.started_at is not None and r.finished_at is not None
        ]
        total, per_trial = max(budget, done), self.seconds_per_trial()
        self.bar = _Bar(
            total=total, initial=done, unit="trial", dynamic_ncols=True, file=sys.stderr,
            bar_format=BAR_FORMAT, history_rate=1 / per_trial if per_trial else None,
            eta="?" if per_trial is None else tqdm.format_interval((total - done) * per_trial),
        )  # fmt: skip
        self.before = before
        self.running = running
        self._best = ""
        self._stop = threading.Event()
        self._show()
        self._ticker: threading.Thread | None = None
        if sys.stderr.isatty() if live is None else live:
            self._ticker = threading.Thread(target=self._tick, args=(tick,), daemon=True)
            self._ticker.start()

    @classmethod
    def of_search(cls, search: SearchRun, executor: Executor) -> SearchProgress:
        """The bar of a prepared search: its budget, its trials so far (their time and
        time per trial) and, where ``executor`` reports them, the running trials' epochs."""
        running = RunningTrials()
        stored = search.store.trials()
        bar = cls(
            search.config.search.budget, sum(r.finished for r in stored),
            before=busy_seconds(stored), records=stored,
            running=running if executor.report_epochs(running) else None,
        )  # fmt: skip
        objectives = search.config.search.objectives
        bar.show_best(best_trial(stored, objectives), objectives)  # a resumed search's best
        bar._show()
        return bar

    def seconds_per_trial(self) -> float | None:
        """Wall seconds per finished trial (None before one has finished)."""
        if not self._spans:
            return None
        return union_seconds(self._spans) / len(self._spans)

    def eta(self) -> float | None:
        """Seconds left: the trials to run (less the running ones' finished share)."""
        per_trial = self.seconds_per_trial()
        if per_trial is None:
            return None
        left = self.bar.total - self.bar.n
        if self.running is not None:
            left -= self.running.fraction()
        return max(0.0, left) * per_trial

    def _show(self) -> None:
        total = self.before + self.bar.format_dict["elapsed"]
        parts = [self._best] if self._best else []
        now = self.running.describe() if self.running is not None else ""
        if now and self.bar.n < self.bar.total:
            parts.append(now)
        if self.before:
            parts.append(f"total {self.bar.format_interval(total)}")
        eta = self.eta()
        self.bar.eta = "?" if eta is None else self.bar.format_interval(eta)
        self.bar.set_postfix_str(", ".join(parts), refresh=True)

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            self._show()

    def update(self, progress: Progress) -> None:
        objectives = progress.objectives
        self.bar.write(describe(progress.last, objectives))
        last = progress.last
        if last.started_at is not None and last.finished_at is not None:
            self._spans.append((last.started_at, last.finished_at))
        self.show_best(progress.best, objectives)
        self.bar.update(progress.finished - self.bar.n)
        self._show()

    def show_best(self, record: TrialRecord | None, objectives: Sequence[Objective]) -> None:
        """``best=0.3130, ops=2.18M`` of ``record`` (the best trial so far) in the bar."""
        if record is not None and record.result is not None:
            best = record.result.metrics
            self._best = ", ".join(
                f"{'best' if i == 0 else o.name}={short(o.name, o.value(best))}"
                for i, o in enumerate(objectives)
            )

    def __enter__(self) -> SearchProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self.bar.close()
