"""GPU-only checks (run on the device machine; CI has no GPU, so they are skipped there)."""

from __future__ import annotations

import random

import pytest
import torch

from bnn_nas.config import TrainConfig
from bnn_nas.data import load_cifar10_sample
from bnn_nas.space.network import CellNetwork, build_baseline
from bnn_nas.space.search_space import load_search_space
from bnn_nas.train import fit
from bnn_nas.train import step as step_module
from bnn_nas.train.callbacks import Checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def record_steps(monkeypatch) -> list[str]:
    """The class name of every training step the trainer makes from now on."""
    made: list[str] = []
    original = step_module.make_step

    def spy(*args, **kwargs):
        step = original(*args, **kwargs)
        made.append(type(step).__name__)
        return step

    monkeypatch.setattr("bnn_nas.train.trainer.make_step", spy)
    return made


def _train(cuda_graph: bool, monkeypatch) -> tuple[list, list[str]]:
    made = record_steps(monkeypatch)
    data = load_cifar10_sample()
    space = load_search_space("tiny")
    torch.manual_seed(0)
    net = CellNetwork(space.random_sample(random.Random(0)), space, 10)
    settings = TrainConfig(epochs=3, batch_size=100, lr=0.005, cuda_graph=cuda_graph)
    history = fit(net, data.train, settings, device=torch.device("cuda"), seed=0,
                  stats=data.train.channel_stats(), eval_set=data.test, eval_every=1)  # fmt: skip
    return history, made


def test_cuda_graph_step_trains_like_the_eager_step(monkeypatch):
    graphed, kinds = _train(True, monkeypatch)
    eager, eager_kinds = _train(False, monkeypatch)
    assert kinds == ["GraphedStep"] and eager_kinds == ["EagerStep"]
    for g, e in zip(graphed, eager, strict=True):
        # same data, weights, RNG: only cuDNN/bf16 nondeterminism separates them
        assert g.train_loss == pytest.approx(e.train_loss, rel=0.02)
        assert g.eval_acc == pytest.approx(e.eval_acc, abs=0.03)
    assert graphed[-1].train_loss < graphed[0].train_loss


def test_streams_executor_trains_graphed_candidates_side_by_side(tmp_path, monkeypatch):
    """Threads on their own streams capture and replay graphs concurrently, and score
    candidates as one-at-a-time training does (up to cuDNN/bf16 nondeterminism)."""
    from dataclasses import replace

    from tests.test_executors import _accuracy_by_genotype, make_config

    made = record_steps(monkeypatch)
    streams_made = []
    original_stream = torch.cuda.Stream

    def counting_stream(*args, **kwargs):
        if "stream_id" not in kwargs:  # current_stream() wraps existing streams this way
            streams_made.append(1)
        return original_stream(*args, **kwargs)

    # a graph must be captured on its thread's stream, never on a new one from PyTorch's
    # round-robin pool, which after 32 would be another thread's stream
    monkeypatch.setattr(torch.cuda, "Stream", counting_stream)
    config = make_config(type="streams", trials_per_device=3)
    config = replace(
        config,
        device="cuda",
        executor=replace(config.executor, devices=("cuda:0",)),
        search=replace(config.search, controller="random", budget=6),
        train=replace(config.train, epochs=2),
    )
    concurrent = _accuracy_by_genotype(config, tmp_path / "streams")
    assert made == ["GraphedStep"] * 6
    assert len(streams_made) == 3  # one per thread, none per capture
    local = replace(config, executor=replace(config.executor, type="local"))
    sequential = _accuracy_by_genotype(local, tmp_path / "local")
    assert concurrent.keys() == sequential.keys()
    for key, accuracy in concurrent.items():
        assert accuracy == pytest.approx(sequential[key], abs=0.05)


