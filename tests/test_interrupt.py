"""Ctrl-C: exit 130 and a one-line hint whose command continues exactly the interrupted run."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bnn_nas.cli import main
from bnn_nas.cli.options import INTERRUPT_EXIT
from tests.test_search_cli import cli, store_rows, write

BNN_NAS = [sys.executable, "-m", "bnn_nas.cli"]


def default_sigint() -> None:
    """In the child: SIGINT back to its default. A shell starts background jobs with
    SIGINT ignored, and Python then never raises KeyboardInterrupt: a test suite run in
    the background (`pytest ... &`) would otherwise see the signal do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hint_words(stderr: str, marker: str, why: str = "interrupted") -> list[str]:
    # The progress bar also writes to stderr; the message is one line, the last.
    lines = [line for line in stderr.splitlines() if line.startswith("bnn-nas:")]
    assert len(lines) == 1 and lines[0].startswith(f"bnn-nas: {why}; "), stderr
    assert stderr.rstrip().endswith(lines[0])
    words = shlex.split(lines[0].split(marker, 1)[1])
    assert words[0] == "bnn-nas"
    return words[1:]


@pytest.mark.slow
def test_ctrl_c_exits_130_and_its_hint_reruns_the_same_search(tmp_path):
    config = write(tmp_path, "evolution", 6)  # the flags below override this budget
    flags = ["--budget", "4", "--set", "train.lr=0.004", "--set", "search.population=2"]
    straight = tmp_path / "straight"
    done = cli("search", "--config", str(config), "--run-dir", str(straight), *flags)
    assert done.returncode == 0, done.stderr

    run = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*BNN_NAS, "search", "--config", str(config), "--run-dir", str(run), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=default_sigint,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        for line in proc.stdout:  # the search prints a line as each trial finishes
            if line.startswith("trial 1 "):
                break
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()  # a failing test leaves no search running
    assert proc.returncode == INTERRUPT_EXIT, stderr
    finished = sum(r[2] == "done" for r in store_rows(run))
    assert 1 <= finished < 4, "the search ended before it could be interrupted"

    words = hint_words(stderr, "continue with: ")
    assert words[words.index("--budget") + 1] == "4"
    assert [w for i, w in enumerate(words) if words[i - 1] == "--set"] == [
        "train.lr=0.004",
        "search.population=2",
    ]
    resumed = subprocess.run([*BNN_NAS, *words], capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    # Same budget, same settings: the continued search ends as the uninterrupted one did.
    assert scores(run) == scores(straight) and len(scores(run)) == 4


def scores(run_dir) -> list[tuple]:
    """Each trial's id, genotype hash, status and metrics, without its timings."""
    rows = []
    for trial_id, hash_, status, result in store_rows(run_dir):
        metrics = json.loads(result)
        metrics.pop("train_seconds")
        rows.append((trial_id, hash_, status, metrics))
    return rows


def test_ctrl_c_in_train_exits_130_with_a_resume_command(tmp_path, monkeypatch):
    import bnn_nas.train.run as run_module
    from bnn_nas.rundir import creating

    def stop(config, run_dir, **kwargs):  # stopped in training: its run directory exists
        with creating(run_dir, "train"):
            pass
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "train_run", stop)
    config = write(tmp_path)
    target = str(tmp_path / "r")
    args = ["train", "--config", str(config), "--model", "resnet20", "--family", "bireal",
            "--epochs", "3", "--set", "final.lr=0.003", "--run-dir", target,
            "--trust-run-plugins"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == INTERRUPT_EXIT, result.output
    words = hint_words(result.stderr, "continue from the last checkpoint with: ")
    assert words[:2] == ["train", "--config"] and "--resume" in words
    for flag, value in (("--model", "resnet20"), ("--family", "bireal"), ("--epochs", "3"),
                        ("--set", "final.lr=0.003"), ("--run-dir", target)):  # fmt: skip
        assert words[words.index(flag) + 1] == value
    assert words.count("--set") == 1  # --epochs is repeated as itself, not as a --set
    assert "--trust-run-plugins" in words


def test_ctrl_c_before_a_training_saved_anything_hints_a_fresh_start(tmp_path, monkeypatch):
    """A training stopped before its run directory was born leaves nothing to resume:
    the hint starts it again, and `--resume` of a folder without a training is refused."""
    import bnn_nas.train.run as run_module

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "train_run", stop)
    config = write(tmp_path)
    target = str(tmp_path / "r")
    args = ["train", "--config", str(config), "--model", "resnet20", "--run-dir", target]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == INTERRUPT_EXIT, result.output
    words = hint_words(result.stderr, "nothing was saved yet; start again with: ")
    assert words == args and not (tmp_path / "r").exists()
    monkeypatch.undo()  # the real train_run: it refuses the resume (the API's path too)
    resumed = CliRunner().invoke(main, [*args, "--resume"])
    assert resumed.exit_code == 2
    assert resumed.stderr.strip() == (
        f"bnn-nas: error: no training to resume in {target}; drop --resume to start one"
    )


def test_sigterm_in_train_exits_143_with_the_same_resume_hint(tmp_path):
    """SIGTERM (kill, a scheduler's stop) ends a training as Ctrl-C does: one line saying
    what was saved and the command that resumes it, exit 128 + 15; the resume finishes."""
    from tests.fixtures import metrics_rows, signal_after_epochs
    from tests.test_train import _config, _train_cmd

    config, run = _config(tmp_path, 6), tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code, stderr = signal_after_epochs(_train_cmd(config, run), run, 1, env, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, stderr
    assert 1 <= len(metrics_rows(run)) < 6, "the training ended before it could be stopped"
    words = hint_words(stderr, "continue from the last checkpoint with: ", "terminated (SIGTERM)")
    assert words[:2] == ["train", "--config"] and "--resume" in words
    assert words[words.index("--run-dir") + 1] == str(run)
    resumed = subprocess.run([*BNN_NAS, *words], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert len(metrics_rows(run)) == 6
