"""benchmarks.without_fused: the other benchmark runs with the fused path off, and only
while it runs."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.without_fused import run_without_fused
from bnn_nas.binary import fused

PROBE = """
import json, sys
import torch
from bnn_nas.binary import fused
with open(sys.argv[1], "w") as out:
    json.dump({"argv": sys.argv[1:], "applies": fused.applies(torch.zeros(2))}, out)
"""


def test_the_module_runs_with_its_arguments_and_the_fused_path_off(tmp_path, monkeypatch):
    (tmp_path / "probe_module.py").write_text(PROBE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fused, "applies", lambda x: True)  # as on a GPU machine
    report = tmp_path / "seen.json"
    run_without_fused(["probe_module", str(report), "--only", "x"])
    seen = json.loads(report.read_text())
    assert seen == {"argv": [str(report), "--only", "x"], "applies": False}
    assert fused.applies(torch.zeros(2)) is True  # restored after the run


def test_without_a_module_it_says_how_to_call_it():
    with pytest.raises(SystemExit, match="usage"):
        run_without_fused([])
