"""`bnn-nas train --tensorboard`: per-epoch scalars of a final training, read back with
tensorboard's own event reader; a resumed run's replayed epochs replace the old ones."""

from __future__ import annotations

import csv
import sys

import pytest
from click.testing import CliRunner

from bnn_nas.cli import main
from bnn_nas.config import config_from_dict
from bnn_nas.errors import ConfigError
from bnn_nas.train.metrics import EpochMetrics
from tests.conftest import SMALL_GENOTYPE
from tests.fixtures import make_image_folder

GENOTYPE = SMALL_GENOTYPE
CONFIG = """\
device: cpu
search_space:
  steps: 2
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3, bireal_conv_3x3_skip_connect]
  network: {cells: 3, channels: 4, stem_multiplier: 2}
data: {name: cifar10_sample}
final: {epochs: 2, batch_size: 500, eval_batch_size: 1000, lr: 0.005,
        stages: [{epochs: 1, weight: identity}, {epochs: 1}]}
"""
TAGS = {"train/loss", "train/acc", "eval/loss", "eval/acc", "lr", "stage"}


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}  # fmt: skip


def test_train_writes_per_epoch_scalars_that_tensorboard_reads_back(tmp_path):
    pytest.importorskip("tensorboard")
    # a small image folder, not the packaged sample: what is asserted is that the event
    # file holds each epoch's figures of metrics.csv, however many images made them
    images = make_image_folder(tmp_path / "images", train_per_class=4, test_per_class=2)
    config = tmp_path / "c.yaml"
    data = f"data: {{name: image_folder, root: {images}}}"
    config.write_text(
        CONFIG.replace("data: {name: cifar10_sample}", data)
        .replace("batch_size: 500, eval_batch_size: 1000", "batch_size: 20")
    )
    assert "image_folder" in config.read_text() and "batch_size: 20" in config.read_text()
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--genotype", GENOTYPE,
                                       "--run-dir", str(run), "--tensorboard"])  # fmt: skip
    assert result.exit_code == 0, result.output
    scalars = _scalars(run / "tensorboard")
    assert set(scalars) == TAGS
    assert all([step for step, _ in points] == [0, 1] for points in scalars.values())
    assert [value for _, value in scalars["stage"]] == [0, 1]
    with (run / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for tag, column in [("train/loss", "train_loss"), ("train/acc", "train_acc"),
                        ("eval/loss", "eval_loss"), ("eval/acc", "eval_acc"), ("lr", "lr")]:
        expected = [float(row[column]) for row in rows]
        assert [value for _, value in scalars[tag]] == pytest.approx(expected, rel=1e-6), tag


def _epoch(epoch, loss):
    return EpochMetrics(epoch=epoch, lr=0.1, train_loss=loss, train_acc=0.5, eval_loss=None,
                        eval_acc=None, seconds=1.0, images_per_s=1.0)  # fmt: skip


def test_a_resumed_run_replaces_the_epochs_it_trains_again(tmp_path):
    """Killed after epoch 2 with a checkpoint of epoch 0: the resumed run trains 1 and 2
    again; TensorBoard shows each epoch once, with the resumed run's values."""
    pytest.importorskip("tensorboard")
    from bnn_nas.train.tensorboard_log import TensorBoardCurves

    killed = TensorBoardCurves(tmp_path / "tb")
    for epoch in range(3):
        killed.add(_epoch(epoch, 1.0 + epoch))
    killed.close()
    resumed = TensorBoardCurves(tmp_path / "tb")
    for epoch in (1, 2, 3):
        resumed.add(_epoch(epoch, 10.0 + epoch))
    resumed.close()
    scalars = _scalars(tmp_path / "tb")
    assert set(scalars) == {"train/loss", "train/acc", "lr", "stage"}  # no eval this time
    assert scalars["train/loss"] == [(0, 1.0), (1, 11.0), (2, 12.0), (3, 13.0)]


def test_without_the_package_it_is_one_line_and_leaves_no_run_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--genotype", GENOTYPE,
                                       "--run-dir", str(run), "--tensorboard"])  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "pip install 'bnn-nas[tensorboard]'" in line and not run.exists()


def test_tensorboard_is_a_setting_of_final_training_and_of_search_trials():
    # final: `bnn-nas train --tensorboard`; train: `bnn-nas search --tensorboard`
    # (per trial, tests/test_curves.py)
    assert config_from_dict({"final": {"tensorboard": True}}, "c.yaml").final.tensorboard
    assert config_from_dict({"train": {"tensorboard": True}}, "c.yaml").train.tensorboard
    with pytest.raises(ConfigError, match="tensorboard"):
        config_from_dict({"train": {"tensorboard": "often"}}, "c.yaml")


def test_the_interrupt_hint_keeps_the_flag(tmp_path, monkeypatch):
    from bnn_nas.rundir import _write_marker

    def stop(*args, **kwargs):  # stopped once the run directory exists: a --resume hint
        (tmp_path / "r").mkdir()
        _write_marker(tmp_path / "r", "train")
        raise KeyboardInterrupt

    monkeypatch.setattr("bnn_nas.train.run.train_run", stop)
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    args = ["train", "--config", str(config), "--genotype", GENOTYPE,
            "--run-dir", str(tmp_path / "r"), "--tensorboard"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, result.output
    (hint,) = [line for line in result.stderr.splitlines() if "--resume" in line]
    assert hint.rstrip().endswith("--resume --tensorboard")
