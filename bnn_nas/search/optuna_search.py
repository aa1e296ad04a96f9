"""Optuna's samplers over a bnn-nas space: the ``optuna`` controller (the ``[optuna]`` extra).

A genotype is a point of a flat Optuna search space: one categorical per edge for its op
(``normal/2/0/op``: the normal cell, step 2, edge 0) and one for its input (``.../input``,
the node it reads: 0 and 1 the cell's inputs, 2.. the earlier steps). Where the space asks
for two different inputs per step (``distinct_inputs``, DARTS's rule and the default),
edge 1's input counts the nodes other than edge 0's (choices ``0 .. step``), so every
point is a valid pair. A point past an edge limit, a cost objective's limit, or already
proposed is left running in that proposal's study (a sampler that counts running trials
moves away from it) and the sampler is asked again (after 1000 tries: a uniform sample).

The bnn-nas store stays the source of truth: the controller keeps no study. For every
proposal it replays the trials it knows (done: their objective values, failed: FAIL,
proposed and unfinished: RUNNING) into a fresh in-memory study with a fresh sampler
seeded from ``(seed, proposals made)``, and asks it once. A resumed search rebuilds the
same studies from the stored trials, so it proposes what the uninterrupted one would
have. Sampler state that Optuna keeps in a trial's system attributes (NSGA-II's
generation) is stored in the trial's origin and replayed with it.

``search.sampler``: ``tpe`` (default), ``nsga2``, ``nsga3``, ``random``, ``gp``, ``qmc``,
a name a plugin registered with :func:`register_sampler`, or
``package.module:Class``, an Optuna sampler class of a module already imported (optuna's
own, or one a plugin brought: ``--plugin package.module`` or the config's ``plugins:``).
A config never imports code by naming it here, nor calls anything but a sampler class
with its ``sampler_options`` (``subprocess:run`` would run a command; a run directory's
config is data, its plugins imported only when trusted). ``search.sampler_options``:
keyword arguments of the sampler (e.g. ``{n_startup_trials: 4}`` for TPE,
``{population_size: 8}`` for NSGA-II); ``seed`` is passed when the sampler takes one.
Multi-objective with the search's objectives (their directions), as NSGA-II, TPE and
random handle it; a sampler for one objective needs one.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bnn_nas.errors import ConfigError
from bnn_nas.extensions import SAMPLERS, register_controller
from bnn_nas.objectives import COST_METRICS, Objective
from bnn_nas.search.controllers import _MAX_TRIES, Controller
from bnn_nas.search.trials import Proposal, TrialRecord, TrialStatus
from bnn_nas.space.genotype import KINDS, Genotype
from bnn_nas.space.search_space import SearchSpace

ORIGIN_KIND = "optuna"
ATTRS_KEY = "optuna_system_attrs"  # in a trial's origin: what the sampler kept on it

@dataclass(frozen=True)
class OptunaSampler:
    """A built-in ``search.sampler``: a class of ``optuna.samplers``, named here and looked
    up when used (so listing the names needs no Optuna)."""

    class_name: str

    def resolve(self) -> Any:
        return getattr(optuna_module().samplers, self.class_name)


# not CMA-ES: it samples categoricals (all there is to a genotype) independently at random
for _name, _class in (("tpe", "TPESampler"), ("nsga2", "NSGAIISampler"),
                      ("nsga3", "NSGAIIISampler"), ("random", "RandomSampler"),
                      ("gp", "GPSampler"), ("qmc", "QMCSampler")):  # fmt: skip
    SAMPLERS.add(_name, OptunaSampler(_class), doc=f"optuna.samplers.{_class}")


def optuna_module() -> Any:
    """The optuna package; a one-line error when the extra is not installed. Its log level
    is left as it is: :func:`quiet_optuna` lowers it where bnn-nas runs a study."""
    try:
        import optuna
    except ImportError:
        raise ConfigError(
            "search.controller optuna (and export-optuna) need Optuna: "
            "pip install 'bnn-nas[optuna]' (or pip install optuna)"
        ) from None
    return optuna


@contextlib.contextmanager
def quiet_optuna() -> Iterator[Any]:
    """Optuna's log level at WARNING while the block runs (no line per study or trial),
    then back to what it was: the process's setting is the user's."""
    optuna = optuna_module()
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(before)


def register_sampler(
    name: str, *, override: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a plugin: ``factory(**sampler_options, [seed=...]) -> sampler`` as
    ``search.sampler: name`` (in :data:`bnn_nas.extensions.SAMPLERS`); a taken name is an
    error unless ``override``."""
    return SAMPLERS.register(name, override=override)


