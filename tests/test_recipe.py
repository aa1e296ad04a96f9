"""The training recipe of the binary-network literature: distillation from a teacher,
staged training (binarizers switched per stage, exact resume in stage 2), SGD with
Nesterov momentum in multi-tensor form, weight decay per parameter group."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from torch import nn

from bnn_nas.binary import BinaryConv2d
from bnn_nas.config import (
    Config,
    DistillConfig,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    config_to_dict,
)
from bnn_nas.errors import ConfigError
from bnn_nas.io import dump_yaml
from bnn_nas.space.network import build_baseline
from bnn_nas.train.distill import DistillLoss, load_teacher
from bnn_nas.train.optim import build_optimizer, parameter_groups
from bnn_nas.train.step import EagerStep
from bnn_nas.train.tensor_sgd import TensorLrSGD
from tests.conftest import SMALL_GENOTYPE
from tests.fixtures import kill_after_epochs, make_image_folder, metrics_rows, write_config

CPU = torch.device("cpu")
TWIN = {"act": "identity", "weight": "identity"}


# --- distillation loss and step -------------------------------------------------------


def _by_hand(student, teacher, labels, T, weight, kind, smoothing=0.0):
    """Hinton's loss written out: sum_c p_t (log p_t - log p_s) per image, mean, * T^2."""
    total = 0.0
    for s_row, t_row, y in zip(student.tolist(), teacher.tolist(), labels.tolist(), strict=True):
        zs = [v / T for v in s_row]
        zt = [v / T for v in t_row]
        ls = [v - math.log(sum(math.exp(u) for u in zs)) for v in zs]
        lt = [v - math.log(sum(math.exp(u) for u in zt)) for v in zt]
        kl = sum(math.exp(b) * (b - a) for a, b in zip(ls, lt, strict=True))
        raw = [v - math.log(sum(math.exp(u) for u in s_row)) for v in s_row]
        n = len(raw)
        ce = -(1 - smoothing) * raw[y] - smoothing / n * sum(raw)
        kd = kl * T * T
        total += weight * kd if kind == "kl" else (1 - weight) * ce + weight * kd
    return total / len(labels)


@pytest.mark.parametrize("kind", ["kl", "ce_kl"])
@pytest.mark.parametrize("T", [1.0, 4.0])
def test_distillation_loss_equals_its_formula_on_fixed_logits(kind, T):
    student = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]], dtype=torch.float64)
    teacher = torch.tensor([[1.5, 0.0, -2.0], [-1.0, 2.5, 0.3]], dtype=torch.float64)
    labels = torch.tensor([0, 2])
    loss = DistillLoss(DistillConfig(teacher="t", loss=kind, temperature=T, weight=0.7), 0.1)
    got = float(loss(student, labels, teacher))
    assert got == pytest.approx(_by_hand(student, teacher, labels, T, 0.7, kind, 0.1), rel=1e-12)
    same = DistillLoss(DistillConfig(teacher="t", loss="kl", temperature=T))
    assert float(same(teacher, labels, teacher)) == pytest.approx(0.0, abs=1e-12)


def test_a_distilled_step_sends_gradients_to_the_student_only():
    torch.manual_seed(0)
    student = build_baseline("resnet20", "xnor", 10)
    teacher = build_baseline("resnet20", "xnor", 10, **TWIN).eval().requires_grad_(False)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = [p.detach().clone() for p in student.parameters()]
    settings = TrainConfig(lr=0.01, distill=DistillConfig(teacher="t", loss="ce_kl", weight=0.5))
    optimizer = build_optimizer(student, settings)
    step = EagerStep(student, student, optimizer, DistillLoss(settings.distill), bf16=False,
                     grad_clip=None, device=CPU, teacher=teacher)  # fmt: skip
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    step(x, y)
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training  # eval mode: BN statistics untouched too
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is not None for p in student.parameters())
    moved = [not torch.equal(a, b) for a, b in zip(student_before, student.parameters(),
                                                    strict=True)]  # fmt: skip
    assert sum(moved) > len(moved) // 2
    assert float(step.loss_sum) > 0


# --- teachers -------------------------------------------------------------------------


