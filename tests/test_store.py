"""Both stores behave the same: lifecycle, reclaim after a crash, metadata, persistence."""

from __future__ import annotations

import pytest

from bnn_nas.errors import CheckpointError
from bnn_nas.search.store import MemoryStore, SQLiteStore, TransitionError
from bnn_nas.search.trials import CompletedTrial, Proposal, TrialResult, TrialStatus
from bnn_nas.space.genotype import Genotype

G1 = Genotype([("a", 0), ("b", 1)], [2], [("c", 0), ("d", 1)], [2])
G2 = Genotype([("a", 1), ("b", 0)], [2], [("c", 0), ("d", 1)], [2])
RESULT = TrialResult.of(
    accuracy=0.5, loss=1.2, train_loss=1.1, bops=1000, flops=20, ops=35.6, binary_params=100,
    float_params=10, bytes=52.5, train_seconds=3.0,
)  # fmt: skip


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    if request.param == "memory":
        return MemoryStore()
    return SQLiteStore(tmp_path / "trials.sqlite")


def test_lifecycle(store):
    ids = store.add(
        [Proposal(G1, {"kind": "random"}), Proposal(G2, {"kind": "mutation", "parent": 1})]
    )
    assert ids == [1, 2]
    assert [r.status for r in store.trials()] == [TrialStatus.PENDING] * 2
    store.start(1)
    running = store.get(1)
    assert running.status is TrialStatus.RUNNING and running.attempts == 1
    store.finish(1, RESULT)
    store.start(2)
    store.fail(2, "ValueError: boom")
    one, two = store.trials()
    assert one.done and one.result == RESULT and one.genotype == G1
    assert two.status is TrialStatus.FAILED and two.error == "ValueError: boom"
    assert two.origin == {"kind": "mutation", "parent": 1}
    assert one.finished_at >= one.started_at >= one.created_at


def test_reclaim_after_the_search_died_uses_no_attempt(store):
    """A row still running at start was cut off by the search process's own death (a
    kill, power loss): not the candidate's fault, so however often it happens the trial
    keeps its attempts and is never failed for it."""
    store.add([Proposal(G1), Proposal(G2)])
    for _ in range(5):  # killed five times during trial 1
        store.start(1)
        assert store.reclaim() == [1]
        assert store.get(1).status is TrialStatus.PENDING and store.get(1).attempts == 0
    store.start(1)
    store.release(1)  # a worker died under it while the search lived: that counts
    assert store.get(1).attempts == 1
    store.start(1)
    assert store.reclaim() == [1]
    assert store.get(1).attempts == 1 and store.get(1).status is TrialStatus.PENDING


def test_a_death_the_supervisor_saw_is_counted_for_the_trials_in_the_process(store):
    """count_death (the supervisor of `bnn-nas search` saw a candidate's signal): each
    trial running in the search process has it counted, using no attempt, and is failed at
    the limit, the signal named; a worker's trial and a pending one are left as they are."""
    store.add([Proposal(G1), Proposal(G2), Proposal(G1), Proposal(G2)])
    store.start(1, in_process=True)
    store.start(2, in_process=True)
    store.start(3)  # in a worker
    assert [(r.id, r.status, r.process_deaths) for r in store.count_death("SIGSEGV", limit=2)
            ] == [(1, TrialStatus.PENDING, 1), (2, TrialStatus.PENDING, 1)]  # fmt: skip
    store.start(1, in_process=True)
    (failed,) = store.count_death("SIGKILL", limit=2)
    assert failed.id == 1 and failed.status is TrialStatus.FAILED and failed.attempts == 1
    assert failed.error == ("the search process died while training this trial 2 times, the "
                            "last killed by SIGKILL; recorded as failed at 2 (executor."
                            "max_process_deaths)")  # fmt: skip
    assert [(r.status, r.attempts, r.process_deaths) for r in store.trials()[1:]] == [
        (TrialStatus.PENDING, 0, 1), (TrialStatus.RUNNING, 1, 0), (TrialStatus.PENDING, 0, 0)]
    assert store.count_death("SIGKILL", limit=2) == []


def test_meta_round_trip(store):
    assert store.get_meta("config") is None
    store.set_meta("config", {"a": [1, 2], "b": None})
    store.set_meta("config", {"a": [3]})
    assert store.get_meta("config") == {"a": [3]}