@pytest.mark.parametrize(
    "settings",
    [None, TrainConfig(epochs=1, lr=0.01, warmup_epochs=0.5, momentum_cycle=(0.85, 0.95))],
    ids=["fixed-lr", "one-cycle-beta1"],
)
def test_graphed_step_computes_what_the_eager_step_computes(settings):
    """float64: rounding cannot flip a sign, so any disagreement is a wrong step. With a
    schedule, the graph must read the lr and beta1 it writes in place between replays."""
    from benchmarks.step_agreement import max_difference, run_variant

    torch.manual_seed(0)
    device = torch.device("cuda")
    model = build_baseline("resnet20", "xnor", 10).to(device, torch.float64)
    batches = [
        (torch.randn(32, 3, 32, 32, device=device, dtype=torch.float64),
         torch.randint(0, 10, (32,), device=device))
        for _ in range(3)
    ]  # fmt: skip
    common = {"compiled": None, "bf16": False, "settings": settings}
    eager, eager_losses = run_variant(model, batches, device, graphed=False, **common)
    graphed, graphed_losses = run_variant(model, batches, device, graphed=True, **common)
    assert graphed_losses == pytest.approx(eager_losses, rel=1e-9)
    diff, where = max_difference(eager, graphed)
    assert diff < 1e-9, where
    assert max_difference(model, eager)[0] > 1e-4  # training did move the weights


def test_graphed_trainings_give_their_memory_back(monkeypatch):
    """A search trains thousands of graphed candidates in one process, where the cyclic
    collector's full passes are rare: with it off, the memory a fit took must still come
    back (8 streams on an H200 once ran out after ~130 trials). Fits on the default
    stream share one side stream, so cuBLAS workspaces (one per stream) do not grow."""
    import gc

    made = record_steps(monkeypatch)
    data = load_cifar10_sample()
    space = load_search_space("tiny")
    settings = TrainConfig(epochs=1, batch_size=100, lr=0.005, cuda_graph=True)
    reserved = []
    gc.disable()
    try:
        for i in range(8):
            torch.manual_seed(i)
            net = CellNetwork(space.random_sample(random.Random(i)), space, 10)
            fit(net, data.train, settings, device=torch.device("cuda"), seed=i,
                stats=data.train.channel_stats())  # fmt: skip
            del net
            torch.cuda.synchronize()
            torch.cuda.empty_cache()  # frees what nothing holds: released graph pools too
            reserved.append(torch.cuda.memory_reserved())
    finally:
        gc.enable()
    assert made == ["GraphedStep"] * 8
    # a kept graph pool would add its activations (tens of MB here) per training
    assert reserved[-1] - reserved[1] < 8 * 2**20, [r / 2**20 for r in reserved]


def test_a_streams_search_gives_each_finished_trials_graph_memory_back(monkeypatch):
    """12 graphed trials on 3 streams, in rounds of 3, and the test empties no cache: once
    a round is over no graph pool holds memory, and memory reserved after the last round
    stays near where it was after the first two. A released graph's pool is freed only
    by empty_cache or an out-of-memory retry, which the allocator skips while any capture
    is underway: finished trials' pools piled up to 73 GiB after 72 trials on 8 streams
    of an H200 (2026-12-01). One genotype for all, so every round holds the same; a
    trial's pool here is (estimated, not measured) a few hundred MB."""
    from bnn_nas.search.evaluator import Evaluator
    from bnn_nas.search.executors import OutcomeKind, format_error
    from bnn_nas.search.streams import StreamExecutor
    from bnn_nas.search.trials import TrialRecord, TrialStatus
    from bnn_nas.space.search_space import search_space_from_dict

    made = record_steps(monkeypatch)
    from tests.fixtures import tiny_search_data

    data = tiny_search_data(train=1000, valid=200)
    space = search_space_from_dict(
        {"steps": 2, "ops": ["xnor_conv_3x3", "bireal_conv_3x3_skip_connect", "skip_connect"],
         "network": {"cells": 3, "channels": 16, "stem_multiplier": 3}}, "test",
    )  # fmt: skip
    settings = TrainConfig(epochs=1, batch_size=200, eval_batch_size=200, lr=0.005,
                           cuda_graph=True)  # fmt: skip
    evaluator = Evaluator(space, data, settings, torch.device("cuda"), seed=0)
    genotype = space.random_sample(random.Random(0))
    reserved, in_graph_pools = [], []
    with StreamExecutor([evaluator], 3, format_error) as executor:
        for first in range(0, 12, 3):
            for trial_id in range(first, first + 3):
                executor.submit(TrialRecord(trial_id, genotype, TrialStatus.RUNNING, {}))
            outcomes = [executor.next_outcome() for _ in range(3)]
            assert all(o.kind is OutcomeKind.DONE for o in outcomes), outcomes
            torch.cuda.synchronize()
            reserved.append(torch.cuda.memory_reserved())
            in_graph_pools.append(sum(
                segment["total_size"] for segment in torch.cuda.memory_snapshot()
                if tuple(segment["segment_pool_id"]) != (0, 0)  # (0, 0): the common pool
            ))  # fmt: skip
    assert made == ["GraphedStep"] * 12  # else nothing here was graphed
    mb = {"reserved": [round(r / 2**20, 1) for r in reserved],
          "in graph pools": [round(r / 2**20, 1) for r in in_graph_pools]}  # fmt: skip
    assert max(in_graph_pools) <= 8 * 2**20, mb  # a few small segments at most
    assert reserved[-1] <= max(reserved[:2]) + 128 * 2**20, mb


