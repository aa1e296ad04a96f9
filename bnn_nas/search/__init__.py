"""Search: propose, train, score and choose binary architectures.

The public surface, by the job each part does:

- the loop: :class:`SearchRun` (takes a store, an executor and a controller object, or the
  one the config names) and :class:`Progress` (``bnn_nas.search.loop``);
- the run directory: :func:`open_search`, :func:`check_resumable`,
  :func:`default_run_dir` (``bnn_nas.search.engine``);
- controllers: :class:`Controller` and the built-ins, :func:`make_controller`
  (``bnn_nas.search.controllers``; registered in ``bnn_nas.extensions.CONTROLLERS``);
- executors: :class:`Executor`, :class:`LocalExecutor`, :func:`make_executor`,
  :func:`format_error` (``bnn_nas.search.executors``; the table is
  ``bnn_nas.extensions.EXECUTORS``);
- trials and storage: :class:`TrialRecord`, :class:`TrialResult`, :class:`CompletedTrial`,
  :class:`Proposal`, :class:`TrialStatus`, :class:`SQLiteStore`, :class:`MemoryStore`;
- choosing results: :func:`choose`, :func:`best_trial`, :func:`front`, :func:`knee`,
  :func:`open_run` (``bnn_nas.search.derive``); Pareto helpers in ``bnn_nas.search.pareto``.

Names are imported on first use (``from bnn_nas.search import SearchRun``), so importing
one submodule does not load the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "SearchRun": "loop", "Progress": "loop",
    "open_search": "engine", "check_resumable": "engine", "default_run_dir": "engine",
    "with_budget": "engine",
    "Controller": "controllers", "RandomSearch": "controllers",
    "RegularizedEvolution": "controllers", "ParetoSearch": "controllers",
    "EvolutionSettings": "controllers", "ParetoSettings": "controllers",
    "make_controller": "controllers",
    "Executor": "executors", "LocalExecutor": "executors", "Outcome": "executors",
    "OutcomeKind": "executors", "make_executor": "executors", "format_error": "executors",
    "Evaluator": "evaluator", "SearchData": "evaluator", "load_search_data": "evaluator",
    "TrialRecord": "trials", "TrialResult": "trials", "CompletedTrial": "trials",
    "Proposal": "trials", "TrialStatus": "trials", "completed": "trials",
    "TrialStore": "store", "SQLiteStore": "store", "MemoryStore": "store",
    "TransitionError": "store", "STORE_FILE": "store",
    "choose": "derive", "best_trial": "derive", "front": "derive", "knee": "derive",
    "open_run": "derive", "open_results": "derive",
    "non_dominated_sort": "pareto", "pareto_front": "pareto", "crowding_distance": "pareto",
}  # fmt: skip

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'bnn_nas.search' has no attribute {name!r}")
    return getattr(importlib.import_module(f"bnn_nas.search.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
