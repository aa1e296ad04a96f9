"""The main job end to end, in subprocesses: search, SIGKILL + resume, derive, train, errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bnn_nas.space.genotype import load_genotype

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """\
seed: 5
device: cpu
search_space:
  steps: 2
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3, bireal_conv_3x3_skip_connect]
  network: {{cells: 3, channels: 4, stem_multiplier: 2}}
data: {{name: cifar10_sample, valid_fraction: 0.2, search_train_size: 300, search_valid_size: 200}}
train: {{epochs: 1, batch_size: 50, lr: 0.005, eval_batch_size: 200}}
search: {{controller: {controller}, budget: {budget}, population: 3, sample_size: 2}}
final: {{epochs: 1, batch_size: 100, lr: 0.005}}
"""


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bnn_nas.cli", *args], capture_output=True,
                          text=True, cwd=cwd)  # fmt: skip


def write(tmp_path: Path, controller: str = "evolution", budget: int = 5) -> Path:
    path = tmp_path / f"{controller}-{budget}.yaml"
    path.write_text(CONFIG.format(controller=controller, budget=budget))
    return path


def store_rows(run_dir: Path) -> list[tuple]:
    db = sqlite3.connect(run_dir / "trials.sqlite")
    try:
        return db.execute("SELECT id, hash, status, result FROM trials ORDER BY id").fetchall()
    finally:
        db.close()


@pytest.mark.slow
def test_search_derive_status_plot_train(tmp_path):
    config = write(tmp_path, "pareto", 5)
    run = tmp_path / "run"
    result = cli("search", "--config", str(config), "--run-dir", str(run))
    assert result.returncode == 0, result.stderr
    assert "5 trials done" in result.stdout and "trial 5 acc" in result.stdout
    assert "precision: float32 on cpu (bf16 autocast is used on CUDA only)" in result.stdout
    rows = store_rows(run)
    assert len(rows) == 5 and {r[2] for r in rows} == {"done"}
    with (run / "trials.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [int(r["id"]) for r in table] == [1, 2, 3, 4, 5]
    assert all(0 <= float(r["accuracy"]) <= 1 and float(r["ops"]) > 0 for r in table)
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 5

    derived = cli("derive", str(run), "--by", "pareto")
    assert derived.returncode == 0, derived.stderr
    document = yaml.safe_load((run / "genotype.yaml").read_text())
    genotype = load_genotype(str(run / "genotype.yaml"))
    assert document["hash"] == genotype.hash and 1 <= document["trial"] <= 5
    assert load_genotype(str(run / "genotype.txt")) == genotype
    # matplotlib (the test extra) draws it when graphviz is missing, as on CI.
    assert (run / "genotype.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "genotype.png" in derived.stdout

    status = cli("status", str(run))
    assert status.returncode == 0 and "5 done" in status.stdout
    plot = cli("plot", str(run))
    assert plot.returncode == 0, plot.stderr
    assert (run / "search.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    final = tmp_path / "final"
    trained = cli("train", "--config", str(config), "--genotype", str(run / "genotype.yaml"),
                  "--run-dir", str(final))  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    report = json.loads((final / "report.json").read_text())
    assert report["genotype"] == str(genotype) and 0 <= report["test_accuracy"] <= 1


@pytest.mark.slow
def test_sigkill_mid_search_then_resume(tmp_path):
    budget = 6
    config = write(tmp_path, "evolution", budget)
    straight = tmp_path / "straight"
    assert cli("search", "--config", str(config), "--run-dir", str(straight)).returncode == 0
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bnn_nas.cli", "search", "--config", str(config),
         "--run-dir", str(killed)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        # a line per finished trial, printed after the store recorded it (polling the
        # store instead raced with its creation under load)
        finished = 0
        for line in proc.stdout:
            finished += line.startswith("trial ")
            if finished == 3:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = store_rows(killed)
    done_before = [r for r in before if r[2] == "done"]
    assert 3 <= len(done_before) < budget, "the search ended before it could be killed"

    resumed = cli("search", "--config", str(config), "--run-dir", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {killed}: {len(done_before)} trials finished" in resumed.stderr
    after = store_rows(killed)
    assert sum(r[2] == "done" for r in after) == budget
    assert after[: len(done_before)] == done_before  # finished trials kept as they were
    hashes = [r[1] for r in after]
    assert len(set(hashes)) == len(hashes)  # no genotype evaluated twice
    # the rebuilt controller proposed exactly what the uninterrupted one did
    assert hashes == [r[1] for r in store_rows(straight)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("serach: {budget: 2}\n", "unknown key serach; did you mean search?"),
        ("data: {name: image_folder, root: /nonexistent/cifar}\n", "/nonexistent/cifar"),
        ("search_space: {ops: [skip_connect, xnor_resnet_blok]}\n", "'xnor_resnet_blok'"),
        ("train: {epochs: two}\n", "train.epochs must be an integer"),
    ],
)  # fmt: skip
def test_bad_search_input_is_one_line_and_leaves_no_run_dir(tmp_path, body, expected):
    config = tmp_path / "bad.yaml"
    config.write_text("device: cpu\n" + body)
    run = tmp_path / "run"
    result = cli("search", "--config", str(config), "--run-dir", str(run))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr and not run.exists()


@pytest.mark.slow
def test_malformed_genotype_and_changed_config_on_resume(tmp_path):
    config = write(tmp_path, "random", 1)
    bad = cli("train", "--config", str(config), "--genotype", "Genotype(normal=[('x', 0)",
              "--run-dir", str(tmp_path / "t"))  # fmt: skip
    assert bad.returncode == 2 and "genotype text is not valid" in bad.stderr
    assert not (tmp_path / "t").exists()
    run = tmp_path / "run"
    assert cli("search", "--config", str(config), "--run-dir", str(run)).returncode == 0
    changed = cli("search", "--config", str(config), "--run-dir", str(run),
                  "--set", "train.lr=0.1")  # fmt: skip
    assert changed.returncode == 2 and "train.lr=0.005" in changed.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 0.005
    more = cli("search", "--config", str(config), "--run-dir", str(run), "--budget", "2",
               "--set", "final.epochs=3")  # fmt: skip
    assert more.returncode == 0, more.stderr
    assert [r[2] for r in store_rows(run)] == ["done", "done"]
    written = yaml.safe_load((run / "config.yaml").read_text())  # what derive points train at
    assert written["search"]["budget"] == 2 and written["final"]["epochs"] == 3
    nothing = cli("derive", str(tmp_path / "empty"))
    assert nothing.returncode == 2 and "no search results" in nothing.stderr


def test_train_epochs_shorter_than_the_warm_up_is_refused_before_any_work(tmp_path):
    config = write(tmp_path, "random", 1)
    run = tmp_path / "t"
    result = cli("train", "--config", str(config), "--model", "resnet20", "--epochs", "2",
                 "--set", "final.warmup_epochs=5", "--run-dir", str(run))  # fmt: skip
    assert result.returncode == 2
    assert "final.warmup_epochs=5 is longer than final.epochs=2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not run.exists()


def test_a_search_resumes_on_another_machine_but_not_with_other_data_settings(tmp_path):
    from bnn_nas.config import Config, config_to_dict
    from bnn_nas.errors import ConfigError
    from bnn_nas.search.engine import check_resumable

    stored = config_to_dict(Config())
    moved = yaml.safe_load(yaml.safe_dump(stored))
    moved["data"]["root"] = "/elsewhere/cifar10"  # same data, new path: fine
    moved["executor"]["type"] = "streams"
    check_resumable(stored, moved, tmp_path)
    other = yaml.safe_load(yaml.safe_dump(stored))
    other["data"]["valid_fraction"] = 0.3  # other search-train/valid split: refused
    with pytest.raises(ConfigError, match=r"data\.valid_fraction=0\.5"):
        check_resumable(stored, other, tmp_path)


def test_a_budget_below_the_trials_already_run_says_so_and_runs_nothing(tmp_path):
    config, run = write(tmp_path, "random", 2), tmp_path / "run"
    small = ("--set", "data.search_train_size=100", "--set", "data.search_valid_size=50")
    assert cli("search", "--config", str(config), "--run-dir", str(run), *small).returncode == 0
    before = store_rows(run)
    for budget in ("1", "2"):  # fewer trials than the run has, and as many
        again = cli("search", "--config", str(config), "--run-dir", str(run), "--budget",
                    budget, *small)  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert f"resuming {run}: 2 trials finished; the budget ({budget} trial" in again.stderr
        assert "is spent: nothing to run (raise it with --budget N)" in again.stderr
        assert "2/2" in again.stderr and "/?" not in again.stderr  # the bar: done, not 2/?
        bars = [line for line in again.stderr.splitlines() if "2/2" in line]
        # no "?" either for the time left or the rate: the earlier trials' time per trial
        assert bars and not any("?" in line for line in bars), bars
        # tqdm writes the rate as s/trial or, for trials under a second, trial/s
        assert all(("s/trial" in line or "trial/s" in line) and "<00:00" in line
                   for line in bars), bars  # fmt: skip
        assert "2 trials done, 0 failed" in again.stdout
    assert store_rows(run) == before


def test_a_spent_budget_does_not_promise_to_rerun_the_interrupted_trials(tmp_path):
    # a killed search left trial 3 running; resumed with --budget 2 (2 trials done) nothing
    # runs, so the line must not say the interrupted trial is rerun now
    from bnn_nas.search.store import SQLiteStore
    from bnn_nas.search.trials import Proposal

    config, run = write(tmp_path, "random", 2), tmp_path / "run"
    small = ("--set", "data.search_train_size=100", "--set", "data.search_valid_size=50")
    assert cli("search", "--config", str(config), "--run-dir", str(run), *small).returncode == 0
    store = SQLiteStore(run / "trials.sqlite")
    try:
        (trial,) = store.add([Proposal(store.get(1).genotype)])
        store.start(trial)  # as a search killed while it trained leaves it
    finally:
        store.close()
    again = cli("search", "--config", str(config), "--run-dir", str(run), *small)
    assert again.returncode == 0, again.stderr
    assert (f"resuming {run}: 2 trials finished, 1 interrupted trial left pending (a higher "
            "--budget reruns it); the budget (2 trials) is spent: nothing to run"
            ) in again.stderr, again.stderr  # fmt: skip
    assert [row[2] for row in store_rows(run)] == ["done", "done", "pending"]