def _teacher_dir(path, classes=10, image_shape=(32, 32, 3), model="resnet20"):
    """A run directory as `bnn-nas train --model MODEL --family float` leaves it."""
    from bnn_nas.train.checkpoint import save_checkpoint
    from bnn_nas.train.final_network import build_final_network

    config = Config(device="cpu", model=ModelConfig(type=model, family="xnor",
                                                    options=dict(TWIN)))  # fmt: skip
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(dump_yaml(config_to_dict(config)))
    net = build_final_network(config, None, classes, image_shape[0])
    save_checkpoint(path / "checkpoint.pt", {"model": net.state_dict(), "epoch": 0})
    (path / "report.json").write_text(json.dumps({"image_shape": list(image_shape),
                                                  "num_classes": classes}))  # fmt: skip
    return path, net


def test_a_teacher_loads_frozen_and_one_that_does_not_fit_is_refused(tmp_path):
    path, net = _teacher_dir(tmp_path / "teacher")
    common = {"num_classes": 10, "image_shape": (32, 32, 3), "device": CPU, "bf16": True}
    for spec in (path, path / "checkpoint.pt"):
        teacher = load_teacher(DistillConfig(teacher=str(spec)), **common)
        assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
        x = torch.randn(2, 3, 32, 32)
        assert torch.equal(teacher(x), net.eval()(x))
    with pytest.raises(ConfigError, match="predicts 10 classes, the student's data has 7"):
        load_teacher(DistillConfig(teacher=str(path)), **{**common, "num_classes": 7})
    with pytest.raises(ConfigError, match=r"trained on 32x32x3 images.*64x64x3"):
        load_teacher(DistillConfig(teacher=str(path)), **{**common, "image_shape": (64, 64, 3)})
    with pytest.raises(ConfigError, match="no checkpoint there"):
        load_teacher(DistillConfig(teacher=str(tmp_path / "nowhere")), **common)


def test_an_imagenet_size_teacher_loads_with_its_imagenet_layout(tmp_path):
    """resnet18 trained at >= 128 px has the ImageNet stem and avgpool_conv shortcuts: the
    teacher is rebuilt at the student's image size, so its checkpoint fits."""
    path, net = _teacher_dir(tmp_path / "teacher", image_shape=(128, 128, 3), model="resnet18")
    teacher = load_teacher(DistillConfig(teacher=str(path)), num_classes=10,
                           image_shape=(128, 128, 3), device=CPU, bf16=False)  # fmt: skip
    x = torch.randn(1, 3, 128, 128)
    assert torch.equal(teacher(x), net.eval()(x))


def test_the_cli_refuses_a_teacher_with_other_classes_in_one_line(tmp_path):
    teacher, _ = _teacher_dir(tmp_path / "teacher", classes=5)
    data = make_image_folder(tmp_path / "images", train_per_class=2, test_per_class=1)
    config = write_config(tmp_path / "c.yaml", (
        f"device: cpu\ndata: {{name: image_folder, root: {data}}}\n"
        f"final: {{epochs: 1, batch_size: 10, distill: {{teacher: {teacher}}}}}\n"
    ))  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "bnn_nas.cli", "train", "--config", str(config), "--model",
         "resnet20", "--run-dir", str(tmp_path / "run")], capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "predicts 5 classes, the student's data has 10" in lines[0]


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "final, message",
    [
        ({"epochs": 5, "stages": [{"epochs": 2}, {"epochs": 2}]}, "set final.epochs=4"),
        ({"epochs": 2, "stages": [{"epochs": 2, "weight": "sgn"}]}, "stages\\[0\\].weight"),
        ({"distill": {"teacher": "t", "loss": "mse"}}, "distill.loss is 'mse'"),
        ({"distill": {"loss": "kl"}}, "distill.teacher is empty"),
        ({"distill": {"teacher": "t", "loss": "ce_kl", "weight": 1.5}}, "in \\[0, 1\\]"),
        ({"bn_weight_decay": -1.0}, "bn_weight_decay=-1 must be >= 0"),
        # the saved network is rebuilt with its own binarizers: the last stage must use them
        ({"epochs": 2, "stages": [{"epochs": 1, "weight": "identity"},
                                  {"epochs": 1, "weight": "sign"}]},
         r"stages\[1\]\.weight: the last stage trains the network with its own binarizers"),
        ({"epochs": 2, "stages": [{"epochs": 2, "act": "rsign"}]}, r"stages\[0\]\.act: the last"),
        ({"epochs": 2, "stages": [{"epochs": 1, "binary_weight_decay": -1.0}, {"epochs": 1}]},
         r"final.stages\[0\].binary_weight_decay=-1 must be >= 0"),
        ({"epochs": 2, "stages": [{"epochs": 1}, {"epochs": 1, "bn_weight_decay": -0.5}]},
         r"final.stages\[1\].bn_weight_decay=-0.5 must be >= 0"),
        # torch's (and TensorLrSGD's) Nesterov needs momentum: one line, not a ValueError
        ({"optimizer": "sgd", "momentum": 0.0}, "set final.nesterov=false for plain SGD"),
        ({"epochs": 2, "momentum": 0.0, "stages": [{"epochs": 1}, {"epochs": 1,
                                                                  "optimizer": "sgd"}]},
         "final.momentum=0 with final.nesterov=true"),
    ],
)
def test_recipe_settings_are_checked_up_front(final, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"final": final}, "c.yaml")


