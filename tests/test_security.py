"""No code from files: checkpoints, run directories and the kernel cache run nothing planted.

- A crafted pickle in ``checkpoint.pt`` runs no code in `export` or `train --resume`
  (``torch.load(weights_only=True)``); a bit flipped in saved weights is caught by the
  checksum; checkpoints that miss keys or hold wrong shapes fail in one line.
- The plugins a run directory's config names are not imported unless passed.
- A library planted in the kernel cache is never loaded.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bnn_nas.cli import main
from bnn_nas.errors import CheckpointError
from bnn_nas.export import native
from bnn_nas.train.checkpoint import (
    FORMAT,
    check_training_checkpoint,
    load_checkpoint,
    restoring,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnn-nas: error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def hostile_run(tmp_path):
    """A training run directory whose checkpoint.pt holds a code-running pickle."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        "device: cpu\nmodel: {type: resnet20}\nfinal: {epochs: 1, batch_size: 16}\n"
    )
    marker = tmp_path / "code-ran"
    hostile = {"format": FORMAT, "version": 2, "model": Payload(str(marker))}
    torch.save(hostile, run / "checkpoint.pt")
    return run, marker


def test_a_crafted_pickle_runs_no_code_in_export(hostile_run):
    run, marker = hostile_run
    line = one_line_error(CliRunner().invoke(main, ["export", str(run)]))
    assert "not a bnn-nas checkpoint" in line and not marker.exists()


def test_a_crafted_pickle_runs_no_code_in_train_resume(hostile_run):
    run, marker = hostile_run
    result = CliRunner().invoke(main, [
        "train", "--config", str(run / "config.yaml"), "--model", "resnet20", "--run-dir",
        str(run), "--resume",
    ])  # fmt: skip
    line = one_line_error(result)
    assert "not a bnn-nas checkpoint" in line and not marker.exists()


def test_a_crafted_pickle_runs_no_code_in_load_checkpoint(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save(Payload(str(marker)), path)  # at the top, before any format tag
    with pytest.raises(CheckpointError, match="not a bnn-nas checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_flipped_bit_in_the_weights_is_detected(tmp_path):
    path = tmp_path / "checkpoint.pt"
    weights = torch.full((256,), 1.2345)
    save_checkpoint(path, {"epoch": 0, "model": {"w": weights}, "rng": rng_state()})
    raw = bytearray(path.read_bytes())
    at = bytes(raw).index(weights.numpy().tobytes()) + 100
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="checksum mismatch") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_rng_states_round_trip_as_tensors_and_lists(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"rng": rng_state()})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(load_checkpoint(path)["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    with pytest.raises(TypeError, match="weights_only"):  # caught when saving, not resuming
        save_checkpoint(path, {"state": np.zeros(3)})


def test_version_1_checkpoints_with_numpy_rng_are_still_read(tmp_path):
    path = tmp_path / "checkpoint.pt"
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}  # fmt: skip
    torch.save({"format": FORMAT, "version": 1, "epoch": 2, "rng": state}, path)
    expected = (random.random(), float(np.random.rand()))
    loaded = load_checkpoint(path)
    set_rng_state(loaded["rng"])
    assert (random.random(), float(np.random.rand())) == expected and loaded["epoch"] == 2


def test_checkpoints_that_do_not_fit_fail_in_one_line(tmp_path):
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="has no 'optimizer'"):
        check_training_checkpoint({"model": {}}, path)
    with pytest.raises(CheckpointError, match="epoch is a str"):
        check_training_checkpoint({"model": {}, "optimizer": {}, "scheduler": {}, "rng": {},
                                   "epoch": "3", "metrics": []}, path)  # fmt: skip
    model = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match="does not fit this run") as err, restoring(path):
        model.load_state_dict({"weight": torch.zeros(5, 5), "bias": torch.zeros(2)})
    assert "\n" not in str(err.value)
    folder = tmp_path / "dir.pt"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(folder)


PLUGIN = "import pathlib\npathlib.Path({marker!r}).mkdir()\n"


