"""The Python API: the README's example end to end, load_run on old and new stores,
run_search's executors and resume, build_network, a cheap `import bnn_nas`."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import bnn_nas
from bnn_nas.cli import main
from bnn_nas.errors import BnnNasError, ConfigError
from bnn_nas.search.derive import choose, open_run
from bnn_nas.search.trials import CURVE_FIELDS
from tests.test_faults import FakeExecutor
from tests.test_results_files import check_matches_the_store

ROOT = Path(__file__).resolve().parents[1]
SEARCH_CIFAR = ROOT / "docs" / "results" / "search-cifar"  # a store of schema 1

# configs/cifar_tiny.yaml's shape at a size the test suite affords: the packaged sample,
# the CPU, a 3-cell x 4-channel network, one epoch on 300 images per trial
SMALL = """\
seed: 5
device: cpu
search_space:
  steps: 2
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3, bireal_conv_3x3_skip_connect]
  network: {cells: 3, channels: 4, stem_multiplier: 2}
data: {name: cifar10_sample, valid_fraction: 0.2, search_train_size: 300, search_valid_size: 200}
train: {epochs: 1, batch_size: 50, lr: 0.005, eval_batch_size: 200}
search: {controller: evolution, budget: 24, population: 3, sample_size: 2}
final: {epochs: 10, batch_size: 100, lr: 0.005}
"""


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_end_to_end(tmp_path, monkeypatch, capsys):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "cifar_tiny.yaml").write_text(SMALL)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), scope)
    results, best, chosen = scope["results"], scope["best"], scope["chosen"]
    assert isinstance(results, bnn_nas.SearchResults)
    assert results.counts["done"] == 4 and results.finished and results.budget == 4
    # best and pareto as derive reads them from the same store
    records, objectives = open_run(tmp_path / "runs" / "api")
    assert best.id == choose(records, "accuracy", None, objectives)[0].id
    front = choose(records, "pareto", None, objectives)[1]
    assert [t.id for t in results.pareto()] == [t.id for t in front]
    assert [t.id for t in results.pareto(["accuracy", "ops"])] == [t.id for t in front]
    assert chosen.id == choose(records, "pareto", None, objectives)[0].id
    assert (tmp_path / "runs" / "api" / "genotype.yaml").is_file()
    assert (tmp_path / "runs" / "api" / "pareto.csv").is_file()
    report = scope["report"]
    assert report["genotype"] == str(chosen.genotype) and report["epochs"] == 1
    assert json.loads((tmp_path / "runs" / "api-final" / "report.json").read_text()) == report
    assert isinstance(scope["net"], torch.nn.Module)
    assert scope["net"](torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    table = scope["table"]
    assert list(table.index) == [1, 2, 3, 4] and "parent" in table.columns
    assert table.loc[best.id, "accuracy"] == best.result["accuracy"]
    # the learning curves: one epoch per trial (train.epochs=1), as curves.csv has them
    curves = scope["curves"]
    assert [(c["trial"], c["epoch"]) for c in curves] == [(i, 0) for i in (1, 2, 3, 4)]
    assert all(0 <= c["train_acc"] <= 1 and c["eval_acc"] is not None for c in curves)
    with (tmp_path / "runs" / "api" / "curves.csv").open() as handle:
        stored = list(csv.DictReader(handle))
    assert [float(r["train_loss"]) for r in stored] == [c["train_loss"] for c in curves]
    assert results.curves(best.id) == [c for c in curves if c["trial"] == best.id]
    assert len(results.to_pandas("curves")) == 4
    status = CliRunner().invoke(main, ["status", "runs/api", "--format", "json"])
    data = json.loads(status.output)
    check_matches_the_store(data, tmp_path / "runs" / "api")  # curves too
    assert [len(t["curve"]) for t in data["trials"]] == [1, 1, 1, 1]
    out = capsys.readouterr()
    assert "SearchResults(runs/api: 4 done; best: trial" in out.out
    assert "4/4" in out.err  # the progress bar


def test_load_run_reads_an_old_store_as_derive_does(tmp_path):
    copy = tmp_path / "search-cifar"
    shutil.copytree(SEARCH_CIFAR, copy)
    results = bnn_nas.load_run(copy)
    records, _ = open_run(copy)
    assert len(results.trials) == 160 and results.counts == {
        "done": 160, "failed": 0, "running": 0, "pending": 0}  # fmt: skip
    assert [o.name for o in results.objectives] == ["accuracy", "ops"]
    assert results.best().id == results.best("accuracy").id == 153  # derive's genotype.yaml
    assert results.derive().id == 153 and results.derive(by="pareto").id == 157
    assert results.derive(by="pareto", max_ops=2.5e6).id == 155
    assert [t.id for t in results.pareto()] == [t.id for t in choose(records, "pareto", None)[1]]
    cheapest = results.best("ops")
    assert cheapest.result["ops"] == min(r.result["ops"] for r in records)
    assert results.best("accuracy", direction="minimize").result["accuracy"] == min(
        r.result["accuracy"] for r in records)  # fmt: skip
    assert results.to_dict()["best"] == 153 and results.rows()[0]["origin"] == "random"
    parents = {r["id"]: r["parent"] for r in results.rows()}
    assert {type(p) for p in parents.values()} == {type(None), int}
    assert all(parents[t.id] == t.origin.get("parent") for t in results.trials)
    pandas = pytest.importorskip("pandas")
    frame = results.to_pandas()
    assert isinstance(frame, pandas.DataFrame) and len(frame) == 160
    assert frame["accuracy"].idxmax() == 153
    with pytest.raises(ConfigError, match="not a metric of the trials"):
        results.best("acuracy")


def test_a_search_without_trials_yet_reads_as_empty_results(tmp_path):
    """load_run right after a search started (a notebook polling it): no trial yet."""
    copy = tmp_path / "started"
    shutil.copytree(SEARCH_CIFAR, copy)
    with sqlite3.connect(copy / "trials.sqlite") as db:
        db.execute("DELETE FROM trials")
    results = bnn_nas.load_run(copy)
    assert (results.best(), results.pareto(), results.rows(), results.curves()) == (
        None, [], [], [])  # fmt: skip
    with pytest.raises(BnnNasError, match="no finished trial yet"):
        results.derive()
    pytest.importorskip("pandas")
    frame = results.to_pandas()
    assert len(frame) == 0 and frame.index.name == "id" and "accuracy" in frame.columns
    assert list(results.to_pandas("curves").columns) == ["trial", *CURVE_FIELDS]


def test_to_pandas_without_pandas_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails
    results = bnn_nas.load_run(SEARCH_CIFAR)
    with pytest.raises(BnnNasError) as info:
        results.to_pandas()
    (line,) = str(info.value).splitlines()
    assert "pip install 'bnn-nas[pandas]'" in line
    assert isinstance(info.value, ImportError)


def test_load_run_of_a_folder_without_a_search(tmp_path):
    with pytest.raises(BnnNasError, match="no search results"):
        bnn_nas.load_run(tmp_path)


def test_run_search_takes_a_mapping_an_executor_object_and_resumes(tmp_path):
    import yaml

    data = yaml.safe_load(SMALL)
    run = tmp_path / "run"
    first = bnn_nas.run_search(data, run_dir=run, budget=3, executor=FakeExecutor(),
                               progress=False)  # fmt: skip
    assert first.counts["done"] == 3 and first.finished
    # again with a larger budget: the first three trials stay, three more are run
    made = []

    def factory(config, evaluator):
        made.append(config.search.budget)
        return FakeExecutor()

    more = bnn_nas.run_search(data, run_dir=run, overrides=["search.budget=6"],
                              executor=factory, resume=True, progress=False)  # fmt: skip
    assert made == [6] and more.counts["done"] == 6
    assert [t.hash for t in more.trials[:3]] == [t.hash for t in first.trials]
    # the lock is given back: another process may resume the search now
    code = f"from bnn_nas.rundir import lock_run_dir; lock_run_dir({str(run)!r})"
    locked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert locked.returncode == 0, locked.stderr
    assert more.refresh().counts == more.counts
    with pytest.raises(ConfigError, match="no search to resume"):
        bnn_nas.run_search(data, run_dir=tmp_path / "other", resume=True, progress=False)
    # a refused resume (another seed) leaves the directory free for another process too
    with pytest.raises(ConfigError, match="was searched with seed=5"):
        bnn_nas.run_search(data, run_dir=run, overrides=["seed=6"], progress=False)
    locked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert locked.returncode == 0, locked.stderr


def test_run_search_writes_search_log_as_the_command_does(tmp_path):
    """RUN/search.log from the Python API too: a line naming the call, what the search
    showed (the per-trial lines), a resume appended, an error that ended it as one line."""
    import yaml

    data = yaml.safe_load(SMALL)
    run = tmp_path / "run"
    bnn_nas.run_search(data, run_dir=run, budget=2, executor=FakeExecutor())
    log = (run / "search.log").read_text().splitlines()
    assert log[0].startswith("=== ") and log[0].endswith(
        f"bnn_nas.run_search(<mapping>, run_dir={str(run)!r}, executor=<FakeExecutor>, "
        "budget=2)")  # fmt: skip
    assert [line.split(" ", 1)[0] for line in log[1:] if "%|" not in line] == ["trial"] * 2

    def broken(config, evaluator):
        raise ConfigError("executor: no such thing here")

    with pytest.raises(ConfigError):
        bnn_nas.run_search(data, run_dir=run, budget=3, executor=broken, progress=False)
    log = (run / "search.log").read_text().splitlines()
    assert sum(line.startswith("=== ") for line in log) == 2
    assert log[-1] == "bnn-nas: error: executor: no such thing here"


def test_run_search_refuses_a_bad_config_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        bnn_nas.run_search({"serach": {"budget": 2}}, run_dir=tmp_path / "run")
    assert "serach" in str(info.value) and not (tmp_path / "run").exists()


def test_build_network_of_a_genotype_and_a_baseline(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(SMALL + "model: {cells: 5, channels: 8}\n")
    results = bnn_nas.load_run(SEARCH_CIFAR)
    genotype = results.best().genotype
    final = bnn_nas.build_network(genotype, config=config)
    search = bnn_nas.build_network(str(genotype), config=config, layout="search")
    assert len(final.cells) == 5 and len(search.cells) == 3
    again = bnn_nas.build_network(genotype, config=config)  # the config's seed: same weights
    assert all(torch.equal(a, b) for a, b in zip(final.state_dict().values(),
                                                 again.state_dict().values(), strict=True))
    assert final.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    resnet = bnn_nas.build_network("resnet20", family="bireal", num_classes=7)
    assert resnet(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
    with pytest.raises(ConfigError, match="layout"):
        bnn_nas.build_network(genotype, layout="big")


def test_import_bnn_nas_is_cheap():
    code = ("import sys, bnn_nas; assert 'torch' not in sys.modules, 'torch'; "
            "bnn_nas.run_search; bnn_nas.register_primitive; bnn_nas.search.SearchRun; "
            "assert callable(bnn_nas.train); import bnn_nas.train.run; "  # the package too
            "assert callable(bnn_nas.train) and bnn_nas.train.fit; "
            "print(sorted(bnn_nas.__all__))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "run_search" in done.stdout and "register_primitive" in done.stdout


def test_bnn_nas_train_is_one_object_whatever_was_imported_first():
    """The same callable package before and after bnn_nas.train.* is imported, with the
    API function's signature, and it pickles (a process pool can be handed it)."""
    code = ("import inspect, pickle, bnn_nas; from bnn_nas import train as first; "
            "import bnn_nas.train.run; from bnn_nas import train as second; "
            "from bnn_nas.api import train as function; "
            "assert first is second is bnn_nas.train, (first, second); "
            "assert inspect.signature(first) == inspect.signature(function); "
            "assert pickle.loads(pickle.dumps(first)) is first; print('ok')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_train_refuses_what_the_command_refuses(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    genotype = bnn_nas.load_run(SEARCH_CIFAR).best().genotype
    for kwargs, expected in (
        ({}, "give either --genotype"),
        ({"genotype": genotype, "model": "resnet20"}, "give either --genotype"),
        ({"genotype": genotype, "family": "float"}, "--family float trains the float twin"),
        ({"model": "resnet9000"}, "resnet9000"),
    ):
        with pytest.raises(BnnNasError, match=expected):
            bnn_nas.train(config, run_dir=tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


def test_train_resume_of_a_folder_without_a_training_is_refused_as_the_command_does(
    tmp_path,
):
    """resume=True of a missing folder, or of one that is no run, raises the command's
    ConfigError instead of starting a fresh training; nothing is created."""
    config = tmp_path / "c.yaml"
    config.write_text(SMALL)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine\n")
    for target in (tmp_path / "nothere", tmp_path / "mine"):
        with pytest.raises(ConfigError) as info:
            bnn_nas.train(config, model="resnet20", resume=True, run_dir=target)
        assert str(info.value) == f"no training to resume in {target}; drop --resume to start one"
    assert not (tmp_path / "nothere").exists()
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


STORED_SEARCHES = sorted(p.parent for p in (ROOT / "docs" / "results").rglob("trials.sqlite"))


def test_there_are_stored_searches():
    assert SEARCH_CIFAR in STORED_SEARCHES


@pytest.mark.parametrize("run", STORED_SEARCHES, ids=lambda p: p.name)
def test_every_search_in_docs_results_loads(run):
    results = bnn_nas.load_run(run)
    records, objectives = open_run(run)
    assert [t.id for t in results.trials] == [r.id for r in records] and records
    assert results.objectives == objectives
    if results.completed:
        assert results.best().id == choose(records, "accuracy", None, objectives)[0].id
        assert [t.id for t in results.pareto()] == [
            t.id for t in choose(records, "pareto", None, objectives)[1]]  # fmt: skip
    assert len(results.rows()) == len(records)
    json.dumps(results.to_dict())  # JSON data