def test_plain_sgd_without_momentum_trains():
    config = config_from_dict({"final": {"optimizer": "sgd", "momentum": 0.0,
                                         "nesterov": False}}, "c.yaml")  # fmt: skip
    assert config_from_dict({"final": {"momentum": 0.0}}, "c.yaml").final.momentum == 0  # adam
    net = nn.Linear(3, 2)
    build_optimizer(net, config.final).step()


def test_stages_belong_to_final_training():
    with pytest.raises(ConfigError, match="final training only"):
        config_from_dict({"train": {"epochs": 1, "stages": [{"epochs": 1}]}}, "c.yaml")


# --- SGD and weight decay groups -----------------------------------------------------


@pytest.mark.parametrize("nesterov", [True, False])
def test_tensor_lr_sgd_is_torch_sgd(nesterov):
    """float64, weight decay, momentum, a learning rate changed between steps."""
    torch.manual_seed(0)
    A, b = torch.randn(16, 6, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    results = []
    for ours in (True, False):
        w = torch.zeros(6, dtype=torch.float64, requires_grad=True)
        cls = TensorLrSGD if ours else torch.optim.SGD
        opt = cls([w], lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=5e-4)
        for i in range(12):
            lr = 0.1 * (1 - i / 12)
            if ours:
                opt.param_groups[0]["lr"].fill_(lr)
            else:
                opt.param_groups[0]["lr"] = lr
            opt.zero_grad()
            ((A @ w - b) ** 2).mean().backward()
            opt.step()
        results.append(w.detach())
    assert torch.allclose(results[0], results[1], rtol=0, atol=1e-14)
    assert results[0].abs().max() > 0.05


def test_sgd_state_round_trips_into_the_held_lr_tensor():
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, TrainConfig(optimizer="sgd", lr=0.1))
    assert isinstance(opt, TensorLrSGD)
    held = opt.param_groups[0]["lr"]
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    saved = copy.deepcopy(opt.state_dict())  # a checkpoint's copy
    held.fill_(0.5)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["lr"] is held and float(held) == pytest.approx(0.1)


def test_weight_decay_per_parameter_group():
    net = build_baseline("resnet20", "bireal", 10)
    binary = {id(m.weight) for m in net.modules() if isinstance(m, BinaryConv2d)}
    bn = {id(p) for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    groups = parameter_groups(net, 5e-4, False, binary_weight_decay=1e-5, bn_weight_decay=0.0)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in groups}
    assert by_decay[1e-5] == binary
    assert bn <= by_decay[0.0] and id(net.classifier.bias) in by_decay[0.0]
    assert id(net.stem[0].weight) in by_decay[5e-4] and id(net.classifier.weight) in by_decay[5e-4]
    assert sum(len(s) for s in by_decay.values()) == len(list(net.parameters()))
    (one,) = parameter_groups(net, 5e-4, True)  # decay on everything: one group
    assert len(one["params"]) == len(list(net.parameters()))
    opt = build_optimizer(net, TrainConfig(optimizer="sgd", weight_decay=5e-4,
                                           binary_weight_decay=1e-5))  # fmt: skip
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 1e-5, 5e-4]


# --- staged training ------------------------------------------------------------------


def _tiny_cells():
    import random

    from bnn_nas.space.network import CellNetwork
    from tests.fixtures import tiny_space

    space = tiny_space()
    torch.manual_seed(0)
    return CellNetwork(space.random_sample(random.Random(1)), space, 10)


