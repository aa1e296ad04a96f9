"""Epochs of the trials now running, as the executors report them (for the progress bar).

An executor that can see its trials' epochs (in this process: ``local`` and ``streams``;
``processes`` through its result queue) reports each trial's start, every finished epoch
and its end here; the progress bar reads a snapshot whenever it redraws. Executors that
cannot (``ray``, a plugin's) report nothing and the bar moves as trials finish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class RunningTrials:
    """Thread-safe ``trial id -> (epochs done, epochs in all)`` of the running trials."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epochs: dict[int, tuple[int, int | None]] = {}

    def started(self, trial_id: int, epochs: int | None = None) -> None:
        with self._lock:
            self._epochs[trial_id] = (0, epochs)

    def epoch(self, trial_id: int, done: int, epochs: int | None = None) -> None:
        """``done`` epochs of ``trial_id`` have finished (of ``epochs``, when known)."""
        with self._lock:
            if trial_id in self._epochs:  # a late report about an ended trial is dropped
                self._epochs[trial_id] = (done, epochs or self._epochs[trial_id][1])

    def ended(self, trial_id: int) -> None:
        with self._lock:
            self._epochs.pop(trial_id, None)

    def reporter(self, trial_id: int) -> Callable[[int, int], None]:
        """``report(done, epochs)`` for one trial (what an evaluator's ``on_epoch`` takes)."""

        def report(done: int, epochs: int) -> None:
            self.epoch(trial_id, done, epochs)

        return report

    def snapshot(self) -> dict[int, tuple[int, int | None]]:
        with self._lock:
            return dict(self._epochs)

    def fraction(self) -> float:
        """The running trials' finished share, in trials (two halfway trials: 1.0)."""
        return sum(done / total for done, total in self.snapshot().values() if total)

    def describe(self) -> str:
        """``trial 13 epoch 1/2``, or ``8 running, epochs 5/16``; empty when none runs."""
        now = self.snapshot()
        if not now:
            return ""
        if len(now) == 1:
            ((trial_id, (done, total)),) = now.items()
            return f"trial {trial_id} epoch {done}/{total if total else '?'}"
        done = sum(d for d, _ in now.values())
        totals = [t for _, t in now.values()]
        total = str(sum(totals)) if all(totals) else "?"  # type: ignore[arg-type]
        return f"{len(now)} running, epochs {done}/{total}"
