"""A finished trial leaves nothing on the GPU: its graph's private pool goes back, and
nothing of the trial (model, step, optimizer) stays reachable after it.

The graph tests build a :class:`GraphedStep` on the CPU with a stand-in for the few
``torch.cuda`` calls it makes (tests/test_cuda.py runs the real thing): the stand-in graph
records what was true when it was captured, reset and when memory went back.
"""

from __future__ import annotations

import contextlib
import gc
import random
import warnings
import weakref
from typing import ClassVar

import pytest
import torch
from torch import nn

from bnn_nas.config import TrainConfig
from bnn_nas.search.evaluator import Evaluator
from bnn_nas.search.executors import LocalExecutor, OutcomeKind, format_error
from bnn_nas.search.streams import StreamExecutor
from bnn_nas.search.trials import TrialRecord, TrialStatus
from bnn_nas.space.network import CellNetwork
from bnn_nas.train import step as step_module
from bnn_nas.train import trainer
from bnn_nas.train.step import EagerStep, GraphedStep, make_step
from tests.fixtures import tiny_search_data, tiny_space


def _lock_held() -> bool:
    """Whether the lock that captures and giving memory back share is held now."""
    lock = getattr(step_module, "_CAPTURE_LOCK", None)
    return lock is not None and lock.locked()


class FakeGraph:
    """Stands in for torch.cuda.CUDAGraph: the capture runs the step eagerly."""

    made: ClassVar[list[weakref.ref[FakeGraph]]] = []  # weak: tests see a graph go
    capturing: ClassVar[bool] = False

    def __init__(self) -> None:
        self.events: list[tuple[str, bool]] = []  # (what, capture lock held)
        FakeGraph.made.append(weakref.ref(self))

    def capture_begin(self, capture_error_mode: str) -> None:
        FakeGraph.capturing = True
        self.events.append(("capture_begin", _lock_held()))

    def capture_end(self) -> None:
        FakeGraph.capturing = False
        self.events.append(("capture_end", _lock_held()))

    def replay(self) -> None:
        pass

    def reset(self) -> None:
        self.events.append(("reset", _lock_held()))


class FakeStream:
    def wait_stream(self, other: FakeStream) -> None:
        pass


@pytest.fixture
def fake_cuda(monkeypatch):
    """GraphedStep's torch.cuda calls, on the CPU; returns what empty_cache saw."""
    FakeGraph.made, FakeGraph.capturing = [], False
    current, default = FakeStream(), FakeStream()  # a trial thread's own stream
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: torch.zeros(1))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device=None: None)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current)
    monkeypatch.setattr(torch.cuda, "default_stream", lambda device=None: default)
    monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    emptied: list[dict] = []
    checks: list = []  # callables run at empty_cache, their results recorded

    def empty_cache() -> None:
        emptied.append({
            "lock held": _lock_held(),
            **{name: check() for name, check in checks},
        })  # fmt: skip

    monkeypatch.setattr(torch.cuda, "empty_cache", empty_cache)
    return emptied, checks