@pytest.fixture
def run_with_plugin(tmp_path):
    """A training run directory whose config names a plugin that leaves a marker."""
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "plugin-ran"
    plugin = run / "evil.py"
    plugin.write_text(PLUGIN.format(marker=str(marker)))
    (run / "config.yaml").write_text(
        f"device: cpu\nplugins: [{plugin}]\nmodel: {{type: resnet20}}\n"
        "final: {epochs: 1, batch_size: 16}\n"
    )
    save_checkpoint(run / "checkpoint.pt", {"epoch": 0, "model": {}})
    return run, plugin, marker


def test_export_does_not_import_a_run_directorys_plugins(run_with_plugin, clean_registry):
    run, plugin, marker = run_with_plugin
    line = one_line_error(CliRunner().invoke(main, ["export", str(run)]))
    # the message shows each plugin's path, a long one by its last 77 characters
    # (rundir.py; tmp_path's length varies: pytest-xdist adds popen-gwN/), so the file's
    # name is always there
    assert "--trust-run-plugins" in line and str(plugin)[-77:] in line and not marker.exists()
    assert f"/{plugin.name}" in line


def test_train_does_not_import_a_run_directorys_plugins(run_with_plugin, clean_registry):
    run, _, marker = run_with_plugin
    result = CliRunner().invoke(main, [
        "train", "--config", str(run / "config.yaml"), "--model", "resnet20", "--run-dir",
        str(run), "--resume",
    ])  # fmt: skip
    assert "--trust-run-plugins" in one_line_error(result) and not marker.exists()


def test_run_plugins_load_when_passed_or_trusted(run_with_plugin, clean_registry):
    run, _, marker = run_with_plugin
    result = CliRunner().invoke(main, ["export", str(run), "--trust-run-plugins"])
    assert marker.exists()  # imported when asked (then the empty checkpoint is refused)
    assert "importing plugins named in" in result.output and result.exit_code == 2


@pytest.fixture
def compiler():
    if native.find_compiler() is None:
        pytest.skip("no C compiler")


def test_a_planted_kernel_library_is_refused(tmp_path, compiler):
    built = native.build_library(tmp_path / "a", flag_sets=(("-O0",),)).path
    cache = tmp_path / "b"
    cache.mkdir(mode=0o700)
    planted = cache / built.name  # the name bnn-nas would load, other bytes, no record
    planted.write_bytes(built.read_bytes() + b"\0planted")
    assert not native.trusted_library(planted)
    (cache / (built.name + ".sha256")).write_text("0" * 64 + "\n")  # a wrong record
    assert not native.trusted_library(planted)
    library = native.build_library(cache, flag_sets=(("-O0",),))
    assert library.path == planted and planted.read_bytes() == built.read_bytes()  # rebuilt
    assert native.trusted_library(planted)


def test_a_cache_others_can_write_is_not_used(tmp_path, compiler, capsys):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    library = native.build_library(shared, flag_sets=(("-O0",),))
    assert library.path.parent != shared and not list(shared.iterdir())
    assert "writable by group or others" in capsys.readouterr().err


def test_a_tampered_image_folder_cache_is_rebuilt(tmp_path):
    import numpy as np

    from bnn_nas.data.image_folder import load_image_folder
    from tests.fixtures import make_image_folder

    root = make_image_folder(tmp_path / "images", train_per_class=2, test_per_class=1)
    first = load_image_folder(root, cache_dir=tmp_path / "cache", workers=1)
    (cache,) = (tmp_path / "cache").glob("*.npz")
    with np.load(cache) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["train_labels"] = np.zeros_like(arrays["train_labels"])  # relabelled by someone
    np.savez(cache, **arrays)
    with pytest.warns(UserWarning, match="checksum"):
        again = load_image_folder(root, cache_dir=tmp_path / "cache", workers=1)
    assert (again.train.labels == first.train.labels).all() and again.train.labels.any()


def test_the_plugins_of_a_run_config_are_read_without_importing_them(run_with_plugin):
    from bnn_nas.cli.options import run_config_plugins

    run, plugin, marker = run_with_plugin
    assert run_config_plugins(run / "config.yaml") == (str(plugin),)
    assert not marker.exists()  # derive prints them as --plugin for train; nothing ran
