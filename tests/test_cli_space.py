"""`bnn-nas show` and `bnn-nas profile`: output, drawings and one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bnn_nas.cli import main

SMALL = (
    "Genotype(normal=[('xnor_conv_3x3', 0), ('skip_connect', 1)], normal_concat=[2], "
    "reduce=[('max_pool_3x3', 0), ('xnor_resnet_block', 1)], reduce_concat=[2])"
)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bnn_nas.cli", *args], capture_output=True, text=True, check=False
    )


def test_show_prints_text_hash_and_writes_dot(tmp_path):
    out = tmp_path / "cell.dot"
    result = CliRunner().invoke(main, ["show", SMALL, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert SMALL in result.output and "hash: " in result.output
    text = out.read_text()
    assert "xnor_resnet_block" in text and "digraph" in text


def test_show_draws_with_matplotlib_without_graphviz_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = CliRunner().invoke(main, ["show", SMALL, "-o", str(tmp_path / "cell.png")])
    assert result.exit_code == 0, result.output
    assert "graphviz `dot` is not installed: drew" in result.output
    assert (tmp_path / "cell.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "cell.dot").exists()


def test_show_refuses_a_drawing_format_it_cannot_write_before_printing(tmp_path):
    result = CliRunner().invoke(main, ["show", SMALL, "-o", str(tmp_path / "cell.jpg")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "bnn-nas: error: cannot draw a genotype to 'cell.jpg'; use a .dot, .gv, .png, .svg or "
        ".pdf file"
    )
    assert list(tmp_path.iterdir()) == []


def test_show_of_an_unknown_op_prints_it_and_says_why_the_cost_is_not_counted():
    typo = SMALL.replace("xnor_resnet_block", "xnor_resnet_blok")
    result = CliRunner().invoke(main, ["show", typo])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == (
        "cost: not counted (reduce cell, step 0, edge 1 ('xnor_resnet_blok', 1): unknown op "
        "'xnor_resnet_blok' (did you mean 'xnor_resnet_block' or 'bireal_resnet_block' or "
        "'xnor_vgg_block'?); see "
        "`bnn-nas primitives`)"
    )


def test_show_of_a_cost_error_without_a_message_names_its_class(monkeypatch):
    # show cut the reason as str(err).splitlines()[0]: an empty message was an IndexError
    # (exit 1, "unexpected"); BnnNasError.line() names the class then
    from bnn_nas import cost
    from bnn_nas.errors import PrimitiveError

    def refuse(*args, **kwargs):
        raise PrimitiveError()

    monkeypatch.setattr(cost, "count_cost", refuse)
    result = CliRunner().invoke(main, ["show", SMALL])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "cost: not counted (PrimitiveError)"


def test_profile_genotype_and_baseline():
    result = CliRunner().invoke(main, ["profile", SMALL])
    assert result.exit_code == 0, result.output
    assert "total: BOPs" in result.output and "OPs" in result.output
    result = CliRunner().invoke(main, ["profile", "--model", "resnet20", "--family", "bireal"])
    assert result.exit_code == 0, result.output
    assert "classifier" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["show", "Genotype(normal=[('xnor_conv_3x3', 0)"], "genotype text is not valid"),
        (
            ["profile", SMALL.replace("'skip_connect', 1", "'skip_conect', 1")],
            "normal cell, step 0, edge 1 ('skip_conect', 1): unknown op",
        ),
        (
            ["show", SMALL.replace("'skip_connect', 1", "'skip_connect', 3")],
            "normal cell, step 0, edge 1 ('skip_connect', 3): input 3 is not an earlier node",
        ),
        (["show", "missing_genotype.yaml"], "no such file"),
        (["profile", "--model", "resnet18", "--config", "nope.yaml"], "config file nope.yaml"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, expected):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_show_checks_against_the_config_search_space(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("search_space: {steps: 1, ops: [skip_connect, max_pool_3x3]}\n")
    proc = run_cli("show", SMALL, "--config", str(config))
    assert proc.returncode == 2
    assert "unknown op 'xnor_conv_3x3'" in proc.stderr


def invoke(*args: str) -> list[str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def total_ops(lines: list[str]) -> str:
    return lines[-1].split("OPs ")[3].split()[0]  # "total: BOPs x  FLOPs y  OPs z ..."


def test_profile_names_its_layout_without_and_with_a_config(tmp_path):
    lines = invoke("profile", SMALL)
    assert lines[0].startswith("layout: 8 cells x 16 channels (reductions at 2, 5), 32 px, ")
    assert "the defaults: search space bnn_darts; --config or --run-dir" in lines[0]
    header = lines[1].split()
    assert header[3:] == ["BOPs", "FLOPs", "OPs", "params", "bytes"]

    config = tmp_path / "c.yaml"
    config.write_text("search_space: tiny\nmodel: {cells: 5, channels: 12}\n")
    final = invoke("profile", SMALL, "--config", str(config))
    assert final[0].startswith("layout: 5 cells x 12 channels (reductions at 1, 3)")
    assert f"({config}, as `bnn-nas train` builds it; the search's trials: 3 x 8, " in final[0]
    search = invoke("profile", SMALL, "--config", str(config), "--layout", "search")
    assert search[0].startswith("layout: 3 cells x 8 channels")
    assert f"({config}, as the search's trials build it)" in search[0]
    # the search's OPs are those of the network its trials train
    from bnn_nas.cost import count_cost
    from bnn_nas.space.genotype import parse_genotype
    from bnn_nas.space.network import CellNetwork
    from bnn_nas.space.search_space import load_search_space
    from bnn_nas.units import count

    trial_net = CellNetwork(parse_genotype(SMALL), load_search_space("tiny"), 10)
    assert total_ops(search) == count(count_cost(trial_net).ops)
    assert total_ops(search) != total_ops(final) != total_ops(invoke("profile", SMALL))
    sized = invoke("profile", SMALL, "--config", str(config), "--channels", "4")
    assert sized[0].startswith("layout: 5 cells x 4 channels") and "--cells/--channels" in sized[0]


def test_profile_and_show_read_a_run_directory(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("search_space: tiny\n")
    (run / "genotype.yaml").write_text(f'genotype: "{SMALL}"\n')
    lines = invoke("profile", "--run-dir", str(run))
    assert lines[0].startswith("layout: 3 cells x 8 channels") and str(run) in lines[0]
    shown = invoke("show", "--run-dir", str(run))
    assert shown[0] == SMALL
    assert shown[4].startswith("layout: 3 cells x 8 channels")
    assert shown[5].startswith("cost: BOPs") and total_ops(lines) in shown[5]
    baseline = tmp_path / "r20"
    baseline.mkdir()
    (baseline / "config.yaml").write_text("model: {type: resnet20, family: bireal}\n")
    lines = invoke("profile", "--run-dir", str(baseline))
    assert lines[0].startswith("network: resnet20 (bireal), 32 px, 10 classes (model of ")
    assert lines[-1] == invoke("profile", "--model", "resnet20", "--family", "bireal")[-1]


def test_profile_and_show_build_the_network_a_run_recorded(tmp_path):
    """A training run's RUN/network.yaml (what `bnn-nas train` built, what export reads)
    is the network profile and show count, not one rebuilt from its config.yaml (here
    edited since: it says the search space's own 3 x 8); a run without it: the config."""
    from bnn_nas.config import ModelConfig
    from bnn_nas.cost import count_cost
    from bnn_nas.space.architecture import Architecture
    from bnn_nas.space.genotype import parse_genotype
    from bnn_nas.space.search_space import load_search_space
    from bnn_nas.train.final_network import NETWORK, network_text
    from bnn_nas.units import count

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("search_space: tiny\n")
    (run / "genotype.yaml").write_text(f'genotype: "{SMALL}"\n')
    recorded = Architecture(ModelConfig(cells=5, channels=12), 7, load_search_space("tiny"),
                            parse_genotype(SMALL), 32)  # fmt: skip
    (run / NETWORK).write_text(network_text(recorded))
    lines = invoke("profile", "--run-dir", str(run))
    assert lines[0].startswith("layout: 5 cells x 12 channels (reductions at 1, 3), 32 px, "
                               f"7 classes ({run / NETWORK}, as `bnn-nas train` builds it")
    assert total_ops(lines) == count(count_cost(recorded.build()).ops)
    shown = invoke("show", "--run-dir", str(run))
    assert shown[0] == SMALL and shown[4] == lines[0] and total_ops(lines) in shown[5]
    (run / NETWORK).unlink()  # a run from before the record: its config and genotype
    older = invoke("profile", "--run-dir", str(run))
    assert older[0].startswith("layout: 3 cells x 8 channels") and ", 10 classes (" in older[0]
    assert invoke("show", "--run-dir", str(run))[4] == older[0]


def test_a_run_whose_network_yaml_says_it_all_is_not_asked_its_report(tmp_path, monkeypatch):
    """run_input reads RUN/network.yaml first: report.json (read on every call before) is
    read only for what the flags and network.yaml leave open (an image size it lacks)."""
    import json

    from bnn_nas import rundir
    from bnn_nas.config import ModelConfig
    from bnn_nas.space.architecture import Architecture
    from bnn_nas.space.genotype import parse_genotype
    from bnn_nas.space.search_space import load_search_space
    from bnn_nas.train.final_network import NETWORK, network_text

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("search_space: tiny\n")
    (run / "report.json").write_text(json.dumps({"image_shape": [48, 48, 3], "num_classes": 5}))
    space, genotype = load_search_space("tiny"), parse_genotype(SMALL)
    (run / NETWORK).write_text(network_text(
        Architecture(ModelConfig(cells=3, channels=8), 7, space, genotype, 40)))  # fmt: skip
    reads = []
    real = rundir.report_input
    monkeypatch.setattr(rundir, "report_input", lambda d: reads.append(d) or real(d))
    for command in ("profile", "show"):
        lines = invoke(command, "--run-dir", str(run))
        assert any(", 40 px, 7 classes (" in line for line in lines)
    assert reads == []  # network.yaml held both figures
    (run / NETWORK).write_text(network_text(
        Architecture(ModelConfig(cells=3, channels=8), 7, space, genotype, None)))  # fmt: skip
    assert ", 48 px, 7 classes (" in invoke("profile", "--run-dir", str(run))[0]
    assert reads == [str(run)]  # no image size recorded: report.json's, its classes not


def test_profile_and_show_take_image_size_and_classes_from_the_run_report(tmp_path):
    """A training run's report.json records its images' shape and class count: an ImageNet
    run is profiled at its size (it was profiled at 32 px, 10 classes: another layout, or
    a refusal for an ImageNet stem); the flags still override."""
    import json

    baseline = tmp_path / "r18"
    baseline.mkdir()
    (baseline / "config.yaml").write_text("model: {type: resnet18, family: bireal}\n")
    report = {"image_shape": [224, 224, 3], "num_classes": 1000}
    (baseline / "report.json").write_text(json.dumps(report))
    lines = invoke("profile", "--run-dir", str(baseline))
    assert lines[0].startswith("network: resnet18 (bireal), 224 px, 1000 classes (model of ")
    wanted = ("profile", "--model", "resnet18", "--family", "bireal")
    assert lines[-1] == invoke(*wanted, "--image-size", "224", "--classes", "1000")[-1]
    given = invoke("profile", "--run-dir", str(baseline), "--image-size", "32", "--classes", "7")
    assert given[0].startswith("network: resnet18 (bireal), 32 px, 7 classes")

    cells = tmp_path / "cells"
    cells.mkdir()
    (cells / "config.yaml").write_text(
        "search_space:\n  ops: [xnor_conv_3x3, skip_connect, max_pool_3x3, xnor_resnet_block]\n"
        "  network: {cells: 3, channels: 8, stem: imagenet}\n"
    )
    (cells / "genotype.yaml").write_text(f'genotype: "{SMALL}"\n')
    (cells / "report.json").write_text(json.dumps({"image_shape": [160, 160, 3], "num_classes": 5}))
    lines = invoke("profile", "--run-dir", str(cells))
    assert lines[0].startswith("layout: 3 cells x 8 channels")
    assert ", 160 px, 5 classes (" in lines[0]
    shown = invoke("show", "--run-dir", str(cells))
    assert ", 160 px, 5 classes (" in shown[4] and shown[5].startswith("cost: BOPs")
    assert total_ops(lines) in shown[5]
    # a report without these keys (older runs) or none at all: the defaults, as before
    (cells / "report.json").write_text(json.dumps({"test_accuracy": 0.5}))
    result = CliRunner().invoke(main, ["profile", "--run-dir", str(cells)])
    assert result.exit_code == 2 and "stem imagenet is made for ImageNet-size" in result.output
    result = CliRunner().invoke(main, ["profile", "--run-dir", str(baseline), "--classes", "0"])
    assert result.exit_code == 2 and "--classes must be a positive integer" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["profile", SMALL, "--run-dir", "."], "--run-dir . has no config.yaml"),
        (["show", SMALL, "--run-dir", "nowhere"], "--run-dir nowhere is not a directory"),
        (["profile", SMALL, "--run-dir", ".", "--config", "c.yaml"], "not both"),
        (["show", "--run-dir", "."], "has no config.yaml"),
    ],
)
def test_layout_source_errors_are_one_line(args, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert expected in result.output and len(result.output.strip().splitlines()) == 1
