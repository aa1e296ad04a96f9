"""The results store: every trial, its lifecycle and the run's metadata.

The store is the single source of truth of a search: controllers are rebuilt from it,
and every other file of a run directory can be regenerated from it. Two implementations
share one interface: :class:`SQLiteStore` (a WAL-mode file in the run directory) and
:class:`MemoryStore`, its in-memory twin for tests and throwaway searches.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Any

from bnn_nas.errors import CheckpointError
from bnn_nas.search.trials import (
    CompletedTrial,
    Proposal,
    TrialRecord,
    TrialResult,
    TrialStatus,
    completed,
)
from bnn_nas.space.genotype import parse_genotype

# Genotypes are immutable: parse each stored text once, however often trials are listed
_parse = functools.lru_cache(maxsize=65536)(parse_genotype)

# 4: as 3, plus `in_process` (a running trial runs inside the search process, the
# `local` and `streams` executors: its death is the search's) and `process_deaths` (how
# often the search process died while this trial ran in it: counted at the next start);
# 3 (read too): as 2, plus a `curve` column: a done trial's per-epoch metrics, a JSON list
# of CurvePoint dicts (train/eval loss and accuracy, lr, seconds);
# 2 (read too): a result is a JSON object of named metrics, any names (objectives read them
# by name), and no curves;
# 1 (read too): the same object with the fixed names of the old accuracy/loss/ops/...
# record. An older store opened for writing gets the columns it lacks (empty), and is
# marked with the schema its rows need: 3 when a result is written, 4 when a trial is
# started inside the search process; its old trials keep empty curves and no deaths.
SCHEMA_VERSION = 4
READABLE_SCHEMAS = (1, 2, 3, 4)
STORE_FILE = "trials.sqlite"  # the store's name inside a run directory


class TransitionError(RuntimeError):
    """A trial was moved against its lifecycle (a bug in the caller, not bad user input)."""


# pending -> running -> done | failed; running -> pending (released, reclaimed)
_ALLOWED = {
    "start": ((TrialStatus.PENDING,), TrialStatus.RUNNING),
    "finish": ((TrialStatus.RUNNING,), TrialStatus.DONE),
    "fail": ((TrialStatus.RUNNING, TrialStatus.PENDING), TrialStatus.FAILED),
    "release": ((TrialStatus.RUNNING,), TrialStatus.PENDING),
}


def _check(record: TrialRecord, action: str) -> None:
    allowed, target = _ALLOWED[action]
    if record.status not in allowed:
        raise TransitionError(
            f"trial {record.id} is {record.status.value}; it cannot become {target.value} "
            f"({action} takes a {' or '.join(s.value for s in allowed)} trial)"
        )


class TrialStore(ABC):
    """What the search engine needs from storage, and nothing more.

    Transitions are checked: pending -> running (start) -> done (finish) | failed (fail);
    running -> pending (release); a finished trial is never restarted or finished again.
    """

    @abstractmethod
    def get_meta(self, key: str) -> Any: ...

    @abstractmethod
    def set_meta(self, key: str, value: Any) -> None: ...

    @abstractmethod
    def add(self, proposals: list[Proposal]) -> list[int]:
        """Store new pending trials; returns their ids (increasing)."""

    @abstractmethod
    def trials(self) -> list[TrialRecord]:
        """Every trial, by id."""

    @abstractmethod
    def _update(self, trial_id: int, **changes: Any) -> None: ...

    @abstractmethod
    def get(self, trial_id: int) -> TrialRecord:
        """One trial by id (an indexed lookup); KeyError when there is none."""

    def completed(self) -> list[CompletedTrial]:
        """The finished, successful trials, by id; each has its result."""
        return completed(self.trials())

    def start(self, trial_id: int, *, in_process: bool = False) -> None:
        """pending -> running; counts an attempt. ``in_process``: the trial runs inside the
        search process (the ``local`` and ``streams`` executors), where it can take the
        whole process down; recorded before it runs, so the next start knows (``reclaim``).
        """
        record = self.get(trial_id)
        _check(record, "start")
        self._update(
            trial_id, status=TrialStatus.RUNNING, attempts=record.attempts + 1,
            started_at=time.time(), in_process=in_process,
        )  # fmt: skip

    def finish(self, trial_id: int, result: TrialResult) -> None:
        """running -> done, with the trial's result."""
        _check(self.get(trial_id), "finish")
        self._update(
            trial_id, status=TrialStatus.DONE, result=result, error=None, finished_at=time.time()
        )

    def fail(self, trial_id: int, error: str) -> None:
        """running (or pending: it could not be started) -> failed, with the error."""
        _check(self.get(trial_id), "fail")
        self._update(trial_id, status=TrialStatus.FAILED, error=error, finished_at=time.time())

    def release(self, trial_id: int, *, count_attempt: bool = True) -> None:
        """running -> pending: the trial will be tried again.

        ``count_attempt=False`` for a stop the user asked for (Ctrl-C), which says nothing
        about the candidate and must not use up its attempts.
        """
        record = self.get(trial_id)
        _check(record, "release")
        attempts = record.attempts if count_attempt else max(0, record.attempts - 1)
        self._update(trial_id, status=TrialStatus.PENDING, attempts=attempts)

    def reclaim(self, *, max_process_deaths: int | None = None) -> list[int]:
        """At start, ``running`` rows that a dead search process left: rerun (or failed).

        A row still ``running`` at start was cut off by the search process's own death: a
        kill (the user's, a scheduler's preemption, a timeout), the machine's power, or,
        where the trial ran inside the search process (``in_process``: ``local``,
        ``streams``), possibly the candidate itself (a segfault, the OOM killer, a CUDA
        fault); the store cannot tell these apart. So the death never uses an attempt
        (``executor.max_attempts`` counts worker deaths only, see ``release``): the trial
        goes back to pending. An ``in_process`` trial's death is counted
        (``process_deaths`` + 1), and with ``max_process_deaths`` set (the opt-in
        ``executor.max_process_deaths``) a trial whose deaths reach it is failed
        (:func:`died_error`) instead of rerun. Returns the ids that went back to pending.
        """
        reclaimed = []
        for record in self.trials():
            if record.status is not TrialStatus.RUNNING:
                continue
            if not record.in_process:
                self.release(record.id, count_attempt=False)
                reclaimed.append(record.id)
                continue
            if fails_at_resume(record, max_process_deaths):
                assert max_process_deaths is not None
                self._count_death(record, died_error(record.process_deaths + 1,
                                                     max_process_deaths))  # fmt: skip
            else:
                self._count_death(record, None)
                reclaimed.append(record.id)
        return reclaimed

    def count_death(self, cause: str, *, limit: int) -> list[TrialRecord]:
        """The search process was seen to die by a candidate's hand (``cause``, e.g.
        ``SIGSEGV``: the supervisor of ``bnn-nas search`` saw it): each trial running in
        it (``in_process``) has the death counted, as ``reclaim`` counts one, and is failed
        where its deaths reach ``limit``, else it goes back to pending (no attempt used).
        Trials of workers are left to ``reclaim``. Returns the trials counted, as now."""
        counted = []
        for record in self.trials():
            if record.status is not TrialStatus.RUNNING or not record.in_process:
                continue
            deaths = record.process_deaths + 1
            error = died_error(deaths, limit, cause) if deaths >= limit else None
            self._count_death(record, error)
            counted.append(self.get(record.id))
        return counted

    def _count_death(self, record: TrialRecord, error: str | None) -> None:
        """``record`` (running in the search process) died with it: failed with ``error``,
        or back to pending with its attempt given back; one write: a kill here loses
        nothing."""
        deaths = record.process_deaths + 1
        if error is not None:
            _check(record, "fail")
            self._update(record.id, status=TrialStatus.FAILED, process_deaths=deaths,
                         error=error, finished_at=time.time())  # fmt: skip
        else:
            _check(record, "release")
            self._update(record.id, status=TrialStatus.PENDING, process_deaths=deaths,
                         attempts=max(0, record.attempts - 1))  # fmt: skip


