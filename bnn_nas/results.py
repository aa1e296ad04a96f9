"""A search's results as an object: :func:`load_run` and :class:`SearchResults`.

The object is a snapshot of the run directory's store (``refresh()`` reads it again, e.g.
while the search runs); it reads the search's objectives by name, as derive, status and
pareto.csv do, and works on every store bnn-nas has written (schema 1 too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnn_nas.errors import BnnNasError, ConfigError
from bnn_nas.objectives import Objective

if TYPE_CHECKING:
    import pandas

    from bnn_nas.search.trials import CompletedTrial, TrialRecord

# which way a metric is better when the search did not name it as an objective
_MAXIMIZED = ("accuracy",)


class MissingExtraError(BnnNasError, ImportError):
    """An optional package bnn-nas needs here is not installed (the message names the
    extra that installs it)."""


def load_run(run_dir: str | Path) -> SearchResults:
    """The results of the search in ``run_dir`` (read only; it may still be running)."""
    from bnn_nas.search.derive import open_run_config

    records, objectives, config = open_run_config(Path(run_dir))
    return SearchResults(Path(run_dir), tuple(records), objectives, config)


@dataclass(frozen=True)
class SearchResults:
    """The trials of one search and its objectives.

    ``trials``: every trial record (id, genotype, status, origin, attempts, result with its
    named metrics, error, timestamps), by id. ``best``/``pareto`` take objective names.
    """

    run_dir: Path | None
    trials: tuple[TrialRecord, ...]
    objectives: tuple[Objective, ...]
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # as stored

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.counts.items() if n) or "no trials"
        best = self.best()
        shown = ""
        if best is not None:
            from bnn_nas.objectives import labelled

            values = " ".join(labelled(o.name, o.value(best.result.metrics))
                              for o in self.objectives)  # fmt: skip
            shown = f"; best: trial {best.id} {values}"
        return f"SearchResults({self.run_dir}: {counts}{shown})"

    def refresh(self) -> SearchResults:
        """The same run directory read again."""
        if self.run_dir is None:
            raise BnnNasError("these results have no run directory to read again")
        return load_run(self.run_dir)

    @property
    def completed(self) -> list[CompletedTrial]:
        """The trials that finished with a result."""
        from bnn_nas.search.trials import completed

        return completed(self.trials)

    @property
    def counts(self) -> dict[str, int]:
        """Trials by status: done, failed, running, pending."""
        return {s: sum(r.status.value == s for r in self.trials)
                for s in ("done", "failed", "running", "pending")}  # fmt: skip

    @property
    def budget(self) -> int | None:
        return (self.config.get("search") or {}).get("budget")

    @property
    def finished(self) -> bool:
        """Whether the search has spent its budget (nothing running or pending)."""
        return bool(self.to_dict()["finished"])

    def trial(self, trial_id: int) -> TrialRecord:
        for record in self.trials:
            if record.id == trial_id:
                return record
        raise KeyError(trial_id)

    def objective(self, name: str | Objective, direction: str | None = None) -> Objective:
        """An objective by metric name: the search's own (its direction and limit), else
        ``direction`` or the metric's natural one (accuracy up, costs and losses down)."""
        if isinstance(name, Objective):
            return name
        for o in self.objectives:
            if o.name == name and direction in (None, o.direction):
                return o
        return Objective(name, direction or ("maximize" if name in _MAXIMIZED else "minimize"))

    def _objectives(self, names: Sequence[str | Objective] | None) -> tuple[Objective, ...]:
        if names is None:
            return self.objectives
        if isinstance(names, str | Objective):
            names = [names]
        objectives = tuple(self.objective(n) for n in names)
        if not objectives:
            raise ConfigError("name at least one objective, e.g. pareto(['accuracy', 'ops'])")
        return objectives

    def best(
        self,
        objective: str | Objective | None = None,
        *,
        direction: str | None = None,
        rung: int | str | None = None,
    ) -> CompletedTrial | None:
        """The best finished trial by ``objective`` (default the search's primary one),
        within the search's limits; ties go to its other objectives, then the earlier
        trial. None while no trial has finished. A multi-fidelity search's trials are
        compared at the highest rung reached (``rung``: ``"all"`` or a number, as for
        derive)."""
        from bnn_nas.search.derive import rank_by_accuracy

        first = self.objectives[0] if objective is None else self.objective(objective, direction)
        rest = tuple(o for o in self.objectives if o.name != first.name)
        ranking = rank_by_accuracy(self._pool(rung), (first, *rest))
        return ranking[0] if ranking else None

    def pareto(
        self, objectives: Sequence[str | Objective] | None = None, *, rung: int | str | None = None
    ) -> list[CompletedTrial]:
        """The non-dominated finished trials over ``objectives`` (names; default the
        search's), within the search's limits, in `derive --by pareto`'s order (accuracy vs
        OPs: by ascending OPs), at the highest rung reached (``rung``): pareto.csv's."""
        from bnn_nas.search.derive import front

        pool = self._pool(rung)
        return front(pool, self._objectives(objectives)) if pool else []

    def _pool(self, rung: int | str | None) -> list[CompletedTrial]:
        """The finished trials within the search's limits, at ``rung``."""
        from bnn_nas.search.derive import at_rung

        limited = [o for o in self.objectives if o.limit is not None]
        within = [r for r in self.completed if all(o.within(r.result.metrics) for o in limited)]
        return at_rung(within, rung)

    def derive(
        self,
        by: str = "accuracy",
        *,
        max_ops: float | None = None,
        rung: int | str | None = None,
        output: str | Path | bool | None = None,
    ) -> CompletedTrial:
        """The final genotype's trial, as `bnn-nas derive` picks it: ``by="accuracy"`` (the
        best by the primary objective) or ``"pareto"`` (the knee of the front); ``max_ops``
        a limit on OPs; ``rung`` as derive's --rung. ``output``: a genotype file to write
        as derive does (YAML, DARTS text and drawing beside it); ``True``:
        RUN_DIR/genotype.yaml."""
        from bnn_nas.search.derive import choose, write_derived

        chosen, _ = choose(list(self.trials), by, max_ops, self.objectives, rung)
        if output:
            if output is True:
                if self.run_dir is None:
                    raise BnnNasError("these results have no run directory: give output=PATH")
                output = self.run_dir / "genotype.yaml"
            write_derived(chosen, Path(output), by, max_ops, self.objectives)
        return chosen

    def to_dict(self) -> dict[str, Any]:
        """JSON data, as `bnn-nas status --format json` prints it."""
        from bnn_nas.search.export import run_data

        return run_data(self.run_dir or "", list(self.trials), self.objectives, self.config)

    def rows(self) -> list[dict[str, Any]]:
        """trials.csv's rows (id, status, hash, attempts, origin, parent, every metric,
        error, genotype); a metric a trial lacks is None, ``parent`` is the parent's id
        (None for a random trial; a list for several parents)."""
        from bnn_nas.search.export import result_fields, trial_row

        records = list(self.trials)
        fields = result_fields(records)
        metrics = set(fields)
        rows = []
        for record in records:
            row = {k: (None if v == "" and k in metrics else v)
                   for k, v in trial_row(record, fields).items()}  # fmt: skip
            row["parent"] = record.origin.get("parent", record.origin.get("parents"))
            rows.append(row)
        return rows

    def curves(self, trial: int | None = None) -> list[dict[str, Any]]:
        """The learning curves: one row per (trial, epoch), curves.csv's columns (``trial``,
        ``epoch``, train/eval loss and accuracy, lr, seconds); ``trial``: that one's only.
        Empty for trials stored without curves (before store schema 3)."""
        records = self.trials if trial is None else (self.trial(trial),)
        return [{"trial": r.id, **point.to_dict()}
                for r in records if r.result is not None for point in r.result.curve]  # fmt: skip

    def to_pandas(self, table: str = "trials") -> pandas.DataFrame:
        """trials.csv as a pandas DataFrame indexed by trial id; ``table="curves"``: the
        learning curves (:meth:`curves`), one row per (trial, epoch). Needs pandas (the
        ``[pandas]`` extra)."""
        if table not in ("trials", "curves"):
            raise ConfigError(f"table {table!r} is not one of trials, curves")
        try:
            import pandas
        except ImportError:
            raise MissingExtraError(
                "SearchResults.to_pandas needs pandas: pip install 'bnn-nas[pandas]' (or pip "
                "install pandas)"
            ) from None
        if table == "curves":
            from bnn_nas.search.trials import CURVE_FIELDS

            return pandas.DataFrame(self.curves(), columns=["trial", *CURVE_FIELDS])
        from bnn_nas.search.export import csv_header

        columns = list(csv_header(list(self.trials)))  # trials.csv's, even with no trial yet
        return pandas.DataFrame(self.rows(), columns=columns).set_index("id")
