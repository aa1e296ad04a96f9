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