def test_two_stages_switch_binarizers_at_the_boundary_and_carry_the_latent_weights(
    monkeypatch,
):
    """Stage 1: binary activations, float weights (identity); stage 2: both binary (the
    network's own xnor weights: sign(W) times a per-channel scale)."""
    from bnn_nas.config import StageConfig
    from bnn_nas.data import load_cifar10_sample
    from bnn_nas.train import stages as stages_module

    data = load_cifar10_sample()
    small = data.train.subset(range(96))
    net = _tiny_cells()
    final = TrainConfig(epochs=3, batch_size=32, lr=0.01, stages=(
        StageConfig(epochs=1, weight="identity"), StageConfig(epochs=2, optimizer="sgd", lr=0.05),
    ))  # fmt: skip
    records = []
    real_fit = stages_module.fit

    def spy(model, *args, **kwargs):
        params = dict(model.named_parameters())
        record = {"weights": [], "acts": [], "ids": {n: id(p) for n, p in params.items()},
                  "start": {n: p.detach().clone() for n, p in params.items()}}  # fmt: skip
        hooks = []
        for m in model.modules():
            if isinstance(m, BinaryConv2d):
                hooks.append(m.weight_binarizer.register_forward_hook(
                    lambda mod, inp, out: record["weights"].append(
                        (inp[0].detach().clone(), out.detach().clone()))
                ))  # fmt: skip
                hooks.append(m.act.register_forward_hook(
                    lambda mod, inp, out: record["acts"].append(out.detach())
                ))  # fmt: skip
        history = real_fit(model, *args, **kwargs)
        for hook in hooks:
            hook.remove()
        record["end"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        records.append(record)
        return history

    monkeypatch.setattr(stages_module, "fit", spy)
    history = stages_module.fit_stages(net, small, final, device=CPU, seed=0,
                                       stats=small.channel_stats(), eval_set=data.test.subset(
                                           range(50)))  # fmt: skip
    assert [m.stage for m in history] == [0, 1, 1] and [m.epoch for m in history] == [0, 1, 2]
    first, second = records
    assert first["weights"] and second["weights"]
    for latent, used in first["weights"]:  # float weights: the latent ones themselves
        assert torch.equal(used, latent)
    assert not all(set(used.unique().tolist()) <= {-1.0, 1.0} for _, used in first["weights"])
    for latent, used in second["weights"]:  # +-alpha per output channel, sign of W
        scale = used.abs().flatten(1).amax(1)
        assert torch.equal(used.abs(), scale.view(-1, 1, 1, 1).expand_as(used))
        assert torch.equal(torch.sign(used), torch.where(latent >= 0, 1.0, -1.0))
    for record in records:  # activations are binary in both stages
        assert all(set(a.unique().tolist()) <= {-1.0, 1.0} for a in record["acts"])
    # the latent weights carry over: stage 2 starts where stage 1 ended, same tensors
    assert second["ids"] == first["ids"]
    for name, value in second["start"].items():
        assert torch.equal(value, first["end"][name]), name
    assert any(not torch.equal(second["end"][n], v) for n, v in second["start"].items())


GENOTYPE = SMALL_GENOTYPE


@pytest.mark.slow
def test_sigkill_in_stage_two_then_resume_ends_as_an_uninterrupted_run(tmp_path):
    """Two stages, distillation from a (float) teacher: killed in stage 2, resumed in
    stage 2, every epoch's figures equal the uninterrupted run's."""
    from bnn_nas.train.checkpoint import load_checkpoint

    teacher, _ = _teacher_dir(tmp_path / "teacher")
    data = make_image_folder(tmp_path / "images", train_per_class=24, test_per_class=4)
    config = write_config(tmp_path / "config.yaml", (
        f"seed: 3\ndevice: cpu\ndata: {{name: image_folder, root: {data}}}\n"
        "final:\n  epochs: 6\n  batch_size: 16\n  lr: 0.01\n  label_smoothing: 0.1\n"
        f"  distill: {{teacher: {teacher}, loss: ce_kl, temperature: 2.0, weight: 0.5}}\n"
        "  stages:\n  - {epochs: 2, weight: identity, weight_decay: 1.0e-4}\n"
        "  - {epochs: 4, optimizer: sgd, lr: 0.05, binary_weight_decay: 0.0}\n"
    ))  # fmt: skip

    def command(run_dir, *extra):
        return [sys.executable, "-m", "bnn_nas.cli", "train", "--config", str(config),
                "--genotype", GENOTYPE, "--run-dir", str(run_dir), *extra]  # fmt: skip

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(command(straight), check=True, env=env, capture_output=True)
    killed = tmp_path / "killed"
    kill_after_epochs(command(killed), killed, 3, env)
    done_before = len(metrics_rows(killed))
    assert 3 <= done_before < 6, "the kill did not land in stage 2"
    assert load_checkpoint(killed / "checkpoint.pt")["stage"] == 1
    result = subprocess.run(command(killed, "--resume"), env=env, capture_output=True,
                            text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    a, b = metrics_rows(straight), metrics_rows(killed)
    assert [r["stage"] for r in a] == ["0", "0", "1", "1", "1", "1"]
    assert len(a) == len(b) == 6
    for row_a, row_b in zip(a, b, strict=True):
        for key in ("epoch", "stage", "lr", "train_loss", "train_acc", "eval_loss", "eval_acc"):
            if row_a[key]:
                assert float(row_a[key]) == pytest.approx(float(row_b[key]), rel=1e-5), key
    report = json.loads((killed / "report.json").read_text())
    assert report["stages"] == 2 and report["distill_teacher"] == str(teacher)
    assert report == {**json.loads((straight / "report.json").read_text()),
                      **{k: report[k] for k in ("train_seconds", "wall_seconds_this_session",
                                                "images_per_s")}}  # fmt: skip


@pytest.mark.slow
def test_the_float_twin_trained_by_the_cli_is_a_teacher(tmp_path):
    data = make_image_folder(tmp_path / "images", train_per_class=4, test_per_class=2)
    config = write_config(tmp_path / "c.yaml", (
        f"device: cpu\ndata: {{name: image_folder, root: {data}}}\n"
        "final: {epochs: 1, batch_size: 20}\nmodel: {family: bireal}\n"
    ))  # fmt: skip
    teacher = tmp_path / "teacher"

    def train(*extra):
        return subprocess.run([sys.executable, "-m", "bnn_nas.cli", "train", "--config",
                               str(config), *extra],
                              capture_output=True, text=True)  # fmt: skip

    made = train("--model", "resnet20", "--family", "float", "--run-dir", str(teacher))
    assert made.returncode == 0, made.stderr
    saved = config_from_dict(__import__("yaml").safe_load((teacher / "config.yaml").read_text()))
    assert saved.model.family == "bireal" and saved.model.options == TWIN
    assert json.loads((teacher / "report.json").read_text())["float_params"] > 0
    student = train("--model", "resnet20", "--family", "bireal", "--run-dir",
                    str(tmp_path / "student"), "--set",
                    f"final.distill={{teacher: {teacher}, loss: kl, temperature: 4}}")
    assert student.returncode == 0, student.stderr
    report = json.loads((tmp_path / "student" / "report.json").read_text())
    assert report["distill_teacher"] == str(teacher) and report["binary_params"] > 0
    refused = train("--genotype", GENOTYPE, "--family", "float", "--run-dir", str(tmp_path / "x"))
    assert refused.returncode == 2 and "--family float" in refused.stderr


def test_the_named_recipes_load_and_say_what_they_follow():
    from pathlib import Path

    from bnn_nas.config import load_config

    folder = Path(__file__).resolve().parent.parent / "configs" / "recipes"
    recipes = {p.stem: load_config(p) for p in folder.glob("*.yaml")}
    assert {"short", "literature", "two_stage", "teacher", "reactnet"} <= recipes.keys()
    for name in recipes:
        assert "et al." in (folder / f"{name}.yaml").read_text(), name  # the paper it follows
    literature = recipes["literature"].final
    assert literature.distill is not None and literature.distill.temperature == 4.0
    assert literature.cutout == 16 and not literature.stages
    assert literature.mix is not None and literature.mix.kind == "cutmix"
    two_stage = recipes["two_stage"].final
    assert two_stage.distill is not None and len(two_stage.stages) == 2
    assert two_stage.stages[0].weight == "identity" and two_stage.stages[1].weight is None
    assert recipes["short"].final.epochs == 143 and not recipes["short"].final.stages
    assert recipes["teacher"].final.optimizer == "sgd" and recipes["teacher"].final.nesterov


def test_a_search_trial_distills_when_train_distill_is_set(tmp_path, monkeypatch):
    """A search trial (the Evaluator) loads the teacher of train.distill and fit trains
    with it; fit itself does not read run directories (it refuses distill without a
    teacher in one line), and distillation stays off by default."""
    import random

    from bnn_nas.search.evaluator import Evaluator
    from bnn_nas.train import fit
    from bnn_nas.train import step as step_module
    from tests.fixtures import tiny_search_data, tiny_space

    teacher_dir, _ = _teacher_dir(tmp_path / "teacher")
    config = config_from_dict({"train": {"distill": {"teacher": str(teacher_dir)}}}, "c.yaml")
    assert config_from_dict({}, "c.yaml").train.distill is None  # off by default
    teachers = []
    original = step_module.make_step

    def spy(*args, **kwargs):
        teachers.append(kwargs.get("teacher"))
        return original(*args, **kwargs)

    monkeypatch.setattr("bnn_nas.train.trainer.make_step", spy)
    data = tiny_search_data()
    small = data.train
    settings = replace(config.train, epochs=1, batch_size=20)
    with pytest.raises(ConfigError, match="no teacher was given"):
        fit(_tiny_cells(), small, settings, device=CPU, seed=0, stats=small.channel_stats())
    space = tiny_space()
    result = Evaluator(space, data, settings, CPU, seed=0)(space.random_sample(random.Random(1)))
    (teacher,) = teachers
    assert teacher is not None and not teacher.training
    assert math.isfinite(result.train_loss)


def test_a_stage_keeps_learnable_binarizers_and_every_parameter_tensor():
    """ReActNet's RSign thresholds live in the activation binarizer: a stage that changes
    only the weight binarizer keeps them (the same tensors), and a stage back to the
    network's own binarizers restores them."""
    from bnn_nas.train.stages import built_binarizers, with_binarizers

    net = build_baseline("resnet20", "bireal", 10, act="rsign", activation="rprelu")
    params = {n: id(p) for n, p in net.named_parameters()}
    assert any("act" in n for n in params)  # RSign's thresholds
    built = built_binarizers(net)
    with_binarizers(net, None, "identity", built)
    convs = [m for m in net.modules() if isinstance(m, BinaryConv2d)]
    assert {m.weight_binarizer.name for m in convs} == {"identity"}
    assert {m.act.name for m in convs} == {"rsign"}
    assert {n: id(p) for n, p in net.named_parameters()} == params
    with_binarizers(net, None, None, built)
    assert {m.weight_binarizer.name for m in net.modules() if isinstance(m, BinaryConv2d)} == {
        "bireal"
    }
    assert {n: id(p) for n, p in net.named_parameters()} == params


def test_two_stages_on_rsign_keep_the_learned_thresholds():
    """Stages 0 and 1 both naming ``act: rsign`` on a network built with another
    activation binarizer: stage 1 goes on with stage 0's RSign modules (the learned
    thresholds, the same tensors), not fresh ones at 0."""
    from bnn_nas.binary.quantizers import RSign
    from bnn_nas.train.stages import built_binarizers, with_binarizers

    net = build_baseline("resnet20", "bireal", 10)
    built = built_binarizers(net)
    with_binarizers(net, "rsign", "identity", built)
    thresholds = [m for m in net.modules() if isinstance(m, RSign)]
    assert thresholds
    with torch.no_grad():
        for m in thresholds:
            m.threshold.fill_(0.7)
    with_binarizers(net, "rsign", None, built)
    after = [m for m in net.modules() if isinstance(m, RSign)]
    assert [id(m.threshold) for m in after] == [id(m.threshold) for m in thresholds]
    assert all(torch.all(m.threshold == 0.7) for m in after)
    convs = [m for m in net.modules() if isinstance(m, BinaryConv2d)]
    assert {m.weight_binarizer.name for m in convs} == {"bireal"}


SEARCH = """\
seed: 5
device: cpu
search_space:
  steps: 2
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3]
  network: {{cells: 3, channels: 4, stem_multiplier: 2}}
data: {{name: cifar10_sample, valid_fraction: 0.2, search_train_size: 60, search_valid_size: 40}}
train: {{epochs: 1, batch_size: 30, lr: 0.005, distill: {{teacher: {teacher}}}}}
search: {{controller: random, budget: 3}}
"""


def test_a_search_with_a_teacher_that_does_not_fit_fails_in_one_line_and_makes_nothing(
    tmp_path,
):
    teacher, _ = _teacher_dir(tmp_path / "teacher", classes=5)
    config = tmp_path / "search.yaml"
    config.write_text(SEARCH.format(teacher=teacher))
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "bnn_nas.cli", "search", "--config",
                           str(config), "--run-dir", str(run)], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "predicts 5 classes, the student's data has 10" in lines[0]
    assert not run.exists()


def test_a_search_loads_its_teacher_once_for_all_trials(tmp_path, monkeypatch):
    """open_search checks the teacher (before the run directory is made); every trial, on
    the evaluator and on its twins of other devices, reuses that one load."""
    import random

    from bnn_nas.config import load_config
    from bnn_nas.search import evaluator as evaluator_module
    from bnn_nas.search.engine import open_search

    teacher, _ = _teacher_dir(tmp_path / "teacher")
    config_file = tmp_path / "search.yaml"
    config_file.write_text(SEARCH.format(teacher=teacher))
    loads = []
    real = evaluator_module.teacher_for

    def counted(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluator_module, "teacher_for", counted)
    run, evaluator = open_search(load_config(config_file), tmp_path / "run", resume=False)
    assert len(loads) == 1
    twin = evaluator.on_device("cpu:0")
    assert twin is not evaluator and twin.teachers is evaluator.teachers
    rng = random.Random(0)
    for scorer in (evaluator, twin, evaluator):
        result = scorer(run.space.random_sample(rng))
        assert math.isfinite(result.train_loss)
    assert len(loads) == 1
    assert evaluator.teachers.on(torch.device("cpu")) is twin.teachers.on(torch.device("cpu:0"))
    run.store.close()


@pytest.mark.parametrize("stage", [-1, 2, "1", True])
def test_a_checkpoint_of_a_stage_the_config_lacks_is_refused_in_one_line(tmp_path, stage):
    """A negative stage would skip to the last stage (stages[-1:]); it, one past the end
    and a non-integer are a CheckpointError before any training."""
    from bnn_nas.config import StageConfig
    from bnn_nas.data import load_cifar10_sample
    from bnn_nas.errors import CheckpointError
    from bnn_nas.train.checkpoint import save_checkpoint
    from bnn_nas.train.stages import fit_stages

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"model": {}, "epoch": 0, "stage": stage})
    final = TrainConfig(epochs=2, batch_size=32, stages=(StageConfig(epochs=1),
                                                         StageConfig(epochs=1)))  # fmt: skip
    small = load_cifar10_sample().train.subset(range(32))
    with pytest.raises(CheckpointError, match=r"is of stage .* but the config has 2 stage\(s\)"):
        fit_stages(_tiny_cells(), small, final, checkpoint=path, resume=True, device=CPU,
                   seed=0, stats=small.channel_stats())  # fmt: skip


