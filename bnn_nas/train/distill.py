"""Knowledge distillation: a trained teacher's soft targets for the student's step.

The loss (distill_loss.py, re-exported here) follows Hinton et al. (2015, "Distilling the
Knowledge in a Neural Network"): ``KL(softmax(t / T) || softmax(s / T)) * T^2`` (the T^2
keeps gradient sizes comparable across temperatures), alone (``kl``: ReActNet's
distributional loss, Liu et al. 2020, at T = 1) or mixed with the labels' cross-entropy
(``ce_kl``). The teacher is a network trained by `bnn-nas train` (typically a float
twin: ``--family float``), rebuilt from the network its run directory records and loaded
with the checkpoint loader (a teacher given as a spec is trained there first:
teacher_spec.py); it runs in eval mode, in bf16 on CUDA, inside the student's (graphed)
step on the same augmented batch. The caller of the training loop loads it
(:func:`teacher_for`) and passes it in: the loop does not read run directories.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor, nn

from bnn_nas.config import DistillConfig, TeacherSpec, TrainConfig
from bnn_nas.data.arrays import ImageSet
from bnn_nas.errors import ConfigError
from bnn_nas.train.checkpoint import load_checkpoint
from bnn_nas.train.distill_loss import DistillLoss, kd_term
from bnn_nas.train.final_network import build_trained_network, run_architecture, saved_run_config
from bnn_nas.train.seeding import seeded_build

__all__ = [
    "DistillLoss", "kd_term", "load_teacher", "place_teacher", "teacher_for", "teacher_path",
]  # fmt: skip


def teacher_path(settings: DistillConfig) -> str:
    """Where the teacher of ``settings`` is read from: the path given, or a spec's
    ``run_dir`` (which :func:`bnn_nas.train.teacher_spec.ensure_teacher` fills first)."""
    teacher = settings.teacher
    return teacher.run_dir if isinstance(teacher, TeacherSpec) else teacher


def _teacher_files(spec: str) -> tuple[Path, Path]:
    """(run directory, checkpoint) of a teacher given as either."""
    path = Path(spec)
    if path.is_dir():
        run_dir, checkpoint = path, path / "checkpoint.pt"
    else:
        run_dir, checkpoint = path.parent, path
    if not checkpoint.is_file():
        raise ConfigError(
            f"distill.teacher {spec}: no checkpoint there; train a teacher first "
            "(bnn-nas train --model resnet18 --family float --run-dir DIR) and point at DIR"
        )
    if not (run_dir / "config.yaml").is_file():
        raise ConfigError(
            f"distill.teacher {spec}: {run_dir / 'config.yaml'} is missing; the teacher must "
            "be a run directory of `bnn-nas train` (its config rebuilds the network)"
        )
    return run_dir, checkpoint


def load_teacher(
    settings: DistillConfig,
    *,
    num_classes: int,
    image_shape: tuple[int, int, int],
    device: torch.device,
    bf16: bool,
) -> nn.Module:
    """The teacher of ``settings``, frozen, in eval mode on ``device`` (bf16 weights on
    CUDA when ``bf16``); refused in one line when its classes or image size differ from
    the student's data (``image_shape``: H, W, C)."""
    where = teacher_path(settings)
    run_dir, checkpoint = _teacher_files(where)
    config = saved_run_config(run_dir)
    assert config is not None  # _teacher_files checked the file
    report_file = run_dir / "report.json"
    if report_file.is_file():
        report = json.loads(report_file.read_text())
        shape = report.get("image_shape")
        if shape is not None and tuple(shape) != tuple(image_shape):
            raise ConfigError(
                f"distill.teacher {where} was trained on {_size(shape)} images, the "
                f"student's data has {_size(image_shape)}; train a teacher on this data"
            )
    state = load_checkpoint(checkpoint)["model"]
    classes = _classes_of(state)
    if classes is not None and classes != num_classes:
        raise ConfigError(
            f"distill.teacher {where} predicts {classes} classes, the student's "
            f"data has {num_classes}; train a teacher on this data"
        )
    # the network its run recorded (older runs: its config and genotype at the student's
    # image size, which report.json agreed with when there is one: a baseline trained at
    # >= 128 px has the ImageNet layout), built from its own seed. Its stages need nothing:
    # a config's last stage trains with the network's own binarizers (config.py refuses
    # one that sets act / weight), so the network built is the one trained
    architecture = run_architecture(
        run_dir, config, num_classes=num_classes, image_size=image_shape[0]
    )
    teacher = build_trained_network(architecture, config.seed)
    try:
        teacher.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"distill.teacher {where}: its checkpoint does not fit the network its "
            f"config describes ({first[:120]})"
        ) from None
    teacher.requires_grad_(False)
    teacher.eval()
    return place_teacher(teacher, device, bf16)


def place_teacher(teacher: nn.Module, device: torch.device, bf16: bool) -> nn.Module:
    """``teacher`` (frozen, as :func:`load_teacher` gives it) moved to ``device``: channels
    last there on CUDA, and in bf16 when ``bf16``; returns it. A copy of a teacher loaded
    once on the CPU goes to each device this way (a search's devices)."""
    teacher.to(device)
    if device.type == "cuda":
        teacher.to(memory_format=torch.channels_last)
        if bf16:
            teacher.to(torch.bfloat16)
        # ready before a trial on another CUDA stream of this device reads its weights
        torch.cuda.current_stream(device).synchronize()
    return teacher


def teacher_for(
    settings: TrainConfig, train_set: ImageSet, device: torch.device
) -> nn.Module | None:
    """The teacher a training with ``settings`` distils from (None without
    ``settings.distill``), fitted to ``train_set``: what a caller of
    :func:`bnn_nas.train.fit` passes as its ``teacher`` (a search trial does)."""
    if settings.distill is None:
        return None
    distill = settings.distill

    def load() -> nn.Module:
        return load_teacher(
            distill, num_classes=len(train_set.classes), image_shape=train_set.image_shape,
            device=device, bf16=settings.bf16,
        )  # fmt: skip

    return seeded_build(load)  # rebuilding the teacher seeds the global RNGs


def _classes_of(state: dict[str, Tensor]) -> int | None:
    """Classes of a network's state dict: rows of its classifier's weight."""
    weight = state.get("classifier.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


def _size(shape) -> str:
    h, w, c = shape
    return f"{h}x{w}x{c}"
