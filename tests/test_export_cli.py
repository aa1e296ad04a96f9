"""`bnn-nas export` and `bnn-nas infer` on a real training run directory."""

from __future__ import annotations

import csv
import json
import shlex
import shutil

import pytest
from click.testing import CliRunner

from bnn_nas.cli.export_commands import export_command, infer_command
from bnn_nas.config import load_config
from bnn_nas.space.genotype import parse_genotype
from bnn_nas.train.run import train_run
from tests.fixtures import make_image_folder, write_config

GENOTYPE = (
    "Genotype(normal=[('xnor_conv_3x3', 0), ('skip_connect', 1), "
    "('bireal_conv_3x3_skip_connect', 2), ('max_pool_3x3', 0)], normal_concat=[2, 3], "
    "reduce=[('max_pool_3x3', 0), ('xnor_conv_3x3', 1), ('skip_connect', 2), "
    "('xnor_dil_conv_3x3', 1)], reduce_concat=[2, 3])"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A `bnn-nas train` run directory: checkpoint.pt, config.yaml, genotype.yaml, report."""
    tmp = tmp_path_factory.mktemp("run")
    data = make_image_folder(tmp / "images", train_per_class=16, test_per_class=5)
    body = (
        f"seed: 1\ndevice: cpu\ndata: {{name: image_folder, root: {data}}}\n"
        "final: {epochs: 2, batch_size: 16, lr: 0.01}\n"
    )
    config = load_config(write_config(tmp / "config.yaml", body))
    report = train_run(config, tmp / "run", genotype=parse_genotype(GENOTYPE), resume=False,
                       progress=False)  # fmt: skip
    return tmp / "run", data, report


def invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def accuracy_of(output: str) -> float:
    return float(output.split("accuracy ")[1].split()[0])


def test_export_then_infer_matches_the_training_report(run):
    run_dir, data, report = run
    exported = invoke(export_command, run_dir)
    assert exported.exit_code == 0, exported.output
    assert (run_dir / "model.bnn").is_file() and "binary convs packed" in exported.output
    by_folder = invoke(infer_command, run_dir / "model.bnn", "--images", data / "test")
    assert by_folder.exit_code == 0, by_folder.output
    # 50 test images: the engine matches PyTorch's evaluation up to one exact tie
    assert abs(accuracy_of(by_folder.output) - report["test_accuracy"]) <= 1 / 50 + 1e-9
    by_dataset = invoke(
        infer_command, run_dir / "model.bnn", "--dataset", "image_folder", "--data-root", data
    )
    assert accuracy_of(by_dataset.output) == accuracy_of(by_folder.output)
    # the command export prints next runs the run's own data set
    (hint,) = [line for line in exported.output.splitlines() if line.startswith("next: ")]
    words = shlex.split(hint.removeprefix("next: "))
    assert words == ["bnn-nas", "infer", str(run_dir / "model.bnn"), "--dataset",
                     "image_folder", "--data-root", str(data)]  # fmt: skip
    hinted = invoke(infer_command, *words[2:])
    assert hinted.exit_code == 0 and accuracy_of(hinted.output) == accuracy_of(by_dataset.output)
    portable = invoke(infer_command, run_dir / "model.bnn", "--images", data / "test", "--portable")
    assert portable.exit_code == 0 and "portable torch fallback" in portable.output
    assert accuracy_of(portable.output) == accuracy_of(by_folder.output)
    model = run_dir / "model.bnn"
    threads = invoke(infer_command, model, "--images", data / "test", "--threads", 2)
    assert "2 threads" in threads.output
    assert accuracy_of(threads.output) == accuracy_of(by_folder.output)


def test_export_from_a_checkpoint_path_with_given_normalisation(run, tmp_path):
    run_dir, data, _ = run
    target = tmp_path / "m.bnn"
    result = invoke(
        export_command, run_dir / "checkpoint.pt", "-o", target,
        "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    loose = tmp_path / "loose"
    loose.mkdir()
    for name in ("cat", "dog"):
        shutil.copy(data / "test" / name / "0000.png", loose / f"{name}.png")
    out = invoke(infer_command, target, "--images", loose, "-o", tmp_path / "p.csv")
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [r["image"] for r in rows] == ["cat.png", "dog.png"]
    assert all(r["prediction"] in map(str, range(10)) and r["label"] == "" for r in rows)
    printed = invoke(infer_command, target, "--images", loose)
    assert "\ncat.png\t" in printed.output and "\ndog.png\t" in printed.output


def test_header_records_the_source_run(run):
    run_dir, _, report = run
    from bnn_nas.export import read_bnn

    if not (run_dir / "model.bnn").exists():
        invoke(export_command, run_dir)
    header, _ = read_bnn(run_dir / "model.bnn")
    assert header["source"]["test_accuracy"] == report["test_accuracy"]
    assert header["architecture"]["genotype"] == str(parse_genotype(GENOTYPE))
    assert header["input"]["classes"][:2] == ["airplane", "automobile"]
    json.dumps(header)  # plain JSON all the way down


def test_export_with_given_normalisation_keeps_an_imagenet_run_s_layout(tmp_path):
    """--mean/--std read no data: the image size is the run's report.json's, so an
    ImageNet-size baseline is rebuilt in its ImageNet layout (it was refused: the CIFAR
    layout's weights do not fit) and the file records the size."""
    import torch

    from bnn_nas.export import read_bnn
    from bnn_nas.space.network import build_baseline
    from bnn_nas.train.checkpoint import save_checkpoint

    run_dir = tmp_path / "r18"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("model: {type: resnet18, family: xnor}\n")
    torch.manual_seed(0)
    net = build_baseline("resnet18", "xnor", 10, image_size=128)
    save_checkpoint(run_dir / "checkpoint.pt", {"model": net.state_dict(), "epoch": 0})
    report = {"test_accuracy": 0.1, "image_shape": [128, 96, 3], "num_classes": 10}
    (run_dir / "report.json").write_text(json.dumps(report))
    normalisation = ("--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25")
    result = invoke(export_command, run_dir, "-o", tmp_path / "m.bnn", *normalisation)
    assert result.exit_code == 0, result.output
    header, _ = read_bnn(tmp_path / "m.bnn")
    assert (header["input"]["height"], header["input"]["width"]) == (128, 96)
    assert header["architecture"]["image_size"] == 128


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/nowhere"], "does not exist"),
        (["{tmp}"], "has no checkpoint.pt"),
        (["{run}", "--mean", "0.5,0.5,0.5"], "both --mean and --std"),
    ],
)
def test_export_mistakes_are_one_line(run, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, run=run[0]) for a in args]
    result = invoke(export_command, *args)
    assert result.exit_code == 2 and message in result.output
    assert result.output.strip().count("\n") == 0


def test_infer_mistakes_are_one_line(run, tmp_path):
    run_dir = run[0]
    invoke(export_command, run_dir, "-o", tmp_path / "m.bnn")
    neither = invoke(infer_command, tmp_path / "m.bnn")
    assert neither.exit_code == 2 and "--images DIR or --dataset" in neither.output
    wrong = tmp_path / "wrong" / "zebra"
    wrong.mkdir(parents=True)
    bad = invoke(infer_command, tmp_path / "m.bnn", "--images", wrong.parent)
    assert bad.exit_code == 2 and "not one of the model's classes" in bad.output
    rootless = invoke(infer_command, tmp_path / "m.bnn", "--dataset", "image_folder")
    assert rootless.exit_code == 2 and rootless.output.strip().endswith(
        "--dataset image_folder needs --data-root DIR, the folder holding it"
    )
