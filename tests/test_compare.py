"""`bnn-nas compare`: training runs side by side, from their report.json (and a search's
store for the searched network's GPU-minutes); the README's end-to-end table."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from bnn_nas import compare
from bnn_nas.cli import main
from tests.conftest import SMALL_GENOTYPE
from tests.fixtures import make_image_folder, write_config
from tests.test_api import ROOT
from tests.test_results_table import _run

RESULTS = ROOT / "docs" / "results"


def invoke(*args: str):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


def test_compare_two_run_dirs_as_markdown_csv_and_json(tmp_path):
    bireal = _run(tmp_path, "bireal", 0.8935, 300)
    xnor = _run(tmp_path, "xnor", 0.8725, 240, family="xnor", ops=1.03e7)
    result = invoke(bireal, xnor)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == ("| network | epochs | test acc | OPs | params (binary / float) | bytes "
                        "| GPU-min |")
    assert lines[2] == "| resnet18 bireal | 143 | 89.35% | 16.6M | 11.0M / 192k | 2.14 MB | 5.0 |"
    assert lines[3] == "| resnet18 xnor | 143 | 87.25% | 10.3M | 11.0M / 192k | 2.14 MB | 4.0 |"
    assert len(lines) == 4
    assert result.output.rstrip("\n") == compare.table([bireal, xnor])  # what the script prints

    data = json.loads(invoke(bireal, xnor, "--format", "json").output)
    assert [row["network"] for row in data] == ["resnet18 bireal", "resnet18 xnor"]
    assert data[0]["test_accuracy"] == 0.8935 and data[1]["train_minutes"] == 4.0
    assert data[1]["runs"] == [xnor] and data[1]["with_search"] is False
    rows = list(csv.DictReader(io.StringIO(invoke(bireal, xnor, "--format", "csv").output)))
    assert [float(r["test_accuracy"]) for r in rows] == [0.8935, 0.8725]


def test_compare_the_readme_end_to_end_runs():
    s = RESULTS / "final-r18-schedules"
    xnor = ",".join(str(p) for p in sorted(s.glob("xnor-mc-lr4e-3-s*")))
    bireal = ",".join(str(p) for p in sorted(s.glob("mc-lr4e-3-s*")))
    result = invoke(RESULTS / "final-searched-v2", xnor, bireal, "--search",
                    RESULTS / "search-cifar")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2:] == [
        "| searched (derived genotype) | 143 | 86.94% | 9.39M | 3.35M / 21.4k | 504 kB | "
        "37.4 (20.9 search) |",
        "| resnet18 xnor | 143 | 87.25% (mean of 3 seeds, 86.83-87.54) | 10.3M | "
        "11.0M / 17.6k | 1.44 MB | 4.7 |",
        "| resnet18 bireal | 143 | 89.33% (mean of 5 seeds, 89.07-89.53) | 16.6M | "
        "11.0M / 192k | 2.14 MB | 5.0 |",
    ]  # the README's table (docs/results holds the runs)


def test_compare_mistakes_are_one_line(tmp_path):
    base = _run(tmp_path, "base", 0.89, 300)
    other = _run(tmp_path, "other", 0.87, 300, family="xnor", ops=1.03e7)
    for name, text in (("list", "[1, 2]"), ("partial", '{"model": "resnet20", "ops": 1}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(text)
    for args, expected in (
        ([tmp_path / "list"], "is not a training report (not a JSON object)"),
        ([tmp_path / "partial"], "is not a training report (no test_accuracy, train_seconds"),
        ([f"{base},{other}"], "another network than"),
        ([RESULTS / "search-cifar"], "no report.json in"),
        ([tmp_path / "missing"], "no report.json in"),
    ):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith("bnn-nas: error: ") and expected in line


def test_compare_names_the_device_a_run_trained_on(tmp_path):
    # a CPU training reads CPU-min, not GPU-min (report.json's device); a small image
    # folder, not the packaged sample: the device is what this test is about
    data = make_image_folder(tmp_path / "images", train_per_class=4, test_per_class=2)
    config = write_config(tmp_path / "c.yaml", (
        f"device: cpu\ndata: {{name: image_folder, root: {data}}}\n"
        "final: {epochs: 1, batch_size: 20}\n"
    ))  # fmt: skip
    run = tmp_path / "run"
    trained = CliRunner().invoke(main, ["train", "--config", str(config), "--genotype",
                                        SMALL_GENOTYPE, "--run-dir", str(run)])  # fmt: skip
    assert trained.exit_code == 0, trained.output
    result = invoke(run)
    assert result.exit_code == 0, result.output
    header, _, row = result.output.splitlines()
    assert header.endswith("| bytes | CPU-min |") and "GPU" not in result.output
    assert row.startswith("| searched (derived genotype) | 1 | ") and not row.endswith("CPU |")
    assert json.loads(invoke(run, "--format", "json").output)[0]["device_kind"] == "CPU"
    # a GPU run beside it: one unit no longer fits the column, each cell names its own
    gpu = _run(tmp_path, "gpu", 0.89, 300, device="NVIDIA H200")
    header, _, cpu_row, gpu_row = invoke(run, gpu).output.splitlines()
    assert header.endswith("| bytes | minutes |")
    assert cpu_row.endswith(" CPU |") and gpu_row.endswith("| 5.0 GPU |")
    assert invoke(gpu).output.splitlines()[0].endswith("| GPU-min |")
    # a report that does not say (older ones, hand-written ones): minutes, no device claimed
    unknown = _run(tmp_path, "unknown", 0.89, 300, device=None)
    assert invoke(unknown).output.splitlines()[0].endswith("| bytes | minutes |")
    assert [compare.device_kind({"device": name}) for name in (
        "x86_64", "aarch64", "arm", "i386", "AMD64", "cpu",
        "Intel64 Family 6 Model 85 Stepping 7, GenuineIntel", "NVIDIA H200", "Tesla V100-SXM2-16GB",
    )] == ["CPU"] * 7 + ["GPU"] * 2  # fmt: skip


def test_a_seed_row_names_every_device_its_runs_trained_on(tmp_path):
    # the row once took the first seed's device: seeds on two GPUs read as all on the first
    h200 = _run(tmp_path, "h200", 0.89, 300)
    a100 = _run(tmp_path, "a100", 0.88, 360, device="NVIDIA A100-SXM4-80GB")
    (row,) = compare.compare_rows([f"{h200},{a100}"])
    assert row["device"] == "NVIDIA H200, NVIDIA A100-SXM4-80GB" and row["device_kind"] == "GPU"
    assert invoke(f"{h200},{a100}").output.splitlines()[0].endswith("| GPU-min |")
    # a seed whose report does not say: the row claims no kind for its minutes
    unknown = _run(tmp_path, "unknown", 0.88, 300, device=None)
    (row,) = compare.compare_rows([f"{h200},{unknown}"])
    assert row["device"] == "NVIDIA H200, unknown device" and row["device_kind"] is None
    assert invoke(f"{h200},{unknown}").output.splitlines()[0].endswith("| minutes |")
    # one seed on a CPU, one on a GPU: a mean of their minutes is neither's, refused
    cpu = _run(tmp_path, "cpu", 0.88, 3000, device="x86_64")
    result = invoke(f"{h200},{cpu}")
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("bnn-nas: error: ") and "trained on a CPU and" in line
    assert "separate rows" in line