def test_a_staged_resume_reads_the_checkpoint_once(tmp_path, monkeypatch):
    """fit_stages reads the checkpoint (its stage) and hands that state to the resumed
    stage's fit, which does not read and hash the file again."""
    from bnn_nas.config import StageConfig
    from bnn_nas.data import load_cifar10_sample
    from bnn_nas.train import callbacks as callbacks_module
    from bnn_nas.train import checkpoint as checkpoint_module
    from bnn_nas.train import stages as stages_module

    final = TrainConfig(epochs=2, batch_size=32, stages=(StageConfig(epochs=1),
                                                         StageConfig(epochs=1)))  # fmt: skip
    small = load_cifar10_sample().train.subset(range(32))
    path = tmp_path / "checkpoint.pt"
    common = {"device": CPU, "seed": 0, "stats": small.channel_stats()}
    torch.manual_seed(0)
    done = stages_module.fit_stages(_tiny_cells(), small, final, checkpoint=path, **common)
    reads = []

    def counted(*args, **kwargs):
        reads.append(args[0])
        return checkpoint_module.load_checkpoint(*args, **kwargs)

    monkeypatch.setattr(stages_module, "load_checkpoint", counted)
    monkeypatch.setattr(callbacks_module, "load_checkpoint", counted)
    again = stages_module.fit_stages(_tiny_cells(), small, final, checkpoint=path, resume=True,
                                     **common)  # fmt: skip
    assert reads == [path]
    assert [m.to_dict() for m in again] == [m.to_dict() for m in done]
