"""The Python API: what the commands do, for notebooks and scripts.

    import bnn_nas

    results = bnn_nas.run_search("configs/cifar_tiny.yaml", overrides=["search.budget=4"])
    results.best("accuracy"), results.pareto(), results.to_pandas()
    trial = results.derive(by="pareto")
    report = bnn_nas.train("configs/cifar_tiny.yaml", genotype=trial.genotype)
    net = bnn_nas.build_network(trial.genotype, config="configs/cifar_tiny.yaml")

Each function runs the code its command runs (config loading, the run directory's
checks and lock, the store, the executors, the trainer); a user mistake raises a
:class:`~bnn_nas.errors.BnnNasError` with the command's one-line message.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnn_nas.results import SearchResults, load_run

if TYPE_CHECKING:
    from torch import nn

    from bnn_nas.config import Config
    from bnn_nas.search.executors import Executor
    from bnn_nas.space.genotype import Genotype

    ConfigLike = str | Path | Config | Mapping[str, Any]

__all__ = ["SearchResults", "build_network", "load_config", "load_run", "run_search", "train"]


def load_config(
    config: ConfigLike | None = None,
    *,
    overrides: Iterable[str] = (),
    plugins: Iterable[str] = (),
    trust_run_plugins: bool = False,
) -> Config:
    """A checked :class:`~bnn_nas.config.Config` from a YAML file, a mapping of its
    sections, a Config (``overrides`` applied to it) or nothing (the defaults).

    ``overrides`` are ``--set`` items (``"search.budget=4"``); ``plugins`` files or modules
    to import first (``--plugin``). A config inside a run directory has its plugins
    imported only when passed in ``plugins`` or with ``trust_run_plugins``.
    """
    from bnn_nas.cli.options import load_run_config, load_user_plugins
    from bnn_nas.config import (
        Config,
        apply_overrides,
        config_from_dict,
        config_to_dict,
        declared_plugins,
    )

    overrides, plugins = tuple(overrides), tuple(plugins)
    if config is None or isinstance(config, str | Path):
        path = None if config is None else str(config)
        return load_run_config(path, plugins, overrides, trust=trust_run_plugins)
    if isinstance(config, Config):
        if not overrides:
            load_user_plugins(plugins)
            return config
        where, data = config.source, config_to_dict(config)
    elif isinstance(config, Mapping):
        where, data = "<mapping>", dict(config)
    else:
        raise TypeError(f"config is a path, a mapping or a Config, not {type(config).__name__}")
    data = apply_overrides(data, overrides, where)
    load_user_plugins(declared_plugins(data, where, overrides) + plugins)
    return config_from_dict(data, where, overrides)


def run_search(
    config: ConfigLike,
    *,
    overrides: Iterable[str] = (),
    run_dir: str | Path | None = None,
    executor: str | Executor | Callable[[Config, Any], Executor] | None = None,
    budget: int | None = None,
    resume: bool = False,
    plugins: Iterable[str] = (),
    progress: bool = True,
) -> SearchResults:
    """Run (or resume) a search as `bnn-nas search` does and return its results.

    ``run_dir``: default the config's ``run_dir``, else ``runs/<config name>``; an
    existing search there is resumed (``resume=True`` requires one). ``executor``: the
    config's ``executor`` section (default), another registered executor's name, an
    :class:`~bnn_nas.search.executors.Executor` (left open), or a callable
    ``(config, evaluator) -> Executor``. ``progress``: a tqdm bar (``tqdm.auto``: a
    widget in notebooks) with one line per finished trial. On KeyboardInterrupt the
    trials in flight go back to pending; calling this again resumes (a teacher spec's
    training, which comes first and says so on stderr, too: it is kept in its run_dir).
    """
    from bnn_nas.cli.terminal_log import search_log
    from bnn_nas.rundir import release_run_dir
    from bnn_nas.search.engine import default_run_dir, make_executor, open_search, with_budget
    from bnn_nas.search.executors import Executor
    from bnn_nas.train.teacher_spec import teacher_line

    extra = (f"executor.type={executor}",) if isinstance(executor, str) else ()
    overrides, plugins = tuple(overrides), tuple(plugins)
    cfg = with_budget(load_config(config, overrides=(*overrides, *extra), plugins=plugins),
                      budget)  # fmt: skip
    target = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    try:
        # a train.distill teacher spec trains first, with `bnn-nas search`'s line
        search, evaluator = open_search(cfg, target, resume=resume, say=teacher_line)
    except BaseException:  # a refused resume: the directory is free again
        release_run_dir(target)
        raise
    title = _call_title(config, target, overrides, executor, budget, resume, plugins)
    try:  # what it shows, also in RUN/search.log, as `bnn-nas search` keeps it
        with search_log(target, title):
            search.prepare()
            for note in search.notes:  # trials that were training when the process died
                print(note, file=sys.stderr)
            if isinstance(executor, Executor):
                _search(search, executor, progress)
            else:
                made = executor(cfg, evaluator) if callable(executor) else None
                with made if made is not None else make_executor(cfg, evaluator,
                                                                 plugins) as running:
                    _search(search, running, progress)
    finally:
        search.store.close()
        release_run_dir(target)  # another process (or a later call) may resume it
    return load_run(target)


def _call_title(config: Any, run_dir: Path, overrides: Iterable[str], executor: Any,
                budget: int | None, resume: bool, plugins: Iterable[str]) -> str:  # fmt: skip
    """The line naming a run_search call in search.log (where `bnn-nas search` writes its
    command line)."""
    from bnn_nas.config import Config

    if isinstance(config, str | Path):
        shown = repr(str(config))
    else:
        shown = f"<{config.source}>" if isinstance(config, Config) else "<mapping>"
    args = [shown, f"run_dir={str(run_dir)!r}"]
    if overrides:
        args.append(f"overrides={list(overrides)!r}")
    if executor is not None:
        args.append(f"executor={executor!r}" if isinstance(executor, str) else
                    f"executor=<{type(executor).__name__}>")  # fmt: skip
    if budget is not None:
        args.append(f"budget={budget}")
    if resume:
        args.append("resume=True")
    if plugins:
        args.append(f"plugins={list(plugins)!r}")
    return f"bnn_nas.run_search({', '.join(args)})"


def _search(search: Any, executor: Executor, progress: bool) -> None:
    """The loop of a prepared search, under the progress bar of `bnn-nas search`."""
    from bnn_nas.search.progress import SearchProgress

    if not progress:
        search.run(executor)
        return
    with SearchProgress.of_search(search, executor) as bar:  # running trials' epochs too
        search.run(executor, bar.update)


def train_target(config: Config, genotype: Genotype | None, family: str | None) -> Path:
    """`bnn-nas train`'s default run directory: runs/train-<genotype hash> or
    runs/train-<model>-<family>."""
    if genotype is not None:
        return Path("runs") / f"train-{genotype.hash}"
    shown = "float" if family == "float" else config.model.family
    return Path("runs") / f"train-{config.model.type}-{shown}"


def train(
    config: ConfigLike,
    *,
    genotype: Genotype | str | Path | None = None,
    model: str | None = None,
    family: str | None = None,
    overrides: Iterable[str] = (),
    epochs: int | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    tensorboard: bool = False,
    plugins: Iterable[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Train a genotype (a Genotype, its text or a file, e.g. derive's genotype.yaml) or a
    baseline ``model`` to the end with the config's ``final`` settings, as `bnn-nas train`
    does; returns the report (``report.json``: test accuracy, cost, time, ...).

    ``run_dir``: default ``runs/train-<genotype hash>`` (``runs/train-<model>-<family>``).
    """
    from bnn_nas.space.genotype import Genotype, load_genotype
    from bnn_nas.train.network_choice import network_config
    from bnn_nas.train.run import train_run

    overrides = tuple(overrides)
    if epochs is not None:
        overrides = (*overrides, f"final.epochs={epochs}")
    if tensorboard:
        overrides = (*overrides, "final.tensorboard=true")
    cfg = load_config(config, overrides=overrides, plugins=plugins)
    g = genotype if isinstance(genotype, Genotype) or genotype is None else load_genotype(
        str(genotype))  # fmt: skip
    cfg = network_config(cfg, g, model, family)
    target = Path(run_dir) if run_dir is not None else train_target(cfg, g, family)
    return train_run(cfg, target, genotype=g, resume=resume, progress=progress)


