"""Trials as Ray tasks: one machine's cores and GPUs, or a whole cluster.

``executor: {type: ray, address: auto}`` joins a running cluster; without an address a
local one is started. Each trial is a task asking for ``1 / trials_per_device`` of a GPU
(or one CPU); the search data goes to the object store once and is shared by every task.
A task whose worker dies (killed, crashed, its node lost) comes back as a lost trial and
is retried by the search loop; Ray's own retries are off so attempts are counted once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnn_nas.config import Config
from bnn_nas.errors import ConfigError
from bnn_nas.extensions import register_executor
from bnn_nas.search.budget import Budget, budget_of
from bnn_nas.search.evaluator import Evaluator, SearchData
from bnn_nas.search.executors import Executor, Outcome, OutcomeKind, format_error
from bnn_nas.search.processes import GPU_TRIALS_PER_DEVICE
from bnn_nas.search.trials import TrialRecord, TrialResult

TASK_NAME = "bnn_nas_trial"  # the process title of a running trial is "ray::bnn_nas_trial"


def _run_trial(
    config: Config, plugins: tuple[str, ...], data: SearchData, text: str, use_gpu: bool,
    budget: Budget | None = None, checkpoints: str | None = None,
) -> tuple[str, Any]:
    """The task body: build an evaluator on this worker and score one genotype."""
    import torch

    from bnn_nas.primitives import load_plugins
    from bnn_nas.space.genotype import parse_genotype
    from bnn_nas.space.search_space import load_search_space

    load_plugins(plugins)
    device = torch.device("cuda" if use_gpu else "cpu")
    if not use_gpu:
        torch.set_num_threads(1)
    space = load_search_space(config.search_space)
    evaluator = Evaluator(space, data, config.train, device, config.seed)
    evaluator.checkpoints = None if checkpoints is None else Path(checkpoints)
    extra = {} if budget is None else {"budget": budget}
    try:
        return "done", evaluator(parse_genotype(text), **extra).to_message()
    except Exception as err:  # the candidate failed, not the worker
        return "failed", format_error(err)


@dataclass(frozen=True)
class RaySettings:
    """``executor`` settings of ``ray``."""

    trials_per_device: int | None = None  # trials sharing one GPU; default 4 per GPU
    address: str | None = None  # an existing cluster (e.g. auto); default a local one


class RayExecutor(Executor):
    """Keeps enough trial tasks in flight to fill the cluster."""

    def __init__(
        self,
        config: Config,
        plugins: tuple[str, ...],
        evaluator: Evaluator,
        settings: Any,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "executor type ray needs Ray; install it with pip install 'bnn-nas[ray]'"
            ) from None
        self._ray = ray
        if not ray.is_initialized():
            try:
                ray.init(address=settings.address, include_dashboard=False,
                         logging_level="WARNING", log_to_driver=False)  # fmt: skip
            except ConnectionError as err:
                raise ConfigError(
                    f"cannot reach the Ray cluster at {settings.address} ({err}); "
                    "start it or drop executor.address for a local one"
                ) from None
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        per = settings.trials_per_device or (GPU_TRIALS_PER_DEVICE if gpus else 1)
        self._use_gpu = gpus > 0
        self.capacity = gpus * per if gpus else max(1, int(resources.get("CPU", 1)))
        options: dict[str, Any] = {"max_retries": 0, "name": TASK_NAME}
        options.update({"num_gpus": 1.0 / per, "num_cpus": 1} if gpus else {"num_cpus": 1})
        self._task = ray.remote(_run_trial).options(**options)
        self._data = ray.put(evaluator.data)
        # continued multi-fidelity trials: the run's checkpoint folder (a shared filesystem)
        folder = getattr(evaluator, "checkpoints", None)
        self._checkpoints = None if folder is None else str(folder)
        self._config, self._plugins = config, plugins
        self._refs: dict[Any, int] = {}

    def submit(self, trial: TrialRecord) -> None:
        ref = self._task.remote(
            self._config, self._plugins, self._data, str(trial.genotype), self._use_gpu,
            budget_of(trial), self._checkpoints,
        )
        self._refs[ref] = trial.id

    def in_flight(self) -> int:
        return len(self._refs)

    def next_outcome(self) -> Outcome:
        ray = self._ray
        (ready,), _ = ray.wait(list(self._refs), num_returns=1)
        trial_id = self._refs.pop(ready)
        try:
            kind, payload = ray.get(ready)
        except ray.exceptions.RayTaskError as err:  # raised in our code outside the guard
            return Outcome(trial_id, OutcomeKind.FAILED, error=str(err).splitlines()[0])
        except ray.exceptions.RayError as err:  # worker crashed or killed, node lost
            first = str(err).strip().splitlines()
            reason = f"{type(err).__name__}: {first[0] if first else ''}"[:300]
            return Outcome(trial_id, OutcomeKind.LOST, error=reason)
        if kind == "done":
            return Outcome(trial_id, OutcomeKind.DONE, result=TrialResult.from_dict(payload))
        return Outcome(trial_id, OutcomeKind.FAILED, error=payload)

    def close(self) -> None:
        for ref in list(self._refs):
            self._ray.cancel(ref, force=True)
        self._refs.clear()


@register_executor("ray", settings=RaySettings)
def make_ray(
    config: Config, evaluator: Evaluator, plugins: tuple[str, ...], settings: RaySettings
) -> Executor:
    """Each trial a Ray task: one machine or a whole cluster (the [ray] extra)."""
    return RayExecutor(config, config.plugins + plugins, evaluator, settings)