def test_interrupted_gpu_training_resumes_from_its_checkpoint(tmp_path):
    """The checkpoint is read straight onto the GPU; its RNG states must still restore
    (torch takes only CPU ByteTensors: a 143-epoch final once failed to resume here)."""

    class StopTrainingError(Exception):
        pass

    def stop_after_two(history):
        if len(history) == 2:
            raise StopTrainingError

    data = load_cifar10_sample()
    space = load_search_space("tiny")
    # one-cycle beta1 on: its betas are device tensors in the checkpoint too
    settings = TrainConfig(epochs=3, batch_size=100, lr=0.005, cuda_graph=True,
                           momentum_cycle=(0.85, 0.95))  # fmt: skip
    genotype = space.random_sample(random.Random(0))

    def train(**kwargs):
        torch.manual_seed(0)
        net = CellNetwork(genotype, space, 10)
        return fit(net, data.train, settings, device=torch.device("cuda"), seed=0,
                   stats=data.train.channel_stats(), eval_set=data.test, **kwargs)  # fmt: skip

    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(StopTrainingError):
        train(callbacks=[Checkpoint(checkpoint)], on_epoch=stop_after_two)
    resumed = train(callbacks=[Checkpoint(checkpoint, resume=True)])
    straight = train()
    assert len(resumed) == len(straight) == 3
    for r, s in zip(resumed, straight, strict=True):
        # same data order and weights: only cuDNN/bf16 nondeterminism separates them
        assert r.train_loss == pytest.approx(s.train_loss, rel=0.02)
        assert r.eval_acc == pytest.approx(s.eval_acc, abs=0.03)


