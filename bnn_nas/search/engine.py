"""A search's run directory: creating or reopening it, and the resume checks.

The loop itself is :mod:`bnn_nas.search.loop`, the executors and ``format_error``
:mod:`bnn_nas.search.executors`, choosing results :mod:`bnn_nas.search.derive`; their
names are re-exported here for code written before the split.

A run directory holds ``trials.sqlite`` (the single source of truth), ``config.yaml``
and ``trials.csv`` (regenerated from the store after every trial). Running ``search``
again on the same directory resumes: interrupted trials go back to pending and the
controller is rebuilt from the stored trials, so nothing done is lost or redone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bnn_nas import __version__
from bnn_nas.config import (
    Config,
    check_batch_fits,
    check_cutout_fits,
    config_from_dict,
    config_to_dict,
    plugin_path,
)
from bnn_nas.errors import BnnNasError, ConfigError
from bnn_nas.io import dump_yaml, write_text_atomic
from bnn_nas.rundir import check_run_dir, creating, lock_run_dir, remove_stale_parts, run_kind
from bnn_nas.search.controllers import make_controller
from bnn_nas.search.derive import best_trial  # noqa: F401  (re-exported)
from bnn_nas.search.evaluator import Evaluator, load_search_data
from bnn_nas.search.executors import format_error, make_executor  # noqa: F401  (re-exported)
from bnn_nas.search.loop import Progress, SearchRun  # noqa: F401  (re-exported)
from bnn_nas.search.store import STORE_FILE, SQLiteStore
from bnn_nas.space.search_space import load_search_space
from bnn_nas.train.run import train_run
from bnn_nas.train.teacher_spec import ensure_teacher
from bnn_nas.train.trainer import resolve_device

# settings that may change between an interrupted search and its resumption: they do not
# shape the trials (final training and baselines are not part of the search; where the
# same data set lives changes when a search moves to another machine; TensorBoard files
# are written from the store)
RESUMABLE_CHANGES = (
    "search.budget", "executor", "device", "run_dir", "final", "model",
    "data.root", "data.cache_dir", "data.download", "train.tensorboard",
)  # fmt: skip


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _normalised(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config in today's form: settings added since take their defaults, and
    plugin paths stored relative (by runs made before they were stored absolute: relative
    to where the search ran) made absolute against the current directory, as loading
    that config or the same ``--set plugins=[...]`` here now gives them."""
    try:
        normal = config_to_dict(config_from_dict(stored, "<stored config>"))
    except BnnNasError:  # compared as it is: any difference is named below
        return stored
    normal["plugins"] = [plugin_path(p, Path.cwd()) for p in normal.get("plugins") or ()]
    return normal


def check_resumable(stored: dict[str, Any], current: dict[str, Any], run_dir: Path) -> None:
    """A resumed search must keep every setting that shaped its trials."""
    old, new = _flatten(_normalised(stored)), _flatten(current)
    for key in sorted(set(old) | set(new)):
        if any(key == k or key.startswith(k + ".") for k in RESUMABLE_CHANGES):
            continue
        if old.get(key) != new.get(key):
            raise ConfigError(
                f"{run_dir} was searched with {key}={old.get(key)!r}, the config now says "
                f"{new.get(key)!r}; restore it or use another --run-dir"
            )


def open_search(
    config: Config, run_dir: Path, *, resume: bool, say: Callable[[str], None] | None = None
) -> tuple[SearchRun, Evaluator]:
    """Check everything, then create or reopen the run directory's search.

    All user input (space, plugins, data) is validated before the directory is touched,
    so a bad config leaves no half-made run behind.
    """
    run_dir = Path(run_dir)
    if check_run_dir(run_dir, "search", "search") and run_kind(run_dir) is not None:
        lock_run_dir(run_dir)  # held for this process's life: one search per run directory
        remove_stale_parts(run_dir)
    space = load_search_space(config.search_space)
    device = resolve_device(config.device)
    if config.executor.devices:  # ones that do not exist fail now, before anything is made
        from bnn_nas.search.processes import resolve_devices

        resolve_devices(config.executor.devices)
    data = load_search_data(config)
    check_batch_fits(config.train, len(data.train), "train")
    check_cutout_fits(config.train, data.train.image_shape, "train")
    evaluator = Evaluator(space, data, config.train, device, config.seed)
    # built now: a controller that cannot be made (a missing extra, a bad sampler) fails
    # before the run directory is, and before a teacher spec trains
    controller = make_controller(config.search, space, config.seed, evaluator.cost_metrics,
                                 config)
    d, cap = config.data, config.data.search_train_size
    controller.check_data(len(data.train), f"data.name {d.name}, data.valid_fraction "
                          f"{d.valid_fraction:g}, data.search_train_size "
                          f"{'unset' if cap is None else cap}")  # fmt: skip
    store_path = run_dir / STORE_FILE
    current = config_to_dict(config)
    if store_path.exists():
        # checked read-only first: a refused resume leaves the store as it was
        before = SQLiteStore(store_path, read_only=True)
        try:
            stored = before.get_meta("config")
        finally:
            before.close()
        if stored is None:
            raise ConfigError(f"{store_path} holds no search metadata; use another --run-dir")
        check_resumable(stored, current, run_dir)
    elif resume:
        raise ConfigError(f"no search to resume in {run_dir}; drop --resume to start one")
    # train.distill: a teacher given as a spec is trained (or resumed) first, once every
    # cheap check has passed; a teacher that does not fit fails here, once
    ensure_teacher(config, "train", train_run, student_dir=run_dir, say=say)
    evaluator.check_teacher()
    if store_path.exists():
        store = SQLiteStore(store_path)
        store.set_meta("config", current)  # a changed budget or device is recorded
        # the settings in force now (a resumed search may change its budget, final
        # schedule, data path, ...): derive points `bnn-nas train --config` at this file
        write_text_atomic(run_dir / "config.yaml", dump_yaml(current))
    else:
        # born whole (store, metadata, config) or not at all: a kill leaves nothing
        with creating(run_dir, "search") as staging:
            store = SQLiteStore(staging / STORE_FILE)
            store.set_meta("config", current)
            store.set_meta("bnn_nas", __version__)
            store.set_meta("seed", config.seed)
            store.set_meta("created", time.strftime("%Y-%m-%d %H:%M:%S"))
            store.close()
            write_text_atomic(staging / "config.yaml", dump_yaml(current))
        store = SQLiteStore(store_path)
    # continued multi-fidelity trials (search.promotion: continue) keep their state here
    # absolute: Ray workers on other machines resolve relative paths against their own cwd
    evaluator.checkpoints = (run_dir / "rungs").resolve()
    search = SearchRun(config, space, store, evaluator.cost_metrics, run_dir, controller)
    return search, evaluator


def default_run_dir(config: Config) -> Path:
    if config.run_dir:
        return Path(config.run_dir)
    stem = Path(config.source).stem if config.source != "<defaults>" else "search"
    return Path("runs") / stem


def with_budget(config: Config, budget: int | None) -> Config:
    if budget is None:
        return config
    return replace(config, search=replace(config.search, budget=budget))