def sampler_factory(name: str) -> Callable[..., Any]:
    """The sampler class (or factory) ``search.sampler`` names."""
    optuna = optuna_module()
    if name in SAMPLERS:
        found = SAMPLERS.get(name).obj
        return found.resolve() if isinstance(found, OptunaSampler) else found
    module, sep, attr = name.partition(":") if ":" in name else name.rpartition(".")
    found = getattr(sys.modules.get(module), attr, None) if sep and module and attr else None
    if isinstance(found, type) and issubclass(found, optuna.samplers.BaseSampler):
        return found
    names = ", ".join(SAMPLERS.names())
    unknown = sep and module and attr and module not in sys.modules
    hint = f"; import its module as a plugin first (--plugin {module})" if unknown else ""
    raise ConfigError(
        f"search.sampler {name!r} is not an Optuna sampler; use one of {names} or "
        f"package.module:Class (an optuna.samplers.BaseSampler){hint}"
    )


def make_sampler(name: str, options: Mapping[str, Any], seed: int) -> Any:
    factory = sampler_factory(name)
    kwargs = dict(options)
    try:
        takes_seed = "seed" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_seed = False
    if takes_seed:
        kwargs.setdefault("seed", seed)
    try:
        with warnings.catch_warnings():  # "QMCSampler is experimental": nothing to act on
            warnings.simplefilter("ignore", optuna_module().exceptions.ExperimentalWarning)
            return factory(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"search.sampler_options for {name}: {err}") from None


# --- the space as Optuna parameters ----------------------------------------------------
def distributions(space: SearchSpace) -> dict[str, Any]:
    """One categorical per edge op and per edge input, in cell, step, edge order."""
    dist = optuna_module().distributions.CategoricalDistribution
    out: dict[str, Any] = {}
    for kind in KINDS:
        ops = space.op_names(kind)
        for step in range(space.steps):
            for edge in (0, 1):
                out[f"{kind}/{step}/{edge}/op"] = dist(ops)
                inputs = step + 1 if space.distinct_inputs and edge == 1 else step + 2
                out[f"{kind}/{step}/{edge}/input"] = dist(tuple(range(inputs)))
    return out


def genotype_of(params: Mapping[str, Any], space: SearchSpace) -> Genotype:
    """The genotype a point of :func:`distributions` stands for."""
    cells = {}
    for kind in KINDS:
        edges = []
        for step in range(space.steps):
            a = params[f"{kind}/{step}/0/input"]
            b = params[f"{kind}/{step}/1/input"]
            if space.distinct_inputs:
                b = [i for i in range(step + 2) if i != a][b]
            edges += [(params[f"{kind}/{step}/0/op"], a), (params[f"{kind}/{step}/1/op"], b)]
        cells[kind] = tuple(edges)
    concat = tuple(range(2, space.steps + 2))
    return Genotype(cells["normal"], concat, cells["reduce"], concat)


def params_of(genotype: Genotype, space: SearchSpace) -> dict[str, Any]:
    """The point of :func:`distributions` that stands for ``genotype`` (its inverse)."""
    params: dict[str, Any] = {}
    for kind in KINDS:
        edges, _ = genotype.cell(kind)
        for step in range(space.steps):
            (op_a, a), (op_b, b) = edges[2 * step : 2 * step + 2]
            if space.distinct_inputs:
                b = [i for i in range(step + 2) if i != a].index(b)
            params.update({f"{kind}/{step}/0/op": op_a, f"{kind}/{step}/0/input": a,
                           f"{kind}/{step}/1/op": op_b, f"{kind}/{step}/1/input": b})  # fmt: skip
    return params


def objective_values(record: TrialRecord, objectives: Sequence[Objective]) -> list[float] | None:
    """A done trial's objective values (None when a value is missing or not finite)."""
    if not record.done or record.result is None:
        return None
    try:
        values = [o.value(record.result.metrics) for o in objectives]
    except ConfigError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def frozen_trial(record: TrialRecord, space: SearchSpace, objectives: Sequence[Objective],
                 dists: Mapping[str, Any], user_attrs: Mapping[str, Any] | None = None,
                 *, pending: str = "RUNNING",
                 intermediate_values: Mapping[int, float] | None = None) -> Any:  # fmt: skip
    """``record`` as an Optuna trial: done with its values (COMPLETE), failed (FAIL),
    proposed and unfinished (``pending``: RUNNING, or WAITING in an export)."""
    optuna = optuna_module()
    state = optuna.trial.TrialState
    values = objective_values(record, objectives)
    if values is not None:
        kind, kept = state.COMPLETE, values
    elif record.finished:
        kind, kept = state.FAIL, None
    else:
        kind, kept = getattr(state, pending), None
    attrs = record.origin.get(ATTRS_KEY) if isinstance(record.origin, Mapping) else None
    return optuna.trial.create_trial(
        state=kind, values=kept, params=params_of(record.genotype, space),
        distributions=dict(dists), system_attrs=dict(attrs or {}),
        user_attrs=dict(user_attrs or {}), intermediate_values=dict(intermediate_values or {}),
    )  # fmt: skip


