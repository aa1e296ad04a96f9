"""A full training run in a run directory: `bnn-nas train`.

The directory holds everything a person or a later session needs: the resolved config,
the genotype, the last checkpoint, ``metrics.csv`` (one row per epoch),
``report.json`` (test accuracy, cost, time, throughput, device, versions) and, with
``final.tensorboard``, TensorBoard event files in ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnn_nas import __version__
from bnn_nas.config import Config, check_batch_fits, check_cutout_fits, config_to_dict
from bnn_nas.cost import count_cost
from bnn_nas.data import data_settings, load_dataset
from bnn_nas.errors import CheckpointError, ConfigError
from bnn_nas.io import dump_yaml, write_text_atomic
from bnn_nas.rundir import (
    check_run_dir,
    creating,
    lock_run_dir,
    release_run_dir,
    remove_stale_parts,
    run_kind,
)
from bnn_nas.space.architecture import Architecture
from bnn_nas.space.genotype import Genotype
from bnn_nas.train.callbacks import Callback, MetricsCSV, ProgressBar, TensorBoard
from bnn_nas.train.checkpoint import check_training_checkpoint, check_weights_fit, load_checkpoint
from bnn_nas.train.distill import load_teacher, teacher_path
from bnn_nas.train.final_network import (
    NETWORK,
    REPORT,
    build_trained_network,
    network_text,
    saved_genotype,
    saved_run_config,
)
from bnn_nas.train.metrics import write_metrics_csv
from bnn_nas.train.settings_diff import changed_settings
from bnn_nas.train.stages import ending_network, fit_stages
from bnn_nas.train.step import precision_note, uses_bf16
from bnn_nas.train.teacher_spec import ensure_teacher
from bnn_nas.train.tensorboard_log import FOLDER as TENSORBOARD
from bnn_nas.train.tensorboard_log import TensorBoardCurves, summary_writer_class
from bnn_nas.train.trainer import resolve_device

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def _check_resume_matches(run_dir: Path, config: Config, genotype: Genotype | None) -> None:
    """A resumed run must go on as it began: a new schedule or network half-way through
    would give a result no config describes (and RUN/config.yaml would be rewritten)."""
    try:
        before = saved_run_config(run_dir)
    except ConfigError as err:
        raise CheckpointError(
            f"cannot resume {run_dir}: {err}; resume with the "
            "bnn-nas version that began the run or choose another --run-dir"
        ) from err
    if before is not None:
        changed = changed_settings(before, config)
        if changed:
            raise CheckpointError(
                f"{run_dir} was trained with other settings ({', '.join(changed)}); resume it "
                f"with its own config (--config {run_dir / 'config.yaml'}) or choose another "
                "--run-dir"
            )
    before_genotype = saved_genotype(run_dir)
    before_hash = before_genotype.hash if before_genotype is not None else None
    if before_hash != (genotype.hash if genotype is not None else None):

        def network(g: Genotype | None) -> str:
            return f"genotype {g}" if g is not None else "a baseline network (--model)"

        raise CheckpointError(
            f"{run_dir} was trained on {network(before_genotype)}, not on "
            f"{network(genotype)}; resume it with the same network or choose another --run-dir"
        )


def _built(text: str) -> Any:
    """What a network.yaml says is built: its record without ``plugins`` (which names how
    a plugin was given, `my_ops` or ./my_ops.py, not what it builds)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # unreadable: compared as text, so any change refuses the resume
    if isinstance(data, dict):
        data.pop("plugins", None)
    return data


def _check_same_network(run_dir: Path, text: str) -> None:
    """A resumed run builds the network it recorded (RUN/network.yaml; older runs recorded
    none): a search-space file edited since would train another network."""
    before = _read(run_dir / NETWORK)
    if before is not None and _built(before) != _built(text):
        raise CheckpointError(
            f"{run_dir} was trained on another network than its config builds now (its "
            f"search space changed since?); see {run_dir / NETWORK}, or choose another --run-dir"
        )


