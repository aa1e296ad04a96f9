"""Worker processes: K trials per device, each worker pinned to one device.

Workers are spawned (never forked: CUDA and fork do not mix), build their own evaluator
once, then take trials one at a time. A worker that dies (SIGKILL, a crash, out of host
memory) is noticed by the parent, its trial is reported lost, and a fresh worker takes
its slot. On CPU the cores are split between the workers instead of oversubscribed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bnn_nas.config import Config
from bnn_nas.errors import BnnNasError, ConfigError
from bnn_nas.extensions import register_executor
from bnn_nas.search.budget import budget_of
from bnn_nas.search.executors import Executor, Outcome, OutcomeKind, format_error
from bnn_nas.search.running import RunningTrials
from bnn_nas.search.trials import TrialRecord, TrialResult

_POLL_SECONDS = 0.2
START_TIMEOUT = 600.0  # seconds for every worker to build its evaluator (data on the device)


@dataclass(frozen=True)
class WorkerSetup:
    """Everything a worker needs to build its evaluator (picklable, immutable)."""

    config: Config
    plugins: tuple[str, ...]
    device: str
    threads: int


def _worker_main(slot: int, setup: WorkerSetup, tasks: Any, results: Any) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    import torch

    from bnn_nas.primitives import load_plugins
    from bnn_nas.search.evaluator import build_evaluator
    from bnn_nas.space.genotype import parse_genotype

    torch.set_num_threads(setup.threads)
    try:
        load_plugins(setup.plugins)
        evaluator = build_evaluator(setup.config, torch.device(setup.device))
    except BnnNasError as err:
        results.put(("fatal", slot, None, str(err)))
        return
    results.put(("ready", slot, None, None))
    while True:
        task = tasks.get()
        if task is None:
            return
        trial_id, text, budget, checkpoints = task
        evaluator.checkpoints = None if checkpoints is None else Path(checkpoints)

        def report(done: int, epochs: int, trial_id: int = trial_id) -> None:
            results.put(("epoch", slot, trial_id, (done, epochs)))  # the progress bar's

        try:
            result = evaluator(parse_genotype(text), on_epoch=report,
                               **({} if budget is None else {"budget": budget}))  # fmt: skip
        except Exception as err:  # the candidate failed; the worker lives on
            results.put(("failed", slot, trial_id, format_error(err)))
        else:
            results.put(("done", slot, trial_id, result.to_message()))


GPU_TRIALS_PER_DEVICE = 4  # best trials/hour per memory on an H200 (docs/benchmarks.md)
GPU_STREAMS_PER_DEVICE = 8  # threads on their own CUDA streams (docs/benchmarks.md)


def trials_per_device(configured: int | None, devices: list[str], kind: str = "processes") -> int:
    """The configured K, else the measured sweet spot on GPUs and 1 on the CPU."""
    if configured is not None:
        return configured
    if not all(d.startswith("cuda") for d in devices):
        return 1
    return GPU_STREAMS_PER_DEVICE if kind == "streams" else GPU_TRIALS_PER_DEVICE


def resolve_devices(devices: tuple[str, ...]) -> list[str]:
    """The devices workers are pinned to: as configured, else every GPU, else the CPU."""
    if devices:
        from bnn_nas.train.trainer import resolve_device

        for device in devices:  # one that does not exist fails here, not in a worker
            resolved = resolve_device(device, "executor.devices", "[cpu]")
            if device == "auto" or resolved.type != device.split(":")[0]:
                raise ConfigError(f"executor.devices: {device!r} is not cpu, cuda or cuda:N")
        return list(devices)
    import torch

    if torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return ["cpu"]


@dataclass(frozen=True)
class DeviceSettings:
    """``executor`` settings of ``processes`` and ``streams``."""

    devices: tuple[str, ...] = ()  # e.g. [cuda:0, cuda:1]; default every GPU, or cpu
    trials_per_device: int | None = None  # default per GPU: processes 4, streams 8; CPU 1


@register_executor("processes", settings=DeviceSettings)
def make_processes(
    config: Config, evaluator: Any, plugins: tuple[str, ...], settings: DeviceSettings
) -> Executor:
    """K worker processes per device, each pinned to it."""
    devices = resolve_devices(settings.devices)
    per_device = trials_per_device(settings.trials_per_device, devices, "processes")
    executor = ProcessExecutor(config, config.plugins + plugins, devices, per_device)
    executor.checkpoints = getattr(evaluator, "checkpoints", None)
    return executor


class _Slot:
    def __init__(self, index: int, setup: WorkerSetup) -> None:
        self.index, self.setup = index, setup
        self.process: Any = None
        self.tasks: Any = None
        self.trial: int | None = None


class ProcessExecutor(Executor):
    """``trials_per_device`` worker processes on each device."""

    def __init__(
        self, config: Config, plugins: tuple[str, ...], devices: list[str], per_device: int
    ) -> None:
        self.checkpoints: Path | None = None  # continued multi-fidelity trials' folder
        self._ctx = mp.get_context("spawn")
        self._results = self._ctx.Queue()
        workers = len(devices) * per_device
        cpu_workers = sum(d == "cpu" for d in devices) * per_device
        threads = max(1, (os.cpu_count() or 1) // max(1, cpu_workers))
        self._slots = [
            _Slot(i, WorkerSetup(config, plugins, devices[i // per_device], threads))
            for i in range(workers)
        ]
        self.capacity = workers
        self.restarts = 0
        for slot in self._slots:
            self._start(slot)
        self._wait_ready(len(self._slots))

    def _start(self, slot: _Slot) -> None:
        slot.tasks = self._ctx.Queue()
        slot.process = self._ctx.Process(
            target=_worker_main,
            args=(slot.index, slot.setup, slot.tasks, self._results),
            name=f"bnn-nas-worker-{slot.index}",
            daemon=True,
        )
        slot.process.start()
        slot.trial = None

    def _wait_ready(self, count: int) -> None:
        """Until every worker said ready; a worker that dies or never answers within
        ``START_TIMEOUT`` seconds is an error, not a search that hangs forever."""
        ready = 0
        deadline = time.monotonic() + START_TIMEOUT
        while ready < count:
            try:
                kind, index, _, message = self._results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                dead = [s for s in self._slots if not s.process.is_alive()]
                if dead or time.monotonic() > deadline:
                    self.close()
                    if dead:
                        code = dead[0].process.exitcode
                        raise ConfigError(
                            f"worker {dead[0].index} ({dead[0].setup.device}) exited with code "
                            f"{code} before it started; check executor.devices and memory"
                        ) from None
                    raise ConfigError(
                        f"workers did not start within {START_TIMEOUT:g} s; check "
                        "executor.devices and the machine's load"
                    ) from None
                continue
            if kind == "fatal":
                self.close()
                raise ConfigError(f"worker {index} could not start: {message}")
            if kind == "ready":
                ready += 1

    def report_epochs(self, running: RunningTrials) -> bool:
        self.running = running  # workers send ("epoch", ...) on the result queue
        return True

    def submit(self, trial: TrialRecord) -> None:
        slot = next(s for s in self._slots if s.trial is None)
        slot.trial = trial.id
        # a multi-fidelity trial's budget and the folder of continued trials' checkpoints
        checkpoints = None if self.checkpoints is None else str(self.checkpoints)
        slot.tasks.put((trial.id, str(trial.genotype), budget_of(trial), checkpoints))
        if self.running is not None:
            budget = budget_of(trial)
            epochs = budget.epochs if budget is not None and budget.epochs else None
            self.running.started(trial.id, epochs or slot.setup.config.train.epochs)

    def in_flight(self) -> int:
        return sum(s.trial is not None for s in self._slots)

    def next_outcome(self) -> Outcome:
        outcome = self._next_outcome()
        if self.running is not None:
            self.running.ended(outcome.trial_id)
        return outcome

    def _next_outcome(self) -> Outcome:
        while True:
            try:
                kind, index, trial_id, payload = self._results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                lost = self._find_dead()
                if lost is not None:
                    return lost
                continue
            slot = self._slots[index]
            if kind == "ready" or slot.trial != trial_id:
                continue  # a restarted worker, or a late message about a lost trial
            if kind == "epoch":
                if self.running is not None:
                    self.running.epoch(trial_id, *payload)
                continue
            slot.trial = None
            if kind == "done":
                return Outcome(trial_id, OutcomeKind.DONE, result=TrialResult.from_dict(payload))
            return Outcome(trial_id, OutcomeKind.FAILED, error=payload)

    def _find_dead(self) -> Outcome | None:
        for slot in self._slots:
            if slot.trial is None and not slot.process.is_alive():
                self.restarts += 1
                self._start(slot)  # an idle worker died: replace it before it gets work
                continue
            if slot.trial is not None and not slot.process.is_alive():
                trial_id, code = slot.trial, slot.process.exitcode
                self.restarts += 1
                self._start(slot)  # a fresh worker takes the slot
                return Outcome(trial_id, OutcomeKind.LOST,
                               error=f"worker {slot.index} died (exit code {code})")  # fmt: skip
        return None

    def busy(self) -> dict[int, int]:
        """trial id -> pid of the worker running it (for monitoring and fault tests)."""
        return {s.trial: s.process.pid for s in self._slots if s.trial is not None}

    def close(self) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.process.is_alive():
                slot.tasks.put(None)
        for slot in self._slots:
            if slot.process is None:
                continue
            slot.process.join(timeout=2)
            if slot.process.is_alive():
                slot.process.terminate()
                slot.process.join(timeout=2)