def test_sqlite_persists_and_rejects_foreign_files(tmp_path):
    path = tmp_path / "trials.sqlite"
    first = SQLiteStore(path)
    first.add([Proposal(G1)])
    first.start(1)
    first.finish(1, RESULT)
    first.close()
    again = SQLiteStore(path)
    (record,) = again.trials()
    assert record.result == RESULT and record.genotype == G1
    foreign = tmp_path / "foreign.sqlite"
    foreign.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CheckpointError, match="not a readable bnn-nas results store"):
        SQLiteStore(foreign)


def test_transitions_are_checked_and_get_is_indexed(store):
    store.add([Proposal(G1), Proposal(G2)])
    with pytest.raises(TransitionError, match=r"trial 1 is pending; it cannot become done"):
        store.finish(1, RESULT)
    with pytest.raises(TransitionError, match="cannot become pending"):
        store.release(1)
    store.start(1)
    with pytest.raises(TransitionError, match="trial 1 is running; it cannot become running"):
        store.start(1)
    store.finish(1, RESULT)
    for again in (lambda: store.start(1), lambda: store.finish(1, RESULT),
                  lambda: store.fail(1, "late"), lambda: store.release(1)):  # fmt: skip
        with pytest.raises(TransitionError, match="trial 1 is done"):
            again()
    store.start(2)
    store.fail(2, "boom")
    with pytest.raises(TransitionError, match="trial 2 is failed"):
        store.start(2)
    assert store.get(2).status is TrialStatus.FAILED and store.get(1).result == RESULT
    with pytest.raises(KeyError):
        store.get(3)
    (done,) = store.completed()
    assert isinstance(done, CompletedTrial) and done.id == 1 and done.result == RESULT
    with pytest.raises(ValueError, match="not done"):
        CompletedTrial(**{**vars(store.get(2))})


def test_a_trial_that_kills_the_search_process_is_failed_at_max_process_deaths(store):
    """A trial started inside the search process (``in_process``: local, streams) that is
    still running at the next start may have killed it: with max_process_deaths set, its
    deaths are counted (using no attempt) and once they reach it, it is failed instead of
    rerun forever."""
    store.add([Proposal(G1), Proposal(G2)])
    store.start(1, in_process=True)
    assert store.get(1).in_process and store.get(1).process_deaths == 0
    assert store.reclaim(max_process_deaths=2) == [1]  # died once: again
    once = store.get(1)
    assert once.status is TrialStatus.PENDING and once.attempts == 0
    assert once.process_deaths == 1
    store.start(1, in_process=True)
    store.start(2)  # in a worker: the same death says nothing about trial 2
    assert store.reclaim(max_process_deaths=2) == [2]
    failed, other = store.get(1), store.get(2)
    assert failed.status is TrialStatus.FAILED and failed.attempts == 1
    assert failed.process_deaths == 2 and failed.finished_at >= failed.started_at
    assert failed.error == ("the search process died while training this trial 2 times "
                            "(executor.max_process_deaths = 2); recorded as failed")
    assert other.status is TrialStatus.PENDING and other.attempts == 0
    assert not other.in_process and other.process_deaths == 0
    assert store.reclaim(max_process_deaths=2) == []  # nothing running
    assert store.get(1) == failed


def test_by_default_a_trial_that_died_with_the_search_process_is_always_rerun(store):
    """Unset max_process_deaths (the default): a user's kill looks like a candidate's in
    the store, so an in-process trial's deaths are counted but never fail it, and none
    uses an attempt (max_attempts is for worker deaths only)."""
    store.add([Proposal(G1)])
    for deaths in range(1, 6):  # killed five times during trial 1
        store.start(1, in_process=True)
        assert store.reclaim() == [1]
        record = store.get(1)
        assert record.status is TrialStatus.PENDING and record.attempts == 0
        assert record.process_deaths == deaths
    store.start(1, in_process=True)
    assert store.reclaim(max_process_deaths=7) == [1]  # 6 of 7: again
    store.start(1, in_process=True)
    store.finish(1, RESULT)
    done = store.get(1)
    assert done.done and done.attempts == 1 and done.process_deaths == 6
