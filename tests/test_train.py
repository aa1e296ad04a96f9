"""Training: learning on real images, schedules, checkpoints and exact resume after SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from bnn_nas.config import TrainConfig
from bnn_nas.data import load_cifar10_sample
from bnn_nas.data.splits import class_balanced_split
from bnn_nas.errors import CheckpointError
from bnn_nas.space.network import CellNetwork
from bnn_nas.space.search_space import search_space_from_dict
from bnn_nas.train import fit, load_checkpoint, save_checkpoint
from bnn_nas.train.optim import CosineSchedule, build_optimizer, lr_factor, parameter_groups
from tests.conftest import SMALL_GENOTYPE
from tests.fixtures import kill_after_epochs, make_image_folder, metrics_rows, write_config

CPU = torch.device("cpu")


def test_binary_net_learns_the_packaged_sample():
    """A few epochs on real CIFAR-10 images: the loss falls and held-out accuracy beats chance."""
    data = load_cifar10_sample()
    train_idx, _ = class_balanced_split(data.train.labels, n_train=2000, seed=0)
    space = search_space_from_dict(
        {"steps": 2, "ops": ["xnor_conv_3x3", "skip_connect"],
         "network": {"cells": 3, "channels": 8, "stem_multiplier": 2}}, "test",
    )  # fmt: skip
    net = CellNetwork(space.random_sample(random.Random(0)), space, 10)
    settings = TrainConfig(epochs=4, batch_size=50, lr=5e-3)
    history = fit(
        net, data.train.subset(train_idx), settings, device=CPU, seed=0,
        stats=data.train.channel_stats(), eval_set=data.test, eval_every=0,
    )  # fmt: skip
    assert history[-1].train_loss < history[0].train_loss - 0.1
    # 1,000 balanced held-out images: chance is 10%, its std 1%; demand 25%+
    assert history[-1].eval_acc > 0.25, history[-1]


def test_lr_schedule_warmup_then_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)
    assert lr_factor(0, 100, 0) == pytest.approx(1.0)


def _adam_with_cycled_beta1(steps: int, use_torch_adam: bool):
    """Adam + schedule with momentum_cycle on a float64 least-squares problem."""
    torch.manual_seed(0)
    A, b = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    model = torch.nn.Linear(4, 1, bias=False).double()
    settings = TrainConfig(epochs=2, lr=0.05, warmup_epochs=0.5, momentum_cycle=(0.85, 0.95))
    if use_torch_adam:  # float lr and betas, which the schedule replaces every step
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05, betas=(0.95, 0.999))
    else:
        optimizer = build_optimizer(model, settings)
    schedule = CosineSchedule(optimizer, settings, steps_per_epoch=steps // 2)
    start = model.weight.detach().clone().flatten()
    seen = []
    for _ in range(steps):
        seen.append((schedule.lr, float(optimizer.param_groups[0]["betas"][0])))
        optimizer.zero_grad()
        ((A @ model.weight.flatten() - b) ** 2).mean().backward()
        optimizer.step()
        schedule.step()
    return start, A, b, model.weight.detach().flatten(), seen


@pytest.mark.parametrize("use_torch_adam", [False, True])
def test_momentum_cycle_moves_adams_beta1_against_the_learning_rate(use_torch_adam):
    steps = 20
    start, A, b, trained, seen = _adam_with_cycled_beta1(steps, use_torch_adam)
    peak = max(lr for lr, _ in seen)
    for lr, beta1 in seen:  # 0.95 where the rate is ~0, 0.85 at its peak
        assert beta1 == pytest.approx(0.95 - 0.10 * lr / peak, abs=1e-12)
    assert min(beta1 for _, beta1 in seen) == pytest.approx(0.85)
    assert seen[0][1] == pytest.approx(0.93) and seen[-1][1] > 0.945  # rise over 5 steps
    # an independent Adam, written out, with the same per-step (lr, beta1); PyTorch's
    # bias correction uses the current beta1, as one-cycle schedulers assume
    w, m, v = start.clone(), torch.zeros_like(start), torch.zeros_like(start)
    for t, (lr, beta1) in enumerate(seen, start=1):
        g = 2 * A.T @ (A @ w - b) / len(b)
        m = beta1 * m + (1 - beta1) * g
        v = 0.999 * v + 0.001 * g * g
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - 0.999**t)
        w = w - lr * m_hat / (v_hat.sqrt() + 1e-8)
    assert torch.allclose(trained, w, rtol=0, atol=1e-12)
    assert (trained - start).abs().max() > 0.05  # it did train


def test_no_weight_decay_on_binary_weights_and_bn():
    space = search_space_from_dict({"steps": 1, "ops": ["xnor_conv_3x3"]}, "t")
    net = CellNetwork(space.random_sample(random.Random(0)), space, 10)
    decayed, free = parameter_groups(net, 1e-4, decay_binary_and_bn=False)
    from bnn_nas.binary import BinaryConv2d

    binary_ids = {id(m.weight) for m in net.modules() if isinstance(m, BinaryConv2d)}
    bn_ids = {id(p) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)
              for p in m.parameters()}  # fmt: skip
    assert binary_ids and binary_ids <= {id(p) for p in free["params"]}
    assert bn_ids <= {id(p) for p in free["params"]}
    assert not ({id(p) for p in decayed["params"]} & (binary_ids | bn_ids))
    assert id(net.stem[0].weight) in {id(p) for p in decayed["params"]}
    (everything,) = parameter_groups(net, 1e-4, decay_binary_and_bn=True)
    assert len(everything["params"]) == len(list(net.parameters()))


def test_checkpoint_round_trip_and_corruption(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"epoch": 3, "model": {"w": torch.arange(5)}})
    data = load_checkpoint(path)
    assert data["epoch"] == 3 and torch.equal(data["model"]["w"], torch.arange(5))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        load_checkpoint(truncated)
    assert "\n" not in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a bnn-nas checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    assert not list(tmp_path.glob(".*part"))  # no temp files left behind


def _config(tmp_path, epochs: int):
    data = make_image_folder(tmp_path / "images", train_per_class=24, test_per_class=4)
    body = (
        f"seed: 3\ndevice: cpu\ndata: {{name: image_folder, root: {data}}}\n"
        f"final: {{epochs: {epochs}, batch_size: 16, lr: 0.01, drop_path: 0.2, "
        "label_smoothing: 0.1, grad_clip: 5.0, warmup_epochs: 1, "
        "momentum_cycle: [0.85, 0.95]}\n"
    )
    return write_config(tmp_path / "config.yaml", body)


GENOTYPE = SMALL_GENOTYPE


def _train_cmd(config, run_dir, *extra):
    return [sys.executable, "-m", "bnn_nas.cli", "train", "--config", str(config),
            "--genotype", GENOTYPE, "--run-dir", str(run_dir), *extra]  # fmt: skip


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    epochs = 6
    config = _config(tmp_path, epochs)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_train_cmd(config, straight), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    assert kill_after_epochs(_train_cmd(config, killed), killed, 2, env) == -signal.SIGKILL
    done_before = len(metrics_rows(killed))
    assert 2 <= done_before < epochs, "the run finished before it could be killed"
    result = subprocess.run(_train_cmd(config, killed, "--resume"), env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    a, b = metrics_rows(straight), metrics_rows(killed)
    assert len(a) == len(b) == epochs
    for row_a, row_b in zip(a, b, strict=True):
        for key in ("lr", "train_loss", "train_acc", "eval_loss", "eval_acc"):
            if row_a[key]:
                assert float(row_a[key]) == pytest.approx(float(row_b[key]), rel=1e-5), key
    report = json.loads((killed / "report.json").read_text())
    assert report["epochs"] == epochs and report["genotype"] == GENOTYPE
    assert report["ops"] > 0 and report["bytes"] > 0 and report["torch"] == torch.__version__


@pytest.mark.slow
def test_existing_run_needs_resume_and_corrupt_checkpoint_is_one_line(tmp_path):
    config = _config(tmp_path, 1)
    run = tmp_path / "run"
    subprocess.run(_train_cmd(config, run), check=True, capture_output=True)
    again = subprocess.run(_train_cmd(config, run), capture_output=True, text=True)
    assert again.returncode == 2 and "pass --resume" in again.stderr
    checkpoint = run / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    broken = subprocess.run(_train_cmd(config, run, "--resume"), capture_output=True, text=True)
    assert broken.returncode == 2
    lines = broken.stderr.strip().splitlines()
    assert len(lines) == 1 and "truncated or corrupt" in lines[0], broken.stderr
    assert (run / "metrics.csv").exists()  # earlier results are still there


def test_missing_dataset_is_one_line(tmp_path):
    config = write_config(
        tmp_path / "c.yaml", f"data: {{name: image_folder, root: {tmp_path / 'nowhere'}}}\n"
    )
    proc = subprocess.run(_train_cmd(config, tmp_path / "run"), capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "nowhere" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_fit_rejects_diverging_training():
    from bnn_nas.train import TrainingDivergedError

    data = load_cifar10_sample()
    space = search_space_from_dict({"steps": 1, "ops": ["xnor_conv_3x3"]}, "t")
    net = CellNetwork(space.random_sample(random.Random(0)), space, 10)
    with torch.no_grad():
        net.classifier.weight.fill_(float("nan"))
    small = data.train.subset(range(64))
    with pytest.raises(TrainingDivergedError):
        fit(net, small, replace(TrainConfig(), epochs=1, batch_size=32), device=CPU, seed=0,
            stats=small.channel_stats())  # fmt: skip


def test_precision_note_says_bf16_runs_on_cuda_only():
    from bnn_nas.train.step import precision_note, uses_bf16

    assert uses_bf16(torch.device("cuda"), True)
    assert not uses_bf16(torch.device("cpu"), True) and not uses_bf16(torch.device("cuda"), False)
    assert precision_note(torch.device("cuda"), True) == "precision: bf16 autocast (CUDA)"
    assert precision_note(torch.device("cpu"), True) == (
        "precision: float32 on cpu (bf16 autocast is used on CUDA only)"
    )
    assert precision_note(torch.device("cuda"), False) == "precision: float32 (bf16 autocast off)"


@pytest.mark.parametrize(
    ("bf16", "expected"),
    [("true", "precision: float32 on cpu (bf16 autocast is used on CUDA only)"),
     ("false", "precision: float32 (bf16 autocast off)")],
)  # fmt: skip
def test_train_says_which_precision_runs(tmp_path, bf16, expected):
    from click.testing import CliRunner

    from bnn_nas.cli import main

    data = make_image_folder(tmp_path / "images", train_per_class=2, test_per_class=1)
    config = write_config(tmp_path / "c.yaml", (
        f"device: cpu\ndata: {{name: image_folder, root: {data}}}\n"
        f"final: {{epochs: 1, batch_size: 10, bf16: {bf16}}}\n"
    ))  # fmt: skip
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--genotype", GENOTYPE,
                                       "--run-dir", str(run)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert expected in result.stdout.splitlines()  # stdout: a failure's stderr is one line
    assert result.stdout.splitlines()[-1] == f"next: bnn-nas export {run}"
    assert json.loads((run / "report.json").read_text())["precision"] == "float32"


def test_cuda_asked_for_on_a_machine_without_it_names_the_config_and_the_set_fix(
    tmp_path, monkeypatch
):
    """device: cuda (in the file or from --set device=cuda) without CUDA: one line whose fix
    works for both origins; executor.devices names its own setting."""
    import torch
    from click.testing import CliRunner

    from bnn_nas.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = tmp_path / "c.yaml"
    config.write_text("device: cpu\nmodel: {type: resnet20}\nfinal: {epochs: 1}\n")
    args = ["train", "--config", str(config), "--model", "resnet20", "--run-dir",
            str(tmp_path / "r")]  # fmt: skip
    result = CliRunner().invoke(main, [*args, "--set", "device=cuda"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "bnn-nas: error: device cuda asked for but CUDA is not available; set device: cpu "
        "in the config or --set device=cpu"
    )
    assert not (tmp_path / "r").exists()
    from bnn_nas.errors import ConfigError
    from bnn_nas.search.processes import resolve_devices

    with pytest.raises(ConfigError) as err:
        resolve_devices(("cuda:0",))
    assert str(err.value) == (
        "executor.devices cuda:0 asked for but CUDA is not available; set executor.devices: "
        "[cpu] in the config or --set executor.devices=[cpu]"
    )
