"""Controllers propose candidates (``ask``) and learn from results (``tell``).

A controller never touches storage. Everything it knows comes from trial records, and its
randomness is derived from ``(seed, number of proposals made)``, so a controller rebuilt
from a store's history continues exactly where the interrupted one stopped, and the same
seed with the same results gives the same proposals.

Controllers are registered by name (``bnn_nas.extensions.CONTROLLERS``), each with the
dataclass of its own settings, read from the config's ``search`` section. A plugin adds
one with ``@register_controller("name", settings=...)`` on a :class:`Controller` subclass.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from bnn_nas.config import Config, SearchConfig, entry_settings
from bnn_nas.errors import ConfigError
from bnn_nas.extensions import CONTROLLERS, register_controller
from bnn_nas.objectives import (
    COST_METRICS,
    DEFAULT_OBJECTIVES,
    Objective,
    directions,
    points,
)
from bnn_nas.search.pareto import crowding_distance, non_dominated_sort
from bnn_nas.search.trials import CompletedTrial, Proposal, TrialRecord, completed
from bnn_nas.space.genotype import Genotype
from bnn_nas.space.search_space import SearchSpace

OpsOf = Callable[[Genotype], float]
CostOf = Callable[[Genotype], Mapping[str, float]]  # metrics known before training
_MAX_TRIES = 1000


class Controller(ABC):
    """Base: duplicate-free proposals, seeded per proposal, state rebuilt from records.

    A registered controller is built as ``cls(space, seed, settings, objectives=...,
    cost_of=...)`` with ``settings`` an instance of the dataclass it registered (None if it
    declared none), ``objectives`` the search's (the first is the primary one) and
    ``cost_of(genotype)`` the cost metrics (ops, bops, params, ...) counted before training.
    """

    name = ""

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        settings: Any = None,
        *,
        objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
        cost_of: CostOf | None = None,
        ops_of: OpsOf | None = None,
    ) -> None:
        self.space = space
        self.seed = seed
        self.settings = settings
        self.objectives = tuple(objectives)
        if cost_of is None and ops_of is not None:
            cost_of = lambda g: {"ops": ops_of(g)}  # noqa: E731
        self.cost_of = cost_of
        self.proposed = 0  # proposals handed out so far (asked and restored)
        self.seen: set[str] = set()  # hashes of every proposed genotype
        self.done: list[CompletedTrial] = []  # finished successfully, in the order told

    def restore(self, records: Iterable[TrialRecord]) -> None:
        """Rebuild the state from a store's trials (in id order)."""
        records = list(records)
        for record in records:
            self.proposed += 1
            self.seen.add(record.hash)
        self.tell([r for r in records if r.done])

    def tell(self, records: Iterable[TrialRecord]) -> None:
        """Learn from finished trials (failed ones carry no information and are ignored)."""
        self.done.extend(completed(records))

    def ask(self, n: int) -> list[Proposal]:
        """``n`` new candidates, none proposed before."""
        proposals = []
        for _ in range(n):
            rng = random.Random(f"{self.seed}:{self.proposed}")
            proposal = self._propose(rng)
            self.proposed += 1
            self.seen.add(proposal.genotype.hash)
            proposals.append(proposal)
        return proposals

    def check_data(self, search_train: int, where: str) -> None:
        """Refuse, before the search starts, settings that ask for more than the
        ``search_train`` images the search's split holds (``where``: how that split was
        made, for the message); nothing for most controllers."""
        return None

    @abstractmethod
    def _propose(self, rng: random.Random) -> Proposal: ...

    def _fresh_random(self, rng: random.Random) -> Proposal:
        for _ in range(_MAX_TRIES):
            g = self.space.random_sample(rng)
            if g.hash not in self.seen and self._acceptable(g):
                return Proposal(g, {"kind": "random"})
        raise ConfigError(
            f"search space {self.space.name} has no unexplored genotype left "
            f"(after {self.proposed} proposals); lower search.budget"
        )

    def _mutant(self, parent: TrialRecord, rng: random.Random, kind: str) -> Proposal:
        genotype = parent.genotype
        for _ in range(_MAX_TRIES):
            genotype = self.space.mutate(genotype, rng)
            if genotype.hash not in self.seen and self._acceptable(genotype):
                return Proposal(genotype, {"kind": kind, "parent": parent.id})
        return self._fresh_random(rng)

    def _acceptable(self, genotype: Genotype) -> bool:
        return True


@register_controller("random")
class RandomSearch(Controller):
    """Uniform samples of the space, without duplicates."""

    name = "random"

    def _propose(self, rng: random.Random) -> Proposal:
        return self._fresh_random(rng)


def _with_given(settings: Any, context: dict[str, Any]) -> Any:
    """``settings`` with any of its fields given as keywords (``population=4``, the
    constructor's form before settings dataclasses) taken out of ``context``."""
    given = {f.name: context.pop(f.name) for f in fields(settings) if f.name in context}
    return replace(settings, **given) if given else settings


ELIMINATE = ("oldest", "worst")