def test_cycled_adam_launches_as_many_kernels_for_many_tensors_as_for_few():
    """CycledAdam's point: each update operation is one multi-tensor launch whose scalar
    is a single 0-dim tensor (a list of 0-dim tensors as the scalar would send PyTorch's
    CUDA kernels down a per-tensor path)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from bnn_nas.train.cycled_adam import CycledAdam

    def kernels_per_step(layers: int) -> int:
        torch.manual_seed(0)
        net = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(layers)]).cuda()
        optimizer = CycledAdam(net.parameters(), lr=1e-3)
        for _ in range(2):  # state made, first-call work done
            optimizer.zero_grad()
            net(torch.randn(4, 8, device="cuda")).sum().backward()
            optimizer.step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            optimizer.step()
            torch.cuda.synchronize()
        return sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA)

    few, many = kernels_per_step(2), kernels_per_step(16)  # 4 and 32 parameter tensors
    assert 0 < few == many, (few, many)


SPECIAL_VALUES = [0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), -float("inf"), 3e38, 1e-40]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize(
    "shape,layout",
    [((8, 16, 9, 9), torch.contiguous_format), ((8, 16, 9, 9), torch.channels_last),
     ((3, 5, 7, 7), torch.channels_last), ((7, 13), torch.contiguous_format)],
    ids=["nchw", "nhwc", "odd-size", "2d"],
)  # fmt: skip
@pytest.mark.parametrize("name", ["clipped_ste", "approx_sign"])
def test_fused_binarizers_give_the_aten_results_bit_for_bit(name, shape, layout, dtype):
    """Fused kernels are chosen without a setting because they change no bit: outputs and
    gradients at the branch points (+-0, +-1), NaN, inf, huge and subnormal values, sizes
    no multiple of the block, and gradients holding NaN/inf laid out unlike x."""
    from benchmarks.fused_binarizer import BINARIZERS, differing_elements

    aten, triton = BINARIZERS[name]
    torch.manual_seed(0)
    x = torch.randn(shape, device="cuda") * 1.5
    x.view(-1)[: len(SPECIAL_VALUES)] = torch.tensor(SPECIAL_VALUES, device="cuda")
    x = x.to(dtype).contiguous(memory_format=layout)
    grad = torch.randn(shape, device="cuda")
    grad.view(-1)[-len(SPECIAL_VALUES) :] = torch.tensor(SPECIAL_VALUES, device="cuda")
    grad = grad.to(dtype)
    if len(shape) == 4:  # the other layout
        flip = {torch.contiguous_format: torch.channels_last}
        grad = grad.contiguous(memory_format=flip.get(layout, torch.contiguous_format))
    assert differing_elements(aten, triton, x, grad) == 0


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_fused_binarizers_run_on_a_gpu_that_is_not_the_current_one():
    """A process-pool worker trains on cuda:N without making it current."""
    from bnn_nas.binary.quantizers import ApproxSign, ClippedSteSign

    x = torch.randn(4, 8, 6, 6, device="cuda:1", requires_grad=True)
    assert torch.cuda.current_device() == 0
    for binarizer in (ClippedSteSign(), ApproxSign()):
        out = binarizer(x)
        (grad,) = torch.autograd.grad(out, x, torch.ones_like(x))
        assert torch.equal(out.cpu(), torch.where(x.detach().cpu() >= 0, 1.0, -1.0))
        assert out.device == grad.device == x.device


def test_binarizers_take_the_fused_path_on_dense_cuda_tensors_only(monkeypatch):
    from bnn_nas.binary import fused
    from bnn_nas.binary.quantizers import ApproxSign, BirealWeight, ClippedSteSign

    calls: list[str] = []
    for name in ("clipped_ste_sign", "approx_sign"):
        original = getattr(fused, name)
        monkeypatch.setattr(fused, name, lambda x, o=original, n=name: calls.append(n) or o(x))
    x = torch.randn(4, 8, 6, 6, device="cuda", dtype=torch.bfloat16)
    ClippedSteSign()(x)
    ApproxSign()(x)
    BirealWeight()(x.float())
    assert calls == ["clipped_ste_sign", "approx_sign", "clipped_ste_sign"]
    calls.clear()
    sliced = x[:, ::2]  # not dense: the ATen path, with the same values
    assert torch.equal(ClippedSteSign()(sliced), torch.where(sliced >= 0, 1.0, -1.0).to(x.dtype))
    ApproxSign()(x.double())  # float64: ATen
    assert calls == []


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_teacher_inside_the_graphed_step_computes_what_the_eager_step_computes(optimizer):
    """Distillation: the teacher's forward is captured with the student's step. float64
    (no rounding flips a sign): graphed and eager steps agree, the teacher is untouched,
    and SGD's step (TensorLrSGD) is captured, not run eagerly."""
    import copy

    from bnn_nas.config import DistillConfig
    from bnn_nas.train.distill import DistillLoss

    torch.manual_seed(0)
    device = torch.device("cuda")
    student = build_baseline("resnet20", "xnor", 10).to(device, torch.float64)
    teacher = build_baseline("resnet20", "xnor", 10, act="identity", weight="identity")
    teacher = teacher.to(device, torch.float64).eval().requires_grad_(False)
    before = copy.deepcopy(teacher.state_dict())
    settings = TrainConfig(epochs=1, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01,
                           weight_decay=5e-4, warmup_epochs=0.5,
                           distill=DistillConfig(teacher="t", loss="ce_kl", temperature=2.0,
                                                 weight=0.5))  # fmt: skip
    batches = [
        (torch.randn(32, 3, 32, 32, device=device, dtype=torch.float64),
         torch.randint(0, 10, (32,), device=device))
        for _ in range(4)
    ]  # fmt: skip
    results = _eager_and_graphed_steps(student, teacher, settings,
                                       DistillLoss(settings.distill), batches)  # fmt: skip
    losses = {graphed: [f[0] for f in figures] for graphed, (_, figures) in results.items()}
    assert losses[True] == pytest.approx(losses[False], rel=1e-9)
    _assert_same_weights(results[True][0], results[False][0])
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
@pytest.mark.parametrize("loss_kind", ["ce", "ce_kl"])
@pytest.mark.parametrize("kept", [False, True])
def test_a_mixed_batch_inside_the_graphed_step_computes_what_the_eager_step_computes(
    kind, loss_kind, kept
):
    """mixup / CutMix (train/final.mix): the partners and lambda are static device tensors
    copied in at every replay, never a number baked into the graph. Batches mixed on the
    GPU from their own generators, each with its own lambda (the graph is captured on the
    first); float64 (no rounding flips a sign): graphed and eager steps agree in loss,
    accuracy (the larger share's label) and weights, with and without a teacher. ``kept``:
    batches 1 and 3 left unmixed as mix.prob leaves a batch (lam 1, partners = labels, the
    same tensor shapes) replay the graph captured on a mixed one."""
    from bnn_nas.config import DistillConfig
    from bnn_nas.data.mix import MixedTargets, random_mix
    from bnn_nas.train.distill import DistillLoss
    from bnn_nas.train.mix_loss import MixCrossEntropy

    torch.manual_seed(0)
    device = torch.device("cuda")
    student = build_baseline("resnet20", "xnor", 10).to(device, torch.float64)
    teacher = None
    distill = None
    if loss_kind == "ce_kl":
        teacher = build_baseline("resnet20", "xnor", 10, act="identity", weight="identity")
        teacher = teacher.to(device, torch.float64).eval().requires_grad_(False)
        distill = DistillConfig(teacher="t", loss="ce_kl", temperature=4.0, weight=0.5)
    settings = TrainConfig(epochs=1, lr=0.01, warmup_epochs=0.5, label_smoothing=0.1,
                           distill=distill)  # fmt: skip
    batches = []
    for i in range(4):
        g = torch.Generator(device=device).manual_seed(i)
        x = torch.randn(32, 3, 32, 32, device=device, dtype=torch.float64)
        y = torch.randint(0, 10, (32,), device=device)
        prob = 0.0 if kept and i % 2 else 1.0  # prob 0: the batch as mix.prob leaves one
        batches.append(random_mix(x, y, kind, 1.0, g, prob))
    assert all(isinstance(t, MixedTargets) and t.lam.device.type == "cuda" for _, t in batches)
    mixed = [t for i, (_, t) in enumerate(batches) if not (kept and i % 2)]
    assert len({float(t.lam) for t in mixed}) == len(mixed)  # lambda differs per batch
    for _, t in batches[1::2] if kept else ():
        assert float(t.lam) == 1.0 and torch.equal(t.partners, t.labels)
    if distill is not None:
        loss = DistillLoss(distill, label_smoothing=0.1)
    else:
        loss = MixCrossEntropy(label_smoothing=0.1)
    results = _eager_and_graphed_steps(student, teacher, settings, loss, batches)
    eager, graph = results[False][1], results[True][1]
    assert [f[0] for f in graph] == pytest.approx([f[0] for f in eager], rel=1e-9)
    assert [f[1] for f in graph] == [f[1] for f in eager]
    _assert_same_weights(results[True][0], results[False][0])


