"""The network of a run directory: one description (``space.architecture.Architecture``)
that `bnn-nas train` builds from and records in RUN/network.yaml, and that export and a
distillation's teacher read back; run directories written before the record existed
(docs/results, config.yaml + genotype.yaml + report.json) rebuild the same network."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

from bnn_nas.config import DistillConfig, load_config
from bnn_nas.errors import CheckpointError
from bnn_nas.export import export_run, load_packed, pack_model
from bnn_nas.rundir import report_input
from bnn_nas.space.architecture import Architecture
from bnn_nas.space.genotype import load_genotype
from bnn_nas.space.network import build_model
from bnn_nas.space.search_space import load_search_space
from bnn_nas.train.checkpoint import load_checkpoint, save_checkpoint
from bnn_nas.train.distill import load_teacher
from bnn_nas.train.final_network import (
    NETWORK,
    build_final_network,
    recorded_architecture,
    run_architecture,
)
from bnn_nas.train.run import train_run
from tests.test_export_cli import run  # noqa: F401  (a `bnn-nas train` run directory)

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
OLD_RUNS = ["final-searched", "final-r18-xnor", "recipe-r18/teacher", "recipe-r18/lit-bireal"]
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def old_run(name: str, tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A copy of a docs/results run directory with a checkpoint of the network that
    bnn-nas built for it before RUN/network.yaml existed (build_model from its config,
    genotype and report), and that network."""
    run_dir = tmp_path / "run"
    shutil.copytree(RESULTS / name, run_dir, ignore=shutil.ignore_patterns("*.csv", "*.log"))
    assert not (run_dir / NETWORK).exists()
    config = load_config(run_dir / "config.yaml")
    genotype_file = run_dir / "genotype.yaml"
    genotype = load_genotype(str(genotype_file)) if genotype_file.is_file() else None
    shape, _ = report_input(run_dir)
    torch.manual_seed(3)
    net = build_model(config.model, load_search_space(config.search_space), 10, genotype,
                      image_size=None if shape is None else shape[0])  # fmt: skip
    save_checkpoint(run_dir / "checkpoint.pt", {"model": net.state_dict(), "epoch": 4})
    return run_dir, net.eval()


@pytest.mark.parametrize("name", OLD_RUNS)
def test_an_old_run_directory_exports_the_network_it_trained(name, tmp_path):
    run_dir, net = old_run(name, tmp_path)
    summary = export_run(run_dir, tmp_path / "model.bnn", mean=MEAN, std=STD)
    packed = load_packed(summary.path)
    x = torch.randn(2, 3, 32, 32)
    twin = copy.deepcopy(net)
    pack_model(twin)  # the network as the exporter rewrites it, in memory
    with torch.no_grad():  # the same network: equal up to float32 rounding of float convs
        assert torch.allclose(packed.logits(x), twin(x), rtol=1e-5, atol=1e-6)
    assert packed.architecture.genotype == (
        None if name.startswith(("final-r18", "recipe")) else load_genotype(
            str(run_dir / "genotype.yaml"))
    )  # fmt: skip


@pytest.mark.parametrize("name", ["recipe-r18/teacher", "final-searched"])
def test_an_old_run_directory_loads_as_a_teacher(name, tmp_path):
    run_dir, net = old_run(name, tmp_path)
    teacher = load_teacher(
        DistillConfig(teacher=str(run_dir)), num_classes=10, image_shape=(32, 32, 3),
        device=torch.device("cpu"), bf16=False,
    )  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(teacher(x), net(x))
    assert not teacher.training


def test_an_old_run_directory_describes_the_network_train_builds_now(tmp_path):
    """Without RUN/network.yaml the description comes from RUN/config.yaml and the run's
    genotype.yaml: it is the network bnn-nas built for that run (what ``old_run`` built with
    build_model, independently of Architecture): the checkpoint's weights load into it
    and compute the same logits, and `bnn-nas train` builds that network today."""
    run_dir, net = old_run("final-searched", tmp_path)
    config = load_config(run_dir / "config.yaml")
    genotype = load_genotype(str(run_dir / "genotype.yaml"))
    described = run_architecture(run_dir, config, num_classes=10, image_size=32)
    assert described.genotype == genotype  # read from the run directory
    assert described.model == config.model and described.num_classes == 10
    torch.manual_seed(0)
    built = described.build(training=True)
    assert built.training
    built.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt")["model"])  # strict
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(built.eval()(x), net(x))
    trained = build_final_network(config, genotype, 10, 32)  # seeds with config.seed
    assert {k: v.shape for k, v in trained.state_dict().items()} == {
        k: v.shape for k, v in built.state_dict().items()}