def build_network(
    network: Genotype | str | Path,
    *,
    config: ConfigLike | None = None,
    family: str | None = None,
    num_classes: int = 10,
    image_size: int = 32,
    layout: str = "final",
    overrides: Iterable[str] = (),
    plugins: Iterable[str] = (),
) -> nn.Module:
    """The network of a genotype (a Genotype, its text or a file) or of a baseline model
    name (``"resnet18"``, ``family`` its blocks, default the config's), as `bnn-nas
    train` builds it from ``config`` (default: the defaults), initial weights from the
    config's seed. ``layout="search"``: a genotype at the size the search's trials train
    (the space's cells x channels), not the config's ``model.cells``/``channels``."""
    from bnn_nas import extensions
    from bnn_nas.errors import ConfigError
    from bnn_nas.space.genotype import Genotype, load_genotype
    from bnn_nas.train.final_network import build_final_network
    from bnn_nas.train.network_choice import network_config

    if layout not in ("final", "search"):
        raise ConfigError(f"layout {layout!r} is not one of final, search")
    cfg = load_config(config, overrides=overrides, plugins=plugins)
    if isinstance(network, str) and network in extensions.BASELINES:
        cfg = network_config(cfg, None, network, family)
        return build_final_network(cfg, None, num_classes, image_size)
    g = network if isinstance(network, Genotype) else load_genotype(str(network))
    if layout == "search":
        cfg = replace(cfg, model=replace(cfg.model, cells=None, channels=None))
    return build_final_network(cfg, g, num_classes, image_size)