def _eager_and_graphed_steps(student, teacher, settings, loss, batches):
    """The same steps from copies of ``student``, eager (False) and as a CUDA graph
    captured on the first batch (True): each copy and its (loss, correct) per step."""
    import copy

    from bnn_nas.train.optim import CosineSchedule, build_optimizer
    from bnn_nas.train.step import EagerStep, GraphedStep, make_step

    device = torch.device("cuda")
    results = {}
    for graphed in (False, True):
        model = copy.deepcopy(student)
        opt = build_optimizer(model, settings, capturable=True)
        schedule = CosineSchedule(opt, settings, len(batches))
        common = {"bf16": False, "grad_clip": None, "device": device, "teacher": teacher}
        if graphed:
            step = make_step(model, model, opt, loss, cuda_graph=True, first_batch=batches[0],
                             **common)  # fmt: skip
            assert isinstance(step, GraphedStep)
        else:
            step = EagerStep(model, model, opt, loss, **common)
        figures = []
        for x, target in batches:
            step.reset()
            step(x, target)
            figures.append((float(step.loss_sum) / len(x), int(step.correct)))
            schedule.step()
        results[graphed] = (model, figures)
    return results


def _assert_same_weights(a, b) -> None:
    state = b.state_dict()
    for key, value in a.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, state[key], rtol=0, atol=1e-9), key


