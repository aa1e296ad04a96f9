"""A trial's training budget and rung, as recorded in its row (multi-fidelity search).

A multi-fidelity controller (:mod:`bnn_nas.search.successive_halving`) writes them into
the trial's ``origin``::

    {"kind": "promotion", "parent": 7, "rung": 1, "bracket": 0,
     "budget": {"epochs": 3, "train_size": 2000}}

so a search is rebuilt from its rows as every other one is (no store schema change), and
executors hand the budget to the evaluator with the genotype. A trial without a budget
trains with the config's ``train.epochs`` on the whole search-train split, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Budget:
    """How one trial trains: ``epochs`` (None: ``train.epochs``) on ``train_size``
    search-train images (None: all of them).

    Continuation (``search.promotion: continue``): every rung trains under the schedule
    of ``schedule_epochs`` epochs (the last rung's), stopped after ``epochs``; the trial
    saves its weights and optimiser state as ``save`` and, when promoted, starts from the
    lower rung's ``resume`` (names of files in the evaluator's checkpoint folder).
    """

    epochs: int | None = None
    train_size: int | None = None
    schedule_epochs: int | None = None
    save: str | None = None
    resume: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Budget:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def checkpoint_name(trial_id: int) -> str:
    """The file a continued trial's state is saved as (in the checkpoint folder)."""
    return f"trial-{trial_id}.pt"


def budget_of(record: Any) -> Budget | None:
    """The budget a trial row asks for (None: the config's training)."""
    origin = getattr(record, "origin", None) or {}
    data = origin.get("budget")
    if not isinstance(data, Mapping):
        return None
    budget = Budget.from_dict(data)
    if data.get("continue"):  # continued trials: save own state, start from the parent's
        parent = origin.get("parent") if origin.get("kind") == "promotion" else None
        budget = Budget(
            budget.epochs, budget.train_size, budget.schedule_epochs,
            save=checkpoint_name(record.id),
            resume=None if parent is None else checkpoint_name(int(parent)),
        )  # fmt: skip
    return budget


def budget_kwargs(record: Any) -> dict[str, Any]:
    """``{"budget": ...}`` for an evaluator call when the trial has one, else nothing (so
    evaluators that take only a genotype keep working for plain searches)."""
    budget = budget_of(record)
    return {} if budget is None else {"budget": budget}


def rung_of(record: Any) -> int | None:
    """The rung of a multi-fidelity trial (0 the cheapest), None for other trials."""
    rung = (getattr(record, "origin", None) or {}).get("rung")
    return rung if isinstance(rung, int) and not isinstance(rung, bool) else None


def top_rung(records: Iterable[R]) -> list[R]:
    """The records at the highest rung among them (all of them when none has a rung).

    Accuracies of different rungs were measured under different budgets and do not
    compare; derive, status and progress choose among the highest rung reached.
    """
    records = list(records)
    rungs = [r for r in (rung_of(x) for x in records) if r is not None]
    if not rungs:
        return records
    highest = max(rungs)
    return [x for x in records if rung_of(x) == highest]


def describe_budget(origin: Mapping[str, Any]) -> str:
    """``rung 1 (3 ep, 2000 img)`` for a multi-fidelity trial's origin, else ``""``."""
    rung = origin.get("rung")
    if rung is None:
        return ""
    data = origin.get("budget") or {}
    parts = []
    if data.get("epochs") is not None:
        parts.append(f"{data['epochs']} ep")
    if data.get("train_size") is not None:
        parts.append(f"{data['train_size']} img")
    return f"rung {rung}" + (f" ({', '.join(parts)})" if parts else "")


def rung_label(record: Any, rung: int | str | None = "top") -> str:
    """`` at rung 2 (the highest reached)`` for a multi-fidelity trial, else ``""``."""
    at = rung_of(record)
    if at is None:
        return ""
    why = {"top": ", the highest reached", "all": ", among all rungs"}.get(str(rung), "")
    return f" at rung {at}{why}"


def rung_table(records: Iterable[Any]) -> list[tuple[int, dict[str, int], str]]:
    """(rung, trials by status, ``rung 1 (3 ep, 2000 img)``) of a multi-fidelity search,
    lowest rung first; empty for other searches (what ``status`` prints)."""
    rows: dict[int, dict[str, int]] = {}
    budgets: dict[int, str] = {}
    for record in records:
        rung = rung_of(record)
        if rung is None:
            continue
        counts = rows.setdefault(rung, {})
        counts[record.status.value] = counts.get(record.status.value, 0) + 1
        budgets.setdefault(rung, describe_budget(record.origin))
    return [(rung, rows[rung], budgets[rung]) for rung in sorted(rows)]
