"""``bnn-nas export-optuna RUN STORAGE``: any search's trials as an Optuna study, for
optuna-dashboard (``optuna-dashboard sqlite:///study.db``: trials, values, Pareto front).

The study is a copy: the run's store stays the source of truth and is only read. Each
trial becomes one Optuna trial in id order, with the space's parameters (one categorical
per edge op and input, as the ``optuna`` controller samples them), the search's objectives
as its values (COMPLETE), or FAIL for a failed trial, WAITING for one not run yet, RUNNING
for one running; user attributes name the bnn-nas trial (``trial``, ``hash``,
``genotype``, ``origin``, ``parent``), its metrics, its error, and its learning curve's
per-epoch train loss is the trial's intermediate values. The study's metric names are the
objectives'.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

from bnn_nas.errors import ConfigError
from bnn_nas.search.derive import open_run_config
from bnn_nas.search.optuna_search import (
    distributions,
    frozen_trial,
    optuna_module,
    quiet_optuna,
)
from bnn_nas.search.trials import TrialRecord
from bnn_nas.space.search_space import load_search_space


def user_attrs(record: TrialRecord) -> dict[str, Any]:
    origin = record.origin if isinstance(record.origin, dict) else {}
    attrs: dict[str, Any] = {
        "trial": record.id, "hash": record.hash, "genotype": str(record.genotype),
        "origin": origin.get("kind", ""), "attempts": record.attempts,
    }  # fmt: skip
    if "parent" in origin:
        attrs["parent"] = origin["parent"]
    if record.result is not None:
        attrs["metrics"] = dict(record.result.metrics)
    if record.error:
        attrs["error"] = record.error
    return attrs


def export_run(run_dir: Path | str, storage: str, study_name: str | None = None, *,
               overwrite: bool = False) -> tuple[str, int]:  # fmt: skip
    """Write the run's trials into a new study ``study_name`` (default: the run
    directory's name) of the Optuna storage URL ``storage``; returns (name, trials)."""
    optuna = optuna_module()
    from sqlalchemy.exc import SQLAlchemyError  # optuna's storages are SQLAlchemy's

    run_dir = Path(run_dir)
    records, objectives, config = open_run_config(run_dir)
    if "search_space" not in config:
        raise ConfigError(f"{run_dir} stores no search config; it cannot be exported")
    space = load_search_space(config["search_space"])
    dists = distributions(space)
    name = study_name or run_dir.resolve().name
    trials = []
    for record in records:
        curve = record.result.curve if record.result is not None else ()
        losses = {p.epoch: p.train_loss for p in curve if p.train_loss is not None}
        try:
            trials.append(frozen_trial(record, space, objectives, dists, user_attrs(record),
                                       pending="WAITING", intermediate_values=losses))  # fmt: skip
        except (ValueError, IndexError, KeyError) as err:
            raise ConfigError(
                f"trial {record.id} of {run_dir} is not a point of its search space ({err})"
            ) from None
    with quiet_optuna():  # no INFO line per study; the process's level is kept
        try:
            if overwrite:
                with contextlib.suppress(KeyError):  # none to replace
                    optuna.delete_study(study_name=name, storage=storage)
            study = optuna.create_study(
                storage=storage, study_name=name, directions=[o.direction for o in objectives]
            )
        except optuna.exceptions.DuplicatedStudyError:
            raise ConfigError(
                f"{storage} has a study {name!r} already; pass --study-name or --overwrite"
            ) from None
        except (ValueError, ImportError, SQLAlchemyError) as err:  # a malformed URL, a missing
            # driver, a database that cannot be opened (sqlite:////no/such/dir/study.db)
            raise ConfigError(f"optuna storage {storage}: {str(err).splitlines()[0]}") from None
        with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([o.name for o in objectives])
        study.set_user_attr("bnn_nas_run", str(run_dir.resolve()))
        study.add_trials(trials)
    return name, len(trials)