def fails_at_resume(record: TrialRecord, max_process_deaths: int | None) -> bool:
    """Whether the next start records ``record`` failed: it was running inside the search
    process when that died, and this death reaches ``max_process_deaths`` (``reclaim``)."""
    return (
        record.status is TrialStatus.RUNNING
        and record.in_process
        and max_process_deaths is not None
        and record.process_deaths + 1 >= max_process_deaths
    )


def died_error(deaths: int, max_process_deaths: int, cause: str | None = None) -> str:
    """The error of a trial failed for killing the search process: at a resume
    (``reclaim``), or seen by the supervisor, which names the signal (``count_death``)."""
    times = "1 time" if deaths == 1 else f"{deaths} times"
    if cause is None:
        return (f"the search process died while training this trial {times} (executor."
                f"max_process_deaths = {max_process_deaths}); recorded as failed")  # fmt: skip
    return (f"the search process died while training this trial {times}, the last killed "
            f"by {cause}; recorded as failed at {max_process_deaths} (executor."
            "max_process_deaths)")  # fmt: skip


class MemoryStore(TrialStore):
    """In-memory twin of :class:`SQLiteStore` (same behaviour, nothing on disk)."""

    def __init__(self) -> None:
        self._meta: dict[str, Any] = {}
        self._trials: dict[int, TrialRecord] = {}

    def get_meta(self, key: str) -> Any:
        return json.loads(json.dumps(self._meta.get(key)))

    def set_meta(self, key: str, value: Any) -> None:
        self._meta[key] = json.loads(json.dumps(value))

    def add(self, proposals: list[Proposal]) -> list[int]:
        ids = []
        for p in proposals:
            trial_id = len(self._trials) + 1
            self._trials[trial_id] = TrialRecord(
                id=trial_id, genotype=p.genotype, status=TrialStatus.PENDING,
                origin=json.loads(json.dumps(p.origin)), created_at=time.time(),
            )  # fmt: skip
            ids.append(trial_id)
        return ids

    def trials(self) -> list[TrialRecord]:
        return [self._trials[i] for i in sorted(self._trials)]

    def get(self, trial_id: int) -> TrialRecord:
        return self._trials[trial_id]

    def _update(self, trial_id: int, **changes: Any) -> None:
        self._trials[trial_id] = replace(self._trials[trial_id], **changes)