def train_run(
    config: Config,
    run_dir: Path,
    *,
    genotype: Genotype | None,
    resume: bool,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the configured network to the end in ``run_dir``; returns the report.
    ``say`` receives the line a person should see as training starts: the precision
    that runs."""
    run_dir = Path(run_dir)
    # as search's resume: `--resume` (the API's resume=True) of a folder with no training in
    # it is refused, not started fresh (a file: check_run_dir's own error below)
    if resume and not run_dir.is_file() and run_kind(run_dir) is None:
        raise ConfigError(f"no training to resume in {run_dir}; drop --resume to start one")
    # an existing folder that is not yet a run (empty, or the user's) is made one as a new run
    existed = check_run_dir(run_dir, "train", "train") and run_kind(run_dir) is not None
    if existed:
        lock_run_dir(run_dir)  # held until this training ends: one training per directory
        remove_stale_parts(run_dir)
    try:
        return _train_locked(config, run_dir, genotype=genotype, resume=resume,
                             progress=progress, existed=existed, say=say)  # fmt: skip
    finally:
        release_run_dir(run_dir)


def _train_locked(
    config: Config,
    run_dir: Path,
    *,
    genotype: Genotype | None,
    resume: bool,
    progress: bool,
    existed: bool,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.exists() and not checkpoint.is_file():
        raise CheckpointError(
            f"{checkpoint} is not a file; remove it, or choose another --run-dir"
        )
    if checkpoint.exists() and not resume:
        raise CheckpointError(
            f"{run_dir} already holds a training checkpoint; pass --resume to continue it "
            "or choose another --run-dir"
        )
    if resume and checkpoint.exists():
        _check_resume_matches(run_dir, config, genotype)
    if config.final.tensorboard:
        summary_writer_class()  # a missing package: one line, before any work
    device = resolve_device(config.device)
    dataset = load_dataset(data_settings(config.data))
    # the student's cheap checks first: a bad one fails before a teacher spec trains
    image_size = dataset.train.image_shape[0]
    architecture = Architecture.from_config(config, genotype, dataset.num_classes, image_size)
    check_batch_fits(config.final, len(dataset.train), "final")
    check_cutout_fits(config.final, dataset.train.image_shape, "final")
    teacher = None
    if config.final.distill is not None:  # before the student's weights: its errors first
        # a teacher given as a spec: trained (or resumed) to its end in its run_dir first
        ensure_teacher(config, "final", train_run, student_dir=run_dir, progress=progress,
                       say=say)  # fmt: skip
        teacher = load_teacher(
            config.final.distill, num_classes=dataset.num_classes,
            image_shape=dataset.train.image_shape, device=device, bf16=config.final.bf16,
        )  # fmt: skip
    model = build_trained_network(architecture, config.seed)
    # the cost of the network as it ends: with the last stage's binarizers
    cost = count_cost(ending_network(model, config.final), (1, *_chw(dataset.train.image_shape)))
    if resume and checkpoint.is_file():  # a checkpoint that cannot be resumed: nothing written
        state = load_checkpoint(checkpoint)
        check_training_checkpoint(state, checkpoint)
        check_weights_fit(model.state_dict(), state["model"], checkpoint)
        del state
    documents = {"config.yaml": dump_yaml(config_to_dict(config))}
    if genotype is not None:
        documents["genotype.yaml"] = dump_yaml({"genotype": str(genotype), "hash": genotype.hash})
    documents[NETWORK] = network_text(architecture)  # what export and a teacher rebuild
    if resume and checkpoint.is_file():
        _check_same_network(run_dir, documents[NETWORK])
    if existed:
        for name, text in documents.items():
            if _read(run_dir / name) != text:
                write_text_atomic(run_dir / name, text)
    prior = None  # what a folder that is not a run held already: kept as it was
    if not existed:  # born whole: a kill now leaves no directory or one that --resume continues
        prior = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else None
        with creating(run_dir, "train") as staging:
            for name, text in documents.items():
                write_text_atomic(staging / name, text)
    try:
        return _fit_and_report(config, run_dir, genotype, resume, progress, device, dataset,
                               model, cost, teacher, say)  # fmt: skip
    except BaseException:
        if not existed and not checkpoint.exists():  # failed before any result: leave nothing
            release_run_dir(run_dir)
            if prior is None:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                for name in {p.name for p in run_dir.iterdir()} - prior:
                    with contextlib.suppress(OSError):
                        (run_dir / name).unlink()
        raise


def _fit_and_report(
    config: Config,
    run_dir: Path,
    genotype: Genotype | None,
    resume: bool,
    progress: bool,
    device: torch.device,
    dataset: Any,
    model: nn.Module,
    cost: Any,
    teacher: nn.Module | None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    checkpoint = run_dir / CHECKPOINT
    history_file = run_dir / METRICS
    curves = TensorBoardCurves(run_dir / TENSORBOARD) if config.final.tensorboard else None
    callbacks: list[Callback] = [MetricsCSV(history_file)]
    if curves is not None:
        callbacks.append(TensorBoard(curves))
    if progress:
        callbacks.append(ProgressBar())

    def on_start() -> None:  # once a resumed checkpoint has loaded: errors before stay one line
        if say is not None:
            say(precision_note(device, config.final.bf16))

    tic = time.perf_counter()
    try:
        history = fit_stages(
            model,
            dataset.train,
            config.final,
            device=device,
            seed=config.seed,
            stats=dataset.train.channel_stats(),
            eval_set=dataset.test,
            checkpoint=checkpoint,
            resume=resume,
            on_start=on_start,
            callbacks=callbacks,
            teacher=teacher,
        )
    finally:
        if curves is not None:
            curves.close()
    write_metrics_csv(history_file, history)
    final = history[-1]
    report = {
        "model": "cells" if genotype is not None else config.model.type,
        "family": None if genotype is not None else config.model.family,
        "genotype": str(genotype) if genotype is not None else None,
        "dataset": dataset.name,
        "num_classes": dataset.num_classes,
        "image_shape": list(dataset.train.image_shape),
        "epochs": len(history),
        "stages": max(1, len(config.final.stages)),
        "distill_teacher": None if teacher is None else teacher_path(config.final.distill),
        "test_accuracy": final.eval_acc,
        "test_loss": final.eval_loss,
        "train_seconds": sum(m.seconds for m in history),
        "wall_seconds_this_session": time.perf_counter() - tic,
        "images_per_s": sum(m.images_per_s for m in history) / len(history),
        **{k: v for k, v in cost.to_dict().items() if k != "layers"},
        "device": device_name(device),
        "precision": "bf16 autocast" if uses_bf16(device, config.final.bf16) else "float32",
        "torch": torch.__version__,
        "bnn_nas": __version__,
        "seed": config.seed,
    }
    write_text_atomic(run_dir / REPORT, json.dumps(report, indent=2) + "\n")
    return report


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _chw(hwc: tuple[int, int, int]) -> tuple[int, int, int]:
    h, w, c = hwc
    return c, h, w