def _parts(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    return model, optimizer, x, y


def _graphed(model, optimizer, x, y) -> GraphedStep:
    return GraphedStep(model, model, optimizer, nn.CrossEntropyLoss(), bf16=False,
                       grad_clip=None, device=torch.device("cpu"), x_like=x, y_like=y)  # fmt: skip


def test_a_capture_holds_the_lock_that_giving_memory_back_takes(fake_cuda):
    model, optimizer, x, y = _parts()
    step = _graphed(model, optimizer, x, y)
    (graph,) = [ref() for ref in FakeGraph.made]
    assert step.graph is graph
    assert graph.events == [("capture_begin", True), ("capture_end", True)]
    assert not step_module._CAPTURE_LOCK.locked()  # and lets go after


def test_releasing_a_graphed_step_gives_its_pool_back_with_nothing_of_it_alive(fake_cuda):
    """The pool is freed only if no tensor from it is alive: the gradients the capture
    made (the stand-ins here for pool tensors) and the static inputs must be gone when
    the memory goes back, and it must go back after the graph is reset."""
    emptied, checks = fake_cuda
    model, optimizer, x, y = _parts()
    step = _graphed(model, optimizer, x, y)
    (graph,) = [ref() for ref in FakeGraph.made]
    captured = [weakref.ref(p.grad) for p in model.parameters()]
    statics = [weakref.ref(step.static_x), weakref.ref(step.static_y)]
    assert all(r() is not None for r in captured + statics)
    checks.append(("pool tensors alive", lambda: sum(r() is not None for r in captured)))
    checks.append(("statics alive", lambda: sum(r() is not None for r in statics)))
    checks.append(("reset before", lambda: any(e[0] == "reset" for e in graph.events)))
    step.release()
    assert emptied == [
        {"lock held": True, "pool tensors alive": 0, "statics alive": 0, "reset before": True}
    ]


def test_a_failed_capture_gives_its_memory_back_and_trains_eagerly(fake_cuda, monkeypatch):
    """Out of memory in the middle of a capture: the eager step takes over, and the
    failed graph and the gradients it made are gone before the memory goes back."""
    emptied, checks = fake_cuda
    model, optimizer, x, y = _parts()
    real_step = optimizer.step

    def step_out_of_memory(*args, **kwargs):
        if FakeGraph.capturing:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 MiB.")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(optimizer, "step", step_out_of_memory)
    checks.append(("graph alive", lambda: FakeGraph.made[0]() is not None))
    checks.append(("grads alive", lambda: sum(p.grad is not None for p in model.parameters())))
    with pytest.warns(UserWarning, match="capture failed .*out of memory.*training eagerly"):
        made = make_step(model, model, optimizer, nn.CrossEntropyLoss(), bf16=False,
                         grad_clip=None, device=torch.device("cpu"), cuda_graph=True,
                         first_batch=(x, y))  # fmt: skip
    assert type(made) is EagerStep
    assert emptied == [{"lock held": True, "graph alive": False, "grads alive": 0}]


def test_an_allocator_that_refuses_to_free_costs_a_warning_not_the_trial(fake_cuda, monkeypatch):
    """empty_cache fails an internal assert where the allocator believes a capture is
    still underway (a capture that failed inside CUDA can leave it so): the trial ends
    as it would have, with a warning."""
    model, optimizer, x, y = _parts()
    step = _graphed(model, optimizer, x, y)

    def refuse() -> None:
        raise RuntimeError("INTERNAL ASSERT FAILED: captures_underway.empty()")

    monkeypatch.setattr(torch.cuda, "empty_cache", refuse)
    with pytest.warns(UserWarning, match="could not give CUDA graph memory back"):
        step.release()
    assert all(p.grad is None for p in model.parameters())
    assert not step_module._CAPTURE_LOCK.locked()


# A whole trial, CPU steps: nothing of it is reachable once the executor has its outcome
# (so already before the pool fix: these guard against a reference that would keep a
# finished trial's graph, pool tensors or model alive) and fit releases its step on
# every way out.


def _tracked_trial(executor_kind: str, fail: bool, monkeypatch) -> tuple[OutcomeKind, dict]:
    alive: dict[str, weakref.ref] = {}
    real_make_step = trainer.make_step

    def tracking_make_step(model, forward, optimizer, *args, **kwargs):
        made = real_make_step(model, forward, optimizer, *args, **kwargs)
        alive.update(model=weakref.ref(model), optimizer=weakref.ref(optimizer),
                     step=weakref.ref(made), loss_sum=weakref.ref(made.loss_sum))  # fmt: skip
        return made

    monkeypatch.setattr(trainer, "make_step", tracking_make_step)
    space = tiny_space()
    # a learning rate of 1e30 diverges in the first epoch: a failed trial
    settings = TrainConfig(epochs=1, batch_size=20, lr=1e30 if fail else 0.005,
                           eval_batch_size=20)  # fmt: skip
    evaluator = Evaluator(space, tiny_search_data(), settings, torch.device("cpu"), seed=0)
    trial = TrialRecord(1, space.random_sample(random.Random(1)), TrialStatus.RUNNING, {})
    if executor_kind == "local":
        executor = LocalExecutor(evaluator, format_error)
    else:
        executor = StreamExecutor([evaluator], 1, format_error)
    with executor:
        executor.submit(trial)
        kind = executor.next_outcome().kind
        gc.collect()
        return kind, {name: ref() is not None for name, ref in alive.items()}


@pytest.mark.parametrize("fail", [False, True], ids=["done", "failed"])
@pytest.mark.parametrize("executor_kind", ["local", "streams"])
def test_nothing_of_a_finished_trial_stays_reachable(executor_kind, fail, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a diverging trial's NaN warnings, if any
        kind, alive = _tracked_trial(executor_kind, fail, monkeypatch)
    assert kind is (OutcomeKind.FAILED if fail else OutcomeKind.DONE)
    assert alive == dict.fromkeys(("model", "optimizer", "step", "loss_sum"), False)


@pytest.mark.parametrize("end", ["finished", "diverged", "cancelled"])
def test_fit_releases_its_step_however_training_ends(end, monkeypatch):
    released = []
    monkeypatch.setattr(EagerStep, "release", lambda self: released.append(type(self)))

    class StopError(Exception):
        pass

    def stop(history):
        raise StopError

    space, data = tiny_space(), tiny_search_data()
    net = CellNetwork(space.random_sample(random.Random(0)), space, 10)
    settings = TrainConfig(epochs=2, batch_size=20, lr=1e30 if end == "diverged" else 0.005)
    ends = {"finished": contextlib.nullcontext(),
            "diverged": pytest.raises(trainer.TrainingDivergedError),
            "cancelled": pytest.raises(StopError)}  # fmt: skip
    with ends[end], warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(net, data.train, settings, device=torch.device("cpu"), seed=0,
                    stats=data.stats, on_epoch=stop if end == "cancelled" else None)  # fmt: skip
    assert released == [EagerStep]
