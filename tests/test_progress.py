"""The search's progress bar: a clock that runs during long trials, time of earlier sessions."""

from __future__ import annotations

import random
import time

from bnn_nas.search.progress import SearchProgress, busy_seconds
from bnn_nas.search.trials import TrialRecord, TrialStatus
from bnn_nas.space.genotype import parse_genotype

G = parse_genotype(
    "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=[2], "
    "reduce=[('max_pool_3x3', 0), ('skip_connect', 1)], reduce_concat=[2])"
)


def record(start: float | None, finish: float | None) -> TrialRecord:
    return TrialRecord(1, G, TrialStatus.DONE, {}, started_at=start, finished_at=finish)


def test_busy_seconds_is_the_union_of_the_trials_spans():
    spans = [(0, 10), (5, 12), (20, 25), (21, 22), (30, None)]
    assert busy_seconds(record(a, b) for a, b in spans) == 12 + 5
    rng = random.Random(0)
    for _ in range(100):  # against a brute-force count on a 0.5 s grid
        starts = [rng.randrange(40) / 2 for _ in range(6)]
        spans = [(s, s + rng.choice([0.5, 1.0, 2.5])) for s in starts]
        covered = sum(any(a <= t / 2 < b for a, b in spans) for t in range(200))
        assert busy_seconds(record(a, b) for a, b in spans) == covered / 2


def test_the_clock_runs_between_trials_and_counts_earlier_sessions():
    # 0.5 s short of an hour before: only a redraw after the start can show 1:00:00
    with SearchProgress(10, 3, before=3599.5, tick=0.01, live=True) as progress:
        assert "total 59:59" in progress.bar.postfix
        time.sleep(0.8)
        assert "total 1:00:00" in progress.bar.postfix  # the ticker redrew it
    assert progress._ticker is not None and not progress._ticker.is_alive()


def test_no_redraws_when_stderr_is_not_a_terminal():
    # under pytest stderr is captured: a log file, not a terminal
    with SearchProgress(10, 0, before=3599.5, tick=0.01) as progress:
        time.sleep(0.8)
        assert progress._ticker is None and "total 59:59" in progress.bar.postfix