_CREATE = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    genotype TEXT NOT NULL,
    hash TEXT NOT NULL,
    status TEXT NOT NULL,
    origin TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    curve TEXT,
    in_process INTEGER,
    process_deaths INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS trials_hash ON trials (hash);
"""


_TABLES = {"meta": {"key", "value"}, "trials": {"id", "genotype", "hash", "status", "origin",
          "attempts", "result", "error", "created_at", "started_at", "finished_at"}}  # fmt: skip

_COLUMNS = (
    "id, genotype, status, origin, attempts, result, error, created_at, started_at, finished_at"
)
CURVE_COLUMN = "curve"  # schema 3; a store of schema 1 or 2 read as it lies has none
# schema 4's columns, each with its type and what a store read as it lies without it holds
DEATH_COLUMNS = {"in_process": ("INTEGER", "NULL"),
                 "process_deaths": ("INTEGER NOT NULL DEFAULT 0", "0")}  # fmt: skip


def _record(row: tuple) -> TrialRecord:
    result = None
    if row[5] is not None:
        curve = () if row[10] is None else json.loads(row[10])
        result = TrialResult(TrialResult.from_dict(json.loads(row[5])).metrics, curve=curve)
    return TrialRecord(
        id=row[0],
        genotype=_parse(row[1]),
        status=TrialStatus(row[2]),
        origin=json.loads(row[3]),
        attempts=row[4],
        result=result,
        error=row[6],
        created_at=row[7],
        started_at=row[8],
        finished_at=row[9],
        in_process=bool(row[11]),
        process_deaths=row[12] or 0,
    )


def _tables(db: sqlite3.Connection) -> dict[str, set[str]]:
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {n: {r[1] for r in db.execute(f"PRAGMA table_info({n!r})")} for n in names}


class SQLiteStore(TrialStore):
    """The store of a run directory: one SQLite file in WAL mode (crash-safe, readable).

    ``read_only=True`` (status, derive, plot) opens it with SQLite's ``mode=ro``: nothing
    is created or changed, a file that is not a bnn-nas store is refused before anything
    reads it, and a store on read-only media can be read. A read-write open refuses a
    foreign SQLite file too, rather than adding tables to it.
    """

    def __init__(self, path: Path | str, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        foreign = (
            f"{self.path} is not a bnn-nas results store; point at a run directory of "
            "`bnn-nas search` or start a new one"
        )
        try:
            if read_only:
                self._db = self._connect_read_only()
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            tables = _tables(self._db)
            if any(tables.get(n, set()) < cols for n, cols in _TABLES.items() if n in tables) or (
                tables and not set(_TABLES) <= set(tables)
            ):
                self._db.close()
                raise CheckpointError(foreign)
            if read_only:
                if not tables:
                    self._db.close()
                    raise CheckpointError(foreign)
            else:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_CREATE)
            version = self.get_meta("schema_version")
        except sqlite3.DatabaseError as err:
            raise CheckpointError(
                f"{self.path} is not a readable bnn-nas results store ({str(err)[:80]}); "
                "point at a run directory or start a new one"
            ) from None
        if version is None and not read_only:
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version is None:
            raise CheckpointError(foreign)
        elif version not in READABLE_SCHEMAS:
            raise CheckpointError(
                f"{self.path} has store schema {str(version)[:20]}; this bnn-nas reads "
                f"{', '.join(map(str, READABLE_SCHEMAS))}"
            )
        self.schema_version = SCHEMA_VERSION if version is None else version
        columns = _tables(self._db)["trials"]
        if CURVE_COLUMN not in columns and not read_only:  # schema 1 or 2: curves from now on
            self._db.execute(f"ALTER TABLE trials ADD COLUMN {CURVE_COLUMN} TEXT")
            columns = {*columns, CURVE_COLUMN}
        for name, (kind, _) in DEATH_COLUMNS.items():  # schema 1 to 3: counted from now on
            if name not in columns and not read_only:
                self._db.execute(f"ALTER TABLE trials ADD COLUMN {name} {kind}")
                columns = {*columns, name}
        curve = CURVE_COLUMN if CURVE_COLUMN in columns else "NULL"
        deaths = ", ".join(n if n in columns else empty for n, (_, empty) in DEATH_COLUMNS.items())
        self._select = f"SELECT {_COLUMNS}, {curve}, {deaths} FROM trials"

    def _connect_read_only(self) -> sqlite3.Connection:
        """A store no process is writing (no ``-wal`` file beside it) is read as it lies
        (``immutable=1``: SQLite then creates no ``-shm``/``-wal`` files either); one being
        written is read with ``mode=ro``, or, where its folder is read-only media,
        as it lies."""
        uri = self.path.absolute().as_uri()
        if Path(f"{self.path}-wal").exists():
            try:
                db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None,
                                     timeout=30)  # fmt: skip
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return db
            except sqlite3.OperationalError:
                pass
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)

    def close(self) -> None:
        self._db.close()

    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def add(self, proposals: list[Proposal]) -> list[int]:
        ids = []
        with self._db:  # one transaction: all proposals or none
            self._db.execute("BEGIN")
            for p in proposals:
                cursor = self._db.execute(
                    "INSERT INTO trials (genotype, hash, status, origin, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (str(p.genotype), p.genotype.hash, TrialStatus.PENDING.value,
                     json.dumps(p.origin), time.time()),
                )  # fmt: skip
                ids.append(int(cursor.lastrowid))
        return ids

    def trials(self) -> list[TrialRecord]:
        rows = self._db.execute(f"{self._select} ORDER BY id").fetchall()
        return [_record(row) for row in rows]

    def get(self, trial_id: int) -> TrialRecord:
        row = self._db.execute(f"{self._select} WHERE id = ?", (trial_id,))
        found = row.fetchone()
        if found is None:
            raise KeyError(trial_id)
        return _record(found)

    def _update(self, trial_id: int, **changes: Any) -> None:
        columns, values = [], []
        for key, value in changes.items():
            if key == "status":
                value = value.value
            elif key == "result":
                curve = None if value is None else [p.to_dict() for p in value.curve]
                columns.append(f"{CURVE_COLUMN} = ?")
                values.append(json.dumps(curve) if curve else None)
                value = None if value is None else json.dumps(value.to_dict())
                if value is not None:
                    self._needs_schema(3)
            elif key == "in_process":
                value = int(value)
                if value:
                    self._needs_schema(4)
            columns.append(f"{key} = ?")
            values.append(value)
        self._db.execute(
            f"UPDATE trials SET {', '.join(columns)} WHERE id = ?", (*values, trial_id)
        )

    def _needs_schema(self, version: int) -> None:
        """An older store is marked with the schema its rows now need (readers of older
        schemas then refuse it rather than misread it)."""
        if self.schema_version < version:
            self.set_meta("schema_version", version)
            self.schema_version = version
