"""Several trials at once in this process: one thread and one CUDA stream per trial.

A search candidate is small: even with its whole step in one CUDA graph its kernels
leave most of a large GPU idle. Worker processes sharing a GPU time-slice rather than
overlap (docs/benchmarks.md), but kernels from different streams of one process do run
side by side. Each worker thread here trains one candidate on its own stream; the
graphs are captured per thread (``capture_error_mode="thread_local"``) and a replay is
one launch, so the threads hardly contend for the interpreter.

Trials stay reproducible: model initialisation runs under the trainer's RNG lock, data
order and augmentation come from per-trial generators. A candidate that draws random
numbers while training (drop-path, the stochastic binarizer) shares the device's RNG
with the other threads; use the ``processes`` executor when such runs must repeat
bit for bit.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import queue
import threading
from collections.abc import Callable

import torch

from bnn_nas.config import Config
from bnn_nas.errors import ConfigError
from bnn_nas.extensions import register_executor
from bnn_nas.search.budget import budget_kwargs
from bnn_nas.search.evaluator import Evaluator, TrialCancelledError
from bnn_nas.search.executors import (
    Executor,
    Outcome,
    OutcomeKind,
    format_error,
    trial_epochs,
)
from bnn_nas.search.processes import DeviceSettings, resolve_devices, trials_per_device
from bnn_nas.search.running import RunningTrials
from bnn_nas.search.trials import TrialRecord

# PyTorch hands out streams round-robin from a pool of 32 per device: more threads
# would share streams (and a capture on a shared stream would swallow another's work)
MAX_STREAMS_PER_DEVICE = 32


class StreamExecutor(Executor):
    """``per_device`` worker threads on each evaluator's device, one CUDA stream each."""

    in_process = True  # a trial that kills the process counts against all in flight

    def __init__(
        self,
        evaluators: list[Evaluator],
        per_device: int,
        describe_error: Callable[[BaseException], str] = format_error,
    ) -> None:
        if not 1 <= per_device <= MAX_STREAMS_PER_DEVICE:
            raise ConfigError(
                f"executor.trials_per_device is {per_device}; the streams executor runs "
                f"1 to {MAX_STREAMS_PER_DEVICE} per device (use processes for more)"
            )
        self.describe_error = describe_error
        self.capacity = len(evaluators) * per_device
        # a seat: an evaluator (its device) and a stream of that device; a running trial
        # holds one, so no two trials share a stream
        self._seats: queue.SimpleQueue[tuple[Evaluator, torch.cuda.Stream | None]] = (
            queue.SimpleQueue()
        )
        for evaluator in evaluators:
            for _ in range(per_device):
                cuda = evaluator.device.type == "cuda"
                self._seats.put((evaluator, torch.cuda.Stream(evaluator.device) if cuda else None))
        self._pool = cf.ThreadPoolExecutor(
            max_workers=self.capacity, thread_name_prefix="bnn-nas-trial"
        )
        self._futures: dict[cf.Future, int] = {}
        self._stopping = threading.Event()

    def _run(self, trial: TrialRecord) -> Outcome:
        evaluator, stream = self._seats.get_nowait()  # submit keeps one free per trial
        context = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        running = self.running
        report = None
        if running is not None:
            running.started(trial.id, trial_epochs(trial, evaluator))
            report = running.reporter(trial.id)
        try:
            with context:
                budget = budget_kwargs(trial)
                if report is None:  # an evaluator may not take on_epoch (a test's)
                    result = evaluator(trial.genotype, self._stopping.is_set, **budget)
                else:
                    result = evaluator(trial.genotype, self._stopping.is_set, report, **budget)
        except TrialCancelledError:
            return Outcome(trial.id, OutcomeKind.LOST, error="stopped with the search")
        except Exception as err:  # a failing candidate is recorded; the search goes on
            return Outcome(trial.id, OutcomeKind.FAILED, error=self.describe_error(err))
        finally:
            if running is not None:
                running.ended(trial.id)
            self._seats.put((evaluator, stream))
        return Outcome(trial.id, OutcomeKind.DONE, result=result)

    def report_epochs(self, running: RunningTrials) -> bool:
        self.running = running  # each worker thread reports its trial's epochs there
        return True

    def submit(self, trial: TrialRecord) -> None:
        if len(self._futures) >= self.capacity:
            raise RuntimeError("executor is full; wait for an outcome first")
        self._futures[self._pool.submit(self._run, trial)] = trial.id

    def in_flight(self) -> int:
        return len(self._futures)

    def next_outcome(self) -> Outcome:
        done, _ = cf.wait(self._futures, return_when=cf.FIRST_COMPLETED)
        future = next(iter(done))
        trial_id = self._futures.pop(future)
        try:
            return future.result()
        except BaseException as err:  # the thread itself broke, not the candidate: retry
            return Outcome(trial_id, OutcomeKind.LOST, error=self.describe_error(err))

    def close(self) -> None:
        """Drop queued trials and end running ones at their next epoch boundary."""
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._futures.clear()


@register_executor("streams", settings=DeviceSettings)
def make_streams(
    config: Config, evaluator: Evaluator, plugins: tuple[str, ...], settings: DeviceSettings
) -> Executor:
    """K threads per device in this process, one CUDA stream each (the default on a GPU)."""
    if config.train.compile:  # torch.compile is not thread-safe (pytorch/pytorch#118260)
        raise ConfigError(
            "train.compile: the streams executor (executor.type auto's choice on a GPU) "
            "trains candidates in threads of one process, where torch.compile is not "
            "thread-safe: a compile in one thread restores the RNG state it started with "
            "while another thread seeds and builds its candidate; use executor.type "
            "processes, or train.compile false"
        )
    devices = resolve_devices(settings.devices)
    per_device = trials_per_device(settings.trials_per_device, devices, "streams")
    evaluators = [evaluator.on_device(device) for device in devices]
    return StreamExecutor(evaluators, per_device, format_error)