def _one_step_gradients(model, x, y, backend: str | None) -> dict[str, torch.Tensor]:
    import copy

    from torch import nn

    model = copy.deepcopy(model).train()
    torch._dynamo.reset()
    forward = torch.compile(model, backend=backend) if backend else model
    nn.functional.cross_entropy(forward(x), y).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    grads.update({n: b for n, b in model.named_buffers() if b.is_floating_point()})
    return grads


@pytest.mark.parametrize("family", ["xnor", "bireal"])
def test_a_compiled_step_computes_the_eager_gradients_bit_for_bit(family, monkeypatch):
    """The fault of issue 20: Dynamo traced the binarizers' autograd Functions and the
    compiled step got the eager logits with wrong gradients (cosine 0 on the last
    blocks' BN parameters, torch 2.11, H200); 8 epochs fell from 75% to 58%. Traced as
    ATen arithmetic (bnn_nas/binary/compiled_sign.py), Dynamo's graph computes what the
    eager step computes: float32, deterministic cuDNN, every gradient and BN buffer equal
    bit for bit (session 9: this test caught session 8's custom-op routing, which torch
    2.11 defeated). (AOTAutograd's and Inductor's graphs round differently: tested below.)"""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    layout = torch.channels_last
    model = build_baseline("resnet18", family, 10).cuda().to(memory_format=layout)
    x = torch.randn(64, 3, 32, 32, device="cuda").to(memory_format=layout)
    y = torch.randint(0, 10, (64,), device="cuda")
    eager = _one_step_gradients(model, x, y, None)
    compiled = _one_step_gradients(model, x, y, "eager")
    differing = [n for n, g in eager.items() if not torch.equal(g, compiled[n])]
    assert differing == []


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_an_aot_or_inductor_step_computes_the_eager_gradients_to_rounding(backend):
    """AOTAutograd's decompositions and Inductor's fused kernels round differently, so the
    step is compared in float64, where no rounding flips a sign: equal to 1e-9 relative
    (1e-12 absolute: block 0's BN sees an already normalised input, its running mean is
    rounding noise around 0)."""
    torch.manual_seed(0)
    layout = torch.channels_last
    model = build_baseline("resnet20", "bireal", 10).cuda().double().to(memory_format=layout)
    x = torch.randn(32, 3, 32, 32, device="cuda", dtype=torch.float64).to(memory_format=layout)
    y = torch.randint(0, 10, (32,), device="cuda")
    eager = _one_step_gradients(model, x, y, None)
    compiled = _one_step_gradients(model, x, y, backend)
    for name, g in eager.items():
        torch.testing.assert_close(compiled[name], g, rtol=1e-9, atol=1e-12, msg=name)