def test_train_records_the_network_it_built_and_export_reads_it(run, tmp_path):  # noqa: F811
    run_dir, _, _ = run
    config = load_config(run_dir / "config.yaml")
    genotype = load_genotype(str(run_dir / "genotype.yaml"))
    recorded = recorded_architecture(run_dir)
    assert recorded == Architecture.from_config(config, genotype, 10, 32)
    # without the record (an older run), the config and genotype describe the same network
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    (old / NETWORK).unlink()
    assert run_architecture(old, config, num_classes=10, image_size=32) == recorded
    summary = export_run(run_dir, tmp_path / "model.bnn")
    assert load_packed(summary.path, native=False).architecture == recorded
    state = load_checkpoint(run_dir / "checkpoint.pt")["model"]
    recorded.build().load_state_dict(state)  # the record builds the network trained


def test_profile_of_a_training_run_counts_the_network_it_recorded(run):  # noqa: F811
    from click.testing import CliRunner

    from bnn_nas.cli import main
    from bnn_nas.cost import count_cost
    from bnn_nas.units import count

    run_dir, _, _ = run
    recorded = recorded_architecture(run_dir)
    result = CliRunner().invoke(main, ["profile", "--run-dir", str(run_dir)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"{recorded.num_classes} classes ({run_dir / NETWORK}" in lines[0]
    size = recorded.image_size or 32
    ops = count_cost(recorded.build(), (1, 3, size, size)).ops
    assert lines[-1].split("OPs ")[3].split()[0] == count(ops)


def test_a_resumed_run_must_build_the_network_it_recorded(run, tmp_path):  # noqa: F811
    run_dir, _, report = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    text = (copy / NETWORK).read_text()
    (copy / NETWORK).write_text(text.replace("stem_multiplier: 2", "stem_multiplier: 3"))
    config = load_config(copy / "config.yaml")
    genotype = load_genotype(str(copy / "genotype.yaml"))
    with pytest.raises(CheckpointError, match="another network"):
        train_run(config, copy, genotype=genotype, resume=True, progress=False)
    assert json.loads((copy / "report.json").read_text()) == report


def test_how_a_plugin_was_given_does_not_refuse_a_resume(run, tmp_path):  # noqa: F811
    """network.yaml's plugins say how a plugin was given (`my_ops`, ./my_ops.py, another
    checkout's path), not what is built: a resume that gives it another way goes on."""
    run_dir, _, _ = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    text = (copy / NETWORK).read_text()
    (copy / NETWORK).write_text(text + "plugins: {xnor_conv_3x3: /elsewhere/my_ops.py}\n")
    config = load_config(copy / "config.yaml")
    genotype = load_genotype(str(copy / "genotype.yaml"))
    train_run(config, copy, genotype=genotype, resume=True, progress=False)
    assert (copy / NETWORK).read_text() == text  # the record is what this run builds


def test_a_files_plugin_record_is_shown_on_one_line_whatever_it_holds():
    """The plugin a .bnn or network.yaml names comes from the file: a newline or terminal
    escape in it must not break the one-line error or reach the terminal raw."""
    from bnn_nas.errors import PluginError

    data = {"model": {}, "num_classes": 10,
            "plugins": {"no_such_op\n": "/x/ops.py\n\x1b[31mred"}}  # fmt: skip
    with pytest.raises(PluginError) as err:
        Architecture.from_dict(data, "m.bnn")
    message = str(err.value)
    assert "\n" not in message and "\x1b" not in message and message.isprintable()
    assert "pass --plugin /x/ops.py\\n\\x1b[31mred" in message
