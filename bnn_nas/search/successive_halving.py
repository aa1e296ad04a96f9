"""Multi-fidelity search: successive halving, Hyperband and ASHA around any controller.

``search.controller: successive_halving`` trains many candidates cheaply (rung 0: few
epochs, optionally on part of search-train), promotes the best ``1/eta`` of each rung to
the next one, which trains ``eta`` times as long (or as configured), up to the last rung,
near the final recipe. New candidates come from ``search.base`` (random, evolution,
pareto, ...: built with its usual settings from the same ``search`` section, and told the
results of the rung its candidates entered at). Promotions are new trial rows of the same
genotype with a larger budget.

- ``mode: sync`` (successive halving; Hyperband with ``hyperband: true``): brackets one
  after another; a rung is promoted once all of its trials have finished, its best
  ``n // eta`` (at least one) go on. The next bracket starts once the current one's last
  rung is handed out. The trials made depend only on finished results, not on timing.
- ``mode: async`` (ASHA, Li et al. 2020): one open-ended bracket; whenever a trial slot
  is free, the best not-yet-promoted trial within the top ``n // eta`` of the ``n``
  finished trials of a rung goes up (the highest rung first), else a new candidate starts
  at rung 0. Workers never wait for a rung to fill; what is made depends on the order
  results arrive in, as with any controller fed by parallel trials.

Ranking inside a rung: the search's objectives in order (the primary one, accuracy, then
the others: fewer OPs), ties to the earlier trial (lower id). Failed trials are never
promoted. Each rung's budget: ``rung_epochs`` (default ``train.epochs`` divided by
``eta`` per rung below the last, at least 1) and ``rung_train_size`` (default the whole
search-train split, ``data.search_train_size``, at every rung; a rung asking for more
images than the split holds is refused before the run directory is made).

``promotion: retrain`` (default) trains a promoted candidate from scratch with the
larger budget: exact and simple. ``promotion: continue`` trains every rung under the last
rung's schedule (cosine over its epochs), stopped after the rung's epochs, saves the
state, and a promoted trial continues from its parent's checkpoint: the last rung then
equals one uninterrupted training of its epochs. It needs one ``rung_train_size`` for
every rung (the schedule counts steps per epoch) and a run directory for the checkpoints.

The state (which rung holds what, who was promoted) is rebuilt from the trial rows
(``origin``: rung, bracket, budget, parent), so a killed search resumes to the same end.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bnn_nas.config import Config, entry_settings
from bnn_nas.errors import ConfigError
from bnn_nas.extensions import CONTROLLERS, register_controller
from bnn_nas.objectives import ranking_key
from bnn_nas.search.controllers import Controller
from bnn_nas.search.trials import Proposal, TrialRecord, TrialStatus
from bnn_nas.space.search_space import SearchSpace

MODES = ("sync", "async")
PROMOTIONS = ("retrain", "continue")
NAME = "successive_halving"


def _ints(value: Any, key: str, *, allow_none: bool = False) -> tuple[Any, ...]:
    items = tuple(value or ())
    for item in items:
        if item is None and allow_none:
            continue
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise ConfigError(f"search.{key} must list whole numbers >= 1, not {item!r}")
    return items


@dataclass(frozen=True)
class SuccessiveHalvingSettings:
    """``search`` settings of ``successive_halving`` (written flat in ``search``)."""

    base: str = "random"  # the controller proposing new (rung-0) candidates
    eta: int = 3  # promote the top 1/eta of a rung; each rung trains ~eta times longer
    rungs: int = 3  # rungs per bracket (the length of rung_epochs when that is given)
    rung_epochs: tuple[int, ...] = ()  # epochs per rung; default train.epochs / eta^k
    rung_train_size: tuple[int, ...] = ()  # search-train images per rung; default all
    bracket_size: int | None = None  # rung-0 trials of a bracket; default eta^(rungs-1)
    mode: str = "sync"  # sync (successive halving / Hyperband) | async (ASHA)
    hyperband: bool = False  # sync only: cycle Hyperband's brackets (later entry rungs)
    promotion: str = "retrain"  # retrain (from scratch) | continue (from the checkpoint)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rung_epochs", _ints(self.rung_epochs, "rung_epochs"))
        object.__setattr__(self, "rung_train_size", _ints(self.rung_train_size,
                                                          "rung_train_size"))  # fmt: skip
        if self.mode not in MODES:
            raise ConfigError(f"search.mode is {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.promotion not in PROMOTIONS:
            raise ConfigError(
                f"search.promotion is {self.promotion!r}; choose one of {', '.join(PROMOTIONS)}"
            )
        if isinstance(self.eta, bool) or not isinstance(self.eta, int) or self.eta < 2:
            raise ConfigError(f"search.eta must be a whole number >= 2, not {self.eta!r}")
        if self.rungs < 1:
            raise ConfigError(f"search.rungs must be at least 1, not {self.rungs}")
        if self.bracket_size is not None and self.bracket_size < 1:
            raise ConfigError(f"search.bracket_size must be at least 1, not {self.bracket_size}")
        if self.base == NAME:
            raise ConfigError(f"search.base cannot be {NAME} itself; name e.g. random")
        if self.hyperband and self.mode == "async":
            raise ConfigError("search.hyperband brackets run with mode: sync; drop one")
        count = len(self.rung_epochs) or self.rungs
        if self.rung_train_size and len(self.rung_train_size) != count:
            raise ConfigError(
                f"search.rung_train_size lists {len(self.rung_train_size)} sizes for "
                f"{count} rungs; give one per rung"
            )
        if self.rung_epochs and list(self.rung_epochs) != sorted(self.rung_epochs):
            raise ConfigError(f"search.rung_epochs {list(self.rung_epochs)} must not decrease")
        if self.promotion == "continue" and len(set(self.rung_train_size)) > 1:
            raise ConfigError(
                "search.promotion: continue needs the same rung_train_size at every rung "
                "(the schedule counts steps per epoch); use promotion: retrain"
            )


@register_controller(NAME, settings=SuccessiveHalvingSettings)
class SuccessiveHalving(Controller):
    """Successive halving / Hyperband (sync) or ASHA (async) over training budgets."""

    name = NAME

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        settings: SuccessiveHalvingSettings | None = None,
        *,
        base: Controller | None = None,
        train_epochs: int | None = None,
        **context: Any,
    ) -> None:
        settings = settings or SuccessiveHalvingSettings()
        super().__init__(space, seed, settings, **context)
        self.eta, self.mode = settings.eta, settings.mode
        self.hyperband = settings.hyperband
        if settings.rung_epochs:
            self.epochs = settings.rung_epochs
        elif train_epochs is not None:
            last = settings.rungs - 1
            self.epochs = tuple(max(1, round(train_epochs / self.eta ** (last - k)))
                                for k in range(settings.rungs))  # fmt: skip
        else:
            raise ConfigError("successive_halving needs search.rung_epochs or train.epochs")
        self.sizes: tuple[int | None, ...] = settings.rung_train_size or (None,) * len(self.epochs)
        self.rungs = len(self.epochs)
        for k in range(self.rungs - 1):  # a promotion must train more than its rung did
            same_images = self.sizes[k] == self.sizes[k + 1]
            if same_images and self.epochs[k + 1] <= self.epochs[k]:
                raise ConfigError(
                    f"rungs {k} and {k + 1} both train {self.epochs[k]} epochs on the same "
                    f"images (rung epochs {list(self.epochs)}): a promotion would learn "
                    "nothing new; give increasing search.rung_epochs, more train.epochs or "
                    "fewer search.rungs"
                )
        self.bracket_size = settings.bracket_size or self.eta ** (self.rungs - 1)
        self.continued = settings.promotion == "continue"
        if base is None:
            entry = CONTROLLERS.get(settings.base)
            base = entry.obj(space, seed, entry.default_settings(), **context)
        self.base = base
        self.origins: list[dict[str, Any]] = []  # every proposal's origin, in order
        self.finished: dict[int, TrialRecord] = {}  # finished trials (done or failed) by id

    @classmethod
    def from_config(
        cls, config: Config, space: SearchSpace, seed: int, settings: Any, **context: Any
    ) -> SuccessiveHalving:
        """Built from a whole config: the base controller with its settings from the same
        ``search`` section, default rung epochs from ``train.epochs``."""
        settings = settings or SuccessiveHalvingSettings()
        entry = CONTROLLERS.get(settings.base)
        base = entry.obj(space, seed, entry_settings(config.search, entry), **context)
        if not base.name:
            base.name = entry.name
        made = cls(space, seed, settings, base=base, train_epochs=config.train.epochs, **context)
        warmup = config.train.warmup_epochs
        shortest = made.epochs[-1] if made.continued else made.epochs[0]
        if warmup > shortest:
            raise ConfigError(
                f"train.warmup_epochs={warmup:g} is longer than the rung's {shortest} epochs "
                f"(search.rung_epochs {list(made.epochs)}); lower it"
            )
        batch = config.train.batch_size
        small = [n for n in made.sizes if n is not None and n < batch]
        if small:  # full batches only: such a rung would train on nothing
            raise ConfigError(
                f"search.rung_train_size {small[0]} is smaller than train.batch_size {batch}; "
                "give each rung at least one batch of images"
            )
        limit = config.data.search_train_size
        over = [n for n in made.sizes if n is not None and limit is not None and n > limit]
        if over:
            raise ConfigError(
                f"search.rung_train_size {over[0]} exceeds data.search_train_size {limit}"
            )
        return made

    def check_data(self, search_train: int, where: str) -> None:
        """Each rung's ``rung_train_size`` within the search-train split (known once the
        data is loaded: ``data.search_train_size`` may be unset)."""
        for rung, size in enumerate(self.sizes):
            if size is not None and size > search_train:
                raise ConfigError(
                    f"search.rung_train_size of rung {rung} is {size} images, more than the "
                    f"{search_train} of the search-train split ({where}); lower it to at "
                    f"most {search_train} (or give the split more images)"
                )

    # --- the schedule -------------------------------------------------------------------

    def budget(self, rung: int) -> dict[str, Any]:
        """What a trial of ``rung`` records as its budget."""
        out: dict[str, Any] = {"epochs": self.epochs[rung]}
        if self.sizes[rung] is not None:
            out["train_size"] = self.sizes[rung]
        if self.continued:
            out["schedule_epochs"] = self.epochs[-1]
            out["continue"] = True
        return out

    def layout(self, bracket: int) -> list[tuple[int, int]]:
        """(rung, planned trials) of a sync bracket, from its entry rung up."""
        if self.hyperband:
            s = self.rungs - 1 - bracket % self.rungs  # s_max, s_max - 1, ..., 0, again
            n = math.ceil(self.rungs / (s + 1) * self.eta**s)
            first = self.rungs - 1 - s
        else:
            n, first = self.bracket_size, 0
        out = []
        for rung in range(first, self.rungs):
            out.append((rung, n))
            n = max(1, n // self.eta)
        return out

    def ranked(self, bracket: int | None, rung: int) -> list[TrialRecord]:
        """The done trials of a rung (of ``bracket``; any bracket when None), best first."""
        done = [
            r for r in self.finished.values()
            if r.status is TrialStatus.DONE and r.result is not None
            and r.origin.get("rung") == rung
            and (bracket is None or r.origin.get("bracket") == bracket)
        ]  # fmt: skip
        return sorted(done, key=lambda r: (*ranking_key(r.result.metrics, self.objectives),
                                           r.id))  # type: ignore[union-attr]  # fmt: skip

    def _count(self, bracket: int | None, rung: int, source: Iterable[dict[str, Any]]) -> int:
        return sum(
            o.get("rung") == rung and (bracket is None or o.get("bracket") == bracket)
            for o in source
        )

    def _promoted(self, bracket: int | None, rung: int) -> set[int]:
        """Ids of the trials of ``rung`` promoted to ``rung + 1`` so far."""
        return {
            int(o["parent"]) for o in self.origins
            if o.get("kind") == "promotion" and o.get("rung") == rung + 1
            and (bracket is None or o.get("bracket") == bracket)
        }  # fmt: skip

    # --- ask / tell ---------------------------------------------------------------------

    def restore(self, records: Iterable[TrialRecord]) -> None:
        records = list(records)
        self.proposed = len(records)
        self.origins = [dict(r.origin) for r in records]
        self.seen.update(r.hash for r in records)
        self.base.restore([r for r in records if r.origin.get("kind") != "promotion"])
        self._learn(records)  # the base was told its own trials' results by its restore

    def _learn(self, records: Iterable[TrialRecord]) -> list[TrialRecord]:
        told = [r for r in records if r.finished and r.id not in self.finished]
        for record in told:
            self.finished[record.id] = record
        super().tell(told)
        return told

    def tell(self, records: Iterable[TrialRecord]) -> None:
        """Learn finished trials (each once); the base hears of the ones it proposed."""
        entries = [r for r in self._learn(records) if r.origin.get("kind") != "promotion"]
        if entries:
            self.base.tell(entries)

    def ask(self, n: int) -> list[Proposal]:
        """Up to ``n`` trials; fewer (none) while a sync rung waits for its results."""
        proposals = []
        for _ in range(n):
            proposal = self._next_async() if self.mode == "async" else self._next_sync()
            if proposal is None:
                break
            self.proposed += 1
            self.seen.add(proposal.genotype.hash)
            self.origins.append(dict(proposal.origin))
            proposals.append(proposal)
        return proposals

    def _propose(self, rng: random.Random) -> Proposal:  # ask is overridden
        raise NotImplementedError

    def _entry(self, rung: int, bracket: int) -> Proposal:
        (proposal,) = self.base.ask(1)
        origin = {**proposal.origin, "rung": rung, "bracket": bracket,
                  "budget": self.budget(rung)}  # fmt: skip
        return Proposal(proposal.genotype, origin)

    def _promotion(self, parent: TrialRecord, rung: int, bracket: int) -> Proposal:
        origin = {"kind": "promotion", "parent": parent.id, "rung": rung, "bracket": bracket,
                  "budget": self.budget(rung)}  # fmt: skip
        return Proposal(parent.genotype, origin)

    def _next_sync(self) -> Proposal | None:
        bracket = max((int(o.get("bracket", 0)) for o in self.origins), default=0)
        while True:
            layout = self.layout(bracket)
            for index, (rung, planned) in enumerate(layout):
                proposed = self._count(bracket, rung, self.origins)
                if index == 0:
                    if proposed < planned:
                        return self._entry(rung, bracket)
                    continue
                lower, lower_planned = layout[index - 1]
                lower_size = min(lower_planned, self._count(bracket, lower, self.origins))
                finished = self._count(bracket, lower, (r.origin for r in self.finished.values()))
                if finished < lower_size:
                    return None  # the lower rung is still running: wait for it
                top = self.ranked(bracket, lower)[:planned]
                if proposed < len(top):
                    return self._promotion(top[proposed], rung, bracket)
                if not top:
                    break  # every trial of the lower rung failed: the bracket ends here
            bracket += 1  # every rung of this bracket is handed out: the next one starts

    def _next_async(self) -> Proposal | None:
        for rung in range(self.rungs - 2, -1, -1):
            done = self.ranked(None, rung)
            promoted = self._promoted(None, rung)
            for record in done[: len(done) // self.eta]:
                if record.id not in promoted:
                    return self._promotion(record, rung + 1, 0)
        return self._entry(0, 0)