@dataclass(frozen=True)
class EvolutionSettings:
    """``search`` settings of ``evolution``."""

    population: int = 8  # trials kept
    sample_size: int = 3  # tournament size
    eliminate: str = "oldest"  # oldest (aging evolution) | worst

    def __post_init__(self) -> None:
        if self.eliminate not in ELIMINATE:
            raise ConfigError(
                f"search.eliminate is {self.eliminate!r}; choose one of {', '.join(ELIMINATE)}"
            )
        if self.sample_size > self.population:
            raise ConfigError(
                f"search.sample_size {self.sample_size} exceeds search.population "
                f"{self.population}"
            )


@register_controller("evolution", settings=EvolutionSettings)
class RegularizedEvolution(Controller):
    """Aging evolution (Real et al. 2019): tournament selection, mutate the winner.

    The population is the last ``population`` finished trials (``eliminate: oldest``) or
    the best ``population`` ones (``eliminate: worst``); until it is full, random samples.
    """

    name = "evolution"

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        settings: EvolutionSettings | None = None,
        **context: Any,
    ) -> None:
        settings = _with_given(settings or EvolutionSettings(), context)
        super().__init__(space, seed, settings, **context)
        self.population, self.sample_size = settings.population, settings.sample_size
        self.eliminate = settings.eliminate

    def _fitness(self, record: TrialRecord) -> float:
        """The primary objective, larger is better."""
        return -self.objectives[0].loss(record.result.metrics)

    def current_population(self) -> list[TrialRecord]:
        if self.eliminate == "oldest":
            return self.done[-self.population :]
        ranked = sorted(self.done, key=lambda r: (-self._fitness(r), r.id))
        return ranked[: self.population]

    def _propose(self, rng: random.Random) -> Proposal:
        if len(self.done) < self.population:
            return self._fresh_random(rng)
        contestants = rng.sample(self.current_population(), self.sample_size)
        parent = max(contestants, key=lambda r: (self._fitness(r), -r.id))
        return self._mutant(parent, rng, "mutation")


@dataclass(frozen=True)
class ParetoSettings:
    """``search`` settings of ``pareto``."""

    population: int = 8  # trials kept
    max_ops: float | None = None  # drop candidates above this many OPs


@register_controller("pareto", settings=ParetoSettings)
class ParetoSearch(Controller):
    """Multi-objective evolution over the search's objectives (default accuracy up vs OPs
    down), NSGA-II selection.

    Parents are picked by binary tournament on (front rank, crowding distance) among the
    best ``population`` trials; candidates above ``max_ops``, or past the limit of a cost
    objective (ops, bops, params, bytes, ...: counted before training), are never proposed.
    """

    name = "pareto"

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        settings: ParetoSettings | None = None,
        **context: Any,
    ) -> None:
        settings = _with_given(settings or ParetoSettings(), context)
        super().__init__(space, seed, settings, **context)
        self.population, self.max_ops = settings.population, settings.max_ops
        self.limits = [o for o in self.objectives if o.limit is not None and o.name in
                       COST_METRICS]  # fmt: skip
        if (self.max_ops is not None or self.limits) and self.cost_of is None:
            raise ValueError("ParetoSearch with cost limits needs cost_of")

    def _acceptable(self, genotype: Genotype) -> bool:
        if self.max_ops is None and not self.limits:
            return True
        costs = self.cost_of(genotype)  # type: ignore[misc]
        if self.max_ops is not None and costs["ops"] > self.max_ops:
            return False
        return all(o.within(costs) for o in self.limits)

    def ranked(self) -> list[tuple[TrialRecord, int, float]]:
        """(record, front rank, crowding) of the surviving population, best first."""
        values = points([r.result.metrics for r in self.done], self.objectives)
        survivors: list[tuple[TrialRecord, int, float]] = []
        for rank, front in enumerate(non_dominated_sort(values, directions(self.objectives))):
            crowd = crowding_distance(values, front)
            for i in sorted(front, key=lambda i: (-crowd[i], self.done[i].id)):
                survivors.append((self.done[i], rank, crowd[i]))
        return survivors[: self.population]

    def _propose(self, rng: random.Random) -> Proposal:
        if len(self.done) < self.population:
            return self._fresh_random(rng)
        ranked = self.ranked()
        a, b = rng.sample(ranked, 2)
        winner = min(a, b, key=lambda t: (t[1], -t[2], t[0].id))
        return self._mutant(winner[0], rng, "mutation")


def make_controller(
    settings: SearchConfig, space: SearchSpace, seed: int, cost_of: CostOf,
    config: Config | None = None,
) -> Controller:
    """The controller a config's ``search`` section names, with its settings and the
    search's objectives; ``cost_of(genotype)`` gives the cost metrics before training.

    A controller class with a ``from_config(config, space, seed, settings, objectives=...,
    cost_of=...)`` classmethod (one wrapping another, as successive halving does) is
    built by it when the whole ``config`` is given."""
    entry = CONTROLLERS.get(settings.controller)
    own = entry_settings(settings, entry)
    context = {"objectives": settings.objectives, "cost_of": cost_of}
    from_config = getattr(entry.obj, "from_config", None)
    if config is not None and from_config is not None:
        controller = from_config(config, space, seed, own, **context)
    else:
        controller = entry.obj(space, seed, own, **context)
    if not controller.name:
        controller.name = entry.name
    return controller