# --- the controller ----------------------------------------------------------------------
@dataclass(frozen=True)
class OptunaSettings:
    """``search`` settings of ``optuna``."""

    sampler: str = "tpe"  # tpe | nsga2 | nsga3 | random | gp | qmc | module:Class
    sampler_options: dict[str, Any] = field(default_factory=dict)  # the sampler's keywords


@contextlib.contextmanager
def _needs_packages(sampler: str) -> Iterator[None]:
    """A package a sampler imports when it first samples (QMC and GP need scipy) is a
    one-line error naming it, not a traceback from inside Optuna."""
    try:
        yield
    except ModuleNotFoundError as err:
        missing = (err.name or "a package").split(".")[0]
        raise ConfigError(
            f"search.sampler {sampler} needs {missing}, which is not installed: "
            f"pip install {missing} (or choose another sampler)"
        ) from None


@register_controller("optuna", settings=OptunaSettings)
class OptunaSearch(Controller):
    """Proposals from an Optuna sampler (``search.sampler``) over the space's edge ops and
    inputs, against the search's objectives; see the module's doc."""

    name = "optuna"

    def __init__(self, space: SearchSpace, seed: int, settings: OptunaSettings | None = None,
                 **context: Any) -> None:  # fmt: skip
        settings = settings or OptunaSettings()
        super().__init__(space, seed, settings, **context)
        self.sampler_name, self.sampler_options = settings.sampler, dict(settings.sampler_options)
        sampler = make_sampler(self.sampler_name, self.sampler_options, seed)
        self._dists = distributions(space)
        # every trial proposed so far, in proposal order (= id order): its record once
        # stored and told, else the proposal (in flight)
        self.history: list[TrialRecord | Proposal] = []
        # a bad name fails above, a sampler that cannot serve these objectives (CMA-ES with
        # two) here: before the run directory is made, as one line
        try:
            with _needs_packages(self.sampler_name), quiet_optuna():
                self.study(sampler).ask(fixed_distributions=dict(self._dists))
        except ValueError as err:
            raise ConfigError(f"search.sampler {self.sampler_name}: {err}") from None
        self.limits = [o for o in self.objectives if o.limit is not None and o.name in
                       COST_METRICS]  # fmt: skip
        if self.limits and self.cost_of is None:
            raise ValueError("OptunaSearch with cost limits needs cost_of")

    def restore(self, records: Iterable[TrialRecord]) -> None:
        records = sorted(records, key=lambda r: r.id)
        self.history.extend(records)
        super().restore(records)

    def tell(self, records: Iterable[TrialRecord]) -> None:
        records = list(records)
        where = {entry.genotype.hash: i for i, entry in enumerate(self.history)}
        for record in records:
            if record.hash in where:
                self.history[where[record.hash]] = record
        super().tell(records)

    def _acceptable(self, genotype: Genotype) -> bool:
        if not self.space.contains(genotype):
            return False
        if not self.limits:
            return True
        costs = self.cost_of(genotype)  # type: ignore[misc]
        return all(o.within(costs) for o in self.limits)

    def study(self, sampler: Any) -> Any:
        """A fresh in-memory study holding every trial proposed so far, in order."""
        with quiet_optuna() as optuna:
            study = optuna.create_study(
                sampler=sampler, directions=[o.direction for o in self.objectives],
            )  # fmt: skip
            for entry in self.history:
                record = entry if isinstance(entry, TrialRecord) else TrialRecord(
                    0, entry.genotype, TrialStatus.PENDING, entry.origin)  # fmt: skip
                study.add_trial(frozen_trial(record, self.space, self.objectives, self._dists))
        return study

    def _propose(self, rng: random.Random) -> Proposal:
        seed = rng.randrange(2**31)
        study = self.study(make_sampler(self.sampler_name, self.sampler_options, seed))
        for _ in range(_MAX_TRIES):
            with _needs_packages(self.sampler_name), quiet_optuna():
                trial = study.ask(fixed_distributions=dict(self._dists))
            genotype = genotype_of(trial.params, self.space)
            if genotype.hash in self.seen or not self._acceptable(genotype):
                # left running: a sampler that lies about running trials (TPE's constant
                # liar) moves away from it; this study is thrown away after the proposal
                continue
            origin: dict[str, Any] = {"kind": ORIGIN_KIND, "sampler": self.sampler_name}
            attrs = study.get_trials(deepcopy=False)[-1].system_attrs
            if attrs:
                origin[ATTRS_KEY] = dict(attrs)
            proposal = Proposal(genotype, origin)
            self.history.append(proposal)
            return proposal
        proposal = self._fresh_random(rng)
        self.history.append(proposal)
        return proposal
