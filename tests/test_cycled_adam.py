"""CycledAdam: torch.optim.Adam's update with tensor lr and beta1, in multi-tensor ops."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from bnn_nas.config import TrainConfig
from bnn_nas.train.cycled_adam import CycledAdam
from bnn_nas.train.optim import CosineSchedule, build_optimizer


def _net(widths: list[int], seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
    return torch.nn.Sequential(*layers).double()


def _groups(net: torch.nn.Module) -> list[dict]:
    """Weights decayed at one rate, biases at another lr and no decay."""
    weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
    return [{"params": weights, "weight_decay": 0.01}, {"params": biases, "lr": 0.003}]


def _train(net, optimizer, steps: int, skip_bias_grads_at: tuple[int, ...] = ()) -> None:
    inputs = torch.Generator().manual_seed(1)
    x = torch.randn(16, net[0].in_features, dtype=torch.float64, generator=inputs)
    for step in range(steps):
        optimizer.zero_grad()
        net(x).square().mean().backward()
        if step in skip_bias_grads_at:  # a parameter without a gradient is left alone
            net[0].bias.grad = None
        optimizer.step()


def test_matches_torch_adam_with_weight_decay_groups_and_missing_grads():
    ours, reference = _net([5, 7, 3]), _net([5, 7, 3])
    optimizer = CycledAdam(_groups(ours), lr=0.01, betas=(0.9, 0.99), eps=1e-6)
    torch_adam = torch.optim.Adam(_groups(reference), lr=0.01, betas=(0.9, 0.99), eps=1e-6)
    # a parameter without a gradient is left alone (late in the run: earlier, its own
    # step count would lag its group's, which the group's bias correction ignores)
    _train(ours, optimizer, 12, skip_bias_grads_at=(10, 11))
    _train(reference, torch_adam, 12, skip_bias_grads_at=(10, 11))
    for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    assert float(optimizer.state[ours[0].bias]["step"]) == 10
    assert float(optimizer.state[ours[1].bias]["step"]) == 12
    assert (ours[0].weight - _net([5, 7, 3])[0].weight).abs().max() > 0.05  # it trained


def test_low_precision_parameters_count_and_scale_in_float32():
    """A bf16 step count would stop at 256 and a bf16 beta1 of 0.95 reads 0.949."""
    weight = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    optimizer = CycledAdam([weight], lr=1e-3, betas=(0.95, 0.999))
    assert optimizer.param_groups[0]["betas"][0].dtype == torch.float32
    for _ in range(300):
        weight.grad = torch.full_like(weight, 0.1)
        optimizer.step()
    assert float(optimizer.state[weight]["step"]) == 300
    extra = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    optimizer.add_param_group({"params": [extra], "lr": 0.5})
    assert isinstance(optimizer.param_groups[1]["lr"], torch.Tensor)
    assert optimizer.param_groups[1]["lr"].dtype == torch.float64


def test_lr_and_beta1_are_tensors_read_at_each_step():
    """Filling the tensors in place changes the next update as a new float would."""
    ours, reference = _net([4, 3]), _net([4, 3])
    optimizer = CycledAdam(ours.parameters(), lr=0.01, betas=(0.9, 0.999))
    lr, beta1 = optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["betas"][0]
    assert isinstance(lr, torch.Tensor) and isinstance(beta1, torch.Tensor)
    torch_adam = torch.optim.Adam(reference.parameters(), lr=0.01, betas=(0.9, 0.999))
    for step, (new_lr, new_beta1) in enumerate([(0.01, 0.9), (0.03, 0.85), (0.002, 0.95)]):
        lr.fill_(new_lr)
        beta1.fill_(new_beta1)
        torch_adam.param_groups[0].update(lr=new_lr, betas=(new_beta1, 0.999))
        _train(ours, optimizer, 1)
        _train(reference, torch_adam, 1)
        for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
            assert torch.allclose(a, b, rtol=0, atol=1e-12), step


def test_state_dict_round_trip_and_torch_adam_checkpoints():
    straight = _net([5, 7, 3])
    optimizer = CycledAdam(_groups(straight), lr=0.01)
    _train(straight, optimizer, 8)
    # interrupted after 5 steps: a fresh optimiser continues from the saved state
    resumed = _net([5, 7, 3])
    first = CycledAdam(_groups(resumed), lr=0.01)
    _train(resumed, first, 5)
    saved = first.state_dict()
    second = CycledAdam(_groups(resumed), lr=0.5)  # the checkpoint's lr wins
    held = second.param_groups[0]["lr"], second.param_groups[0]["betas"][0]
    second.load_state_dict(saved)
    # into the tensors it held: a graph captured before would read the loaded values
    assert second.param_groups[0]["lr"] is held[0] and float(held[0]) == 0.01
    assert second.param_groups[0]["betas"][0] is held[1]
    _train(resumed, second, 3)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    # a checkpoint written by torch.optim.Adam (float lr, step on the CPU) loads too
    from_torch = _net([5, 7, 3])
    torch_adam = torch.optim.Adam(_groups(from_torch), lr=0.01)
    _train(from_torch, torch_adam, 5)
    ours = CycledAdam(_groups(from_torch), lr=0.01)
    ours.load_state_dict(torch_adam.state_dict())
    assert isinstance(ours.param_groups[1]["betas"][0], torch.Tensor)
    _train(from_torch, ours, 3)
    for a, b in zip(straight.parameters(), from_torch.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)


def _step_ops(net: torch.nn.Module) -> tuple[int, list[str]]:
    """ATen operators one CycledAdam step calls, and any that read a value to the host."""
    settings = TrainConfig(epochs=1, lr=0.05, warmup_epochs=0.5, momentum_cycle=(0.85, 0.95))
    optimizer = build_optimizer(net, settings, capturable=True)
    CosineSchedule(optimizer, settings, steps_per_epoch=4)
    _train(net, optimizer, 1)  # state created outside, as warm-up steps do before capture
    net(torch.randn(3, net[0].in_features, dtype=torch.float64)).sum().backward()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        optimizer.step()
    names = [e.name for e in prof.events() if e.name.startswith("aten::")]
    top_level = [  # called by Python, not inside another operator
        e
        for e in prof.events()
        if e.name.startswith("aten::")
        and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
    ]
    host_reads = [n for n in names if n in ("aten::item", "aten::_local_scalar_dense")]
    return len(top_level), host_reads


def test_a_step_reads_nothing_to_the_host_and_its_op_count_does_not_grow_with_tensors():
    """A CUDA graph freezes (or refuses) every host read. And the point of the class: the
    update is a fixed number of multi-tensor operators, not a handful per tensor."""
    small_ops, small_reads = _step_ops(_net([4, 3, 2]))  # 4 parameter tensors
    large_ops, large_reads = _step_ops(_net([4, 8, 8, 8, 8, 8, 8, 8, 2]))  # 16
    assert not small_reads and not large_reads
    assert small_ops == large_ops
    assert 0 < small_ops < 60  # two groups (weights, biases) of ~22


def test_build_optimizer_takes_cycled_adam_for_momentum_cycle_only():
    net = _net([4, 3])
    cycled = build_optimizer(net, TrainConfig(momentum_cycle=(0.85, 0.95)))
    assert isinstance(cycled, CycledAdam)
    assert float(cycled.param_groups[0]["betas"][0]) == pytest.approx(0.95)
    plain = build_optimizer(net, TrainConfig())
    assert type(plain) is torch.optim.Adam
