"""`bnn-nas train --resume` goes on only with the settings and network a run began with."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml
from click.testing import CliRunner

from bnn_nas.cli import main
from bnn_nas.config import config_to_dict, load_config
from bnn_nas.errors import CheckpointError, DataError
from bnn_nas.io import dump_yaml
from bnn_nas.space.genotype import parse_genotype
from bnn_nas.train.run import CHECKPOINT, train_run
from tests.fixtures import write_config

GENOTYPE = (
    "Genotype(normal=[('xnor_conv_3x3', 0), ('skip_connect', 1), ('max_pool_3x3', 0), "
    "('xnor_conv_3x3', 2)], normal_concat=[2, 3], reduce=[('max_pool_3x3', 0), "
    "('xnor_conv_3x3', 1), ('skip_connect', 2), ('xnor_conv_3x3', 1)], reduce_concat=[2, 3])"
)


@pytest.fixture
def interrupted_run(tmp_path):
    """A run directory as `bnn-nas train` leaves it when killed: its config, genotype and
    a checkpoint (whose content the guard never reads: it stops before any training)."""
    body = (
        "seed: 1\ndevice: cpu\ndata: {name: image_folder, root: /data/a}\n"
        "final: {epochs: 4, batch_size: 16, lr: 0.01, momentum_cycle: [0.85, 0.95]}\n"
    )
    config_file = write_config(tmp_path / "config.yaml", body)
    config = load_config(config_file)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(dump_yaml(config_to_dict(config)))
    (run_dir / "genotype.yaml").write_text(dump_yaml({"genotype": GENOTYPE}))
    (run_dir / CHECKPOINT).write_bytes(b"not read")
    return config_file, config, run_dir


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"final": {"lr": 0.004}}, "final.lr"),
        ({"final": {"momentum_cycle": None}}, "final.momentum_cycle"),
        ({"final": {"epochs": 8, "label_smoothing": 0.1}}, "final.epochs, final.label_smoothing"),
        ({"seed": 2}, "seed"),
        ({"model": {"channels": 32}}, "model.channels"),
    ],
)
def test_a_changed_setting_stops_the_resume_and_names_the_key(interrupted_run, change, named):
    _, config, run_dir = interrupted_run
    for section, value in change.items():
        new = replace(getattr(config, section), **value) if isinstance(value, dict) else value
        config = replace(config, **{section: new})
    expected = rf"other settings \({named}\); resume it with"
    with pytest.raises(CheckpointError, match=expected) as err:
        train_run(config, run_dir, genotype=parse_genotype(GENOTYPE), resume=True)
    assert "\n" not in str(err.value) and str(run_dir / "config.yaml") in str(err.value)
    assert (run_dir / CHECKPOINT).read_bytes() == b"not read"  # nothing lost or rewritten


def test_another_network_stops_the_resume(interrupted_run):
    _, config, run_dir = interrupted_run
    other = GENOTYPE.replace("('skip_connect', 1)", "('max_pool_3x3', 1)")
    with pytest.raises(CheckpointError, match=r"trained on genotype Genotype.*not on genotype"):
        train_run(config, run_dir, genotype=parse_genotype(other), resume=True)
    with pytest.raises(CheckpointError, match="not on a baseline network"):
        train_run(config, run_dir, genotype=None, resume=True)


def test_where_and_how_fast_may_change_and_the_cli_says_what_is_wrong(interrupted_run):
    config_file, config, run_dir = interrupted_run
    moved = replace(
        config,
        device="auto",
        data=replace(config.data, root="/data/b"),
        final=replace(config.final, checkpoint_every=5, cuda_graph=False, eval_batch_size=64),
    )
    # the guard lets these through: the run goes on to load its (moved) data, absent here
    with pytest.raises(DataError, match="image folder /data/b does not exist"):
        train_run(moved, run_dir, genotype=parse_genotype(GENOTYPE), resume=True)
    result = CliRunner().invoke(main, [
        "train", "--config", str(config_file), "--genotype", GENOTYPE, "--run-dir", str(run_dir),
        "--resume", "--set", "final.lr=0.004",
    ])  # fmt: skip
    assert result.exit_code == 2
    assert "other settings (final.lr)" in result.output


def test_a_run_saved_before_a_setting_existed_resumes_and_an_unreadable_config_stops(
    interrupted_run,
):
    _, config, run_dir = interrupted_run
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    del saved["final"]["bf16"]  # as if bf16 had come after the run began: its default holds
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(DataError):  # past the guard, to the (absent) data
        train_run(config, run_dir, genotype=parse_genotype(GENOTYPE), resume=True)
    saved["final"]["retired_setting"] = 1
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(CheckpointError, match=r"unknown key final\.retired_setting") as err:
        train_run(config, run_dir, genotype=parse_genotype(GENOTYPE), resume=True)
    assert "\n" not in str(err.value) and "resume with the bnn-nas version" in str(err.value)
