"""Learning curves of search trials: stored with each trial (store schema 3), curves.csv,
per-trial TensorBoard scalars read back with tensorboard's event reader, search.log, and a
resumed search keeping all of them."""

from __future__ import annotations

import csv
import sys

import pytest
from click.testing import CliRunner

from bnn_nas.cli import main
from bnn_nas.cli.terminal_log import TerminalLog
from bnn_nas.search.curves import TAGS
from bnn_nas.search.derive import open_run
from bnn_nas.search.store import STORE_FILE, MemoryStore, SQLiteStore
from bnn_nas.search.trials import CURVE_FIELDS, CurvePoint, Proposal, TrialResult
from bnn_nas.space.genotype import parse_genotype
from tests.test_tensorboard import GENOTYPE

CONFIG = """\
seed: 5
device: cpu
search_space:
  steps: 2
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3, bireal_conv_3x3_skip_connect]
  network: {cells: 3, channels: 4, stem_multiplier: 2}
data: {name: cifar10_sample, valid_fraction: 0.2, search_train_size: 200, search_valid_size: 100}
train: {epochs: 2, batch_size: 50, lr: 0.005, eval_batch_size: 100}
search: {controller: random, budget: 2}
"""


def search(tmp_path, *flags: str):
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    args = ["search", "--config", str(config), "--run-dir", str(tmp_path / "run"), *flags]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result


def curves_csv(run) -> list[dict[str, str]]:
    with (run / "curves.csv").open() as handle:
        return list(csv.DictReader(handle))


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}  # fmt: skip


def check_files_match_the_store(run, *, boards: set[int]) -> None:
    records, _ = open_run(run)
    rows = iter(curves_csv(run))
    for record in records:
        curve = record.result.curve
        assert [p.epoch for p in curve] == [0, 1]  # train.epochs: 2
        # scored once, after the last epoch: its eval is the trial's result
        assert curve[0].eval_acc is None and curve[-1].eval_acc == record.result["accuracy"]
        assert curve[-1].eval_loss == record.result["loss"]
        assert curve[-1].train_loss == record.result["train_loss"]
        assert curve[0].lr == 0.005 and all(p.seconds > 0 for p in curve)
        for point in curve:  # curves.csv: the store's values, to the last digit
            row = next(rows)
            assert int(row["trial"]) == record.id
            for name in CURVE_FIELDS:
                value = getattr(point, name)
                assert row[name] == ("" if value is None else repr(value)), name
        folder = run / "tensorboard" / f"trial-{record.id}"
        assert folder.is_dir() == (record.id in boards)
        if record.id in boards:
            seen = scalars(folder)
            assert set(seen) == set(TAGS.values())
            for name, tag in TAGS.items():
                expected = [(p.epoch, getattr(p, name)) for p in curve
                            if getattr(p, name) is not None]  # fmt: skip
                assert [s for s, _ in seen[tag]] == [s for s, _ in expected], tag
                assert [v for _, v in seen[tag]] == pytest.approx(
                    [v for _, v in expected], rel=1e-6), tag  # fmt: skip
    assert next(rows, None) is None
    assert not list((run / "tensorboard").glob(".*")) if boards else True


def test_a_search_stores_curves_and_writes_csv_tensorboard_and_log(tmp_path):
    pytest.importorskip("tensorboard")
    result = search(tmp_path, "--tensorboard")
    run = tmp_path / "run"
    assert SQLiteStore(run / STORE_FILE, read_only=True).get_meta("schema_version") == 4
    check_files_match_the_store(run, boards={1, 2})
    log = (run / "search.log").read_text().splitlines()
    assert log[0].endswith(f"bnn-nas search --config {tmp_path / 'c.yaml'} --run-dir {run} "
                           "--tensorboard") and log[0].startswith("=== ")  # fmt: skip
    # what the terminal shows: stdout's lines (precision, trials, summary), stderr's bar
    assert [line for line in log[1:] if "%|" not in line] == result.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in log[2:4]] == ["trial", "trial"]
    (bar,) = [line for line in log if "%|" in line]  # the bar once, as it ended
    assert bar.startswith("100%|") and "2/2" in bar and "\r" not in bar
    assert log[-2].startswith("2 trials done, 0 failed")


def test_a_resumed_search_keeps_the_curves_and_fills_in_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    search(tmp_path)  # no --tensorboard: curves.csv only
    run = tmp_path / "run"
    before = open_run(run)[0]
    check_files_match_the_store(run, boards=set())
    assert not (run / "tensorboard").exists()
    search(tmp_path, "--budget", "3", "--tensorboard")  # a resume may turn it on
    after = open_run(run)[0]
    assert [r.result for r in after[:2]] == [r.result for r in before]  # curves kept
    check_files_match_the_store(run, boards={1, 2, 3})  # the earlier trials' boards too
    log = (run / "search.log").read_text()
    assert log.count("=== ") == 2 and "resuming" in log and "3 trials done" in log


def test_an_error_that_ends_the_search_is_in_the_log(tmp_path, monkeypatch):
    from bnn_nas.errors import ConfigError

    def broken(*args, **kwargs):
        raise ConfigError("executor.type: no such thing here")

    monkeypatch.setattr("bnn_nas.search.engine.make_executor", broken)
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    args = ["search", "--config", str(config), "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    log = (tmp_path / "run" / "search.log").read_text().splitlines()
    assert log[-1] == "bnn-nas: error: executor.type: no such thing here"
    assert log[-1] == result.stderr.strip().splitlines()[-1]

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("bnn_nas.search.engine.make_executor", bug)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    log = (tmp_path / "run" / "search.log").read_text()
    assert "Traceback (most recent call last)" in log and "ZeroDivisionError: a bug" in log


def test_ctrl_c_leaves_its_resume_hint_in_the_log(tmp_path, monkeypatch):
    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bnn_nas.search.loop.SearchRun.run", stop)
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    args = ["search", "--config", str(config), "--run-dir", str(tmp_path / "run"),
            "--tensorboard"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130
    hint = result.stderr.strip().splitlines()[-1]
    assert hint.startswith("bnn-nas: interrupted; ") and hint.endswith("--tensorboard")
    assert (tmp_path / "run" / "search.log").read_text().splitlines()[-1] == hint


def test_the_log_keeps_what_a_terminal_shows(tmp_path, capsys):
    with TerminalLog(tmp_path / "x.log", "title"):
        sys.stderr.write("10%|#  |\r20%|##  |")
        sys.stderr.write("\r30%|###|\n")
        print("\x1b[A\x1b[2Kplain \x1b[31mred\x1b[0m")
        sys.stdout.write("long text\rshort\n   \n")
        for i in range(5000):  # a bar redrawn for hours: one line's worth is kept
            sys.stdout.write(f"\r{i:5d} of 5000")
        assert len(sys.stdout._text) == len("4999 of 5000") + 1
        sys.stdout.write("\nab\rX")
        sys.stdout.write("Y, no newline")
    lines = (tmp_path / "x.log").read_text().splitlines()
    assert lines[0].startswith("=== ") and lines[0].endswith(" title")
    # as a terminal shows it: a shorter redraw leaves the longer line's end standing
    assert lines[1:] == ["30%|###||", "plain red", "shorttext", " 4999 of 5000",
                         "XY, no newline"]
    assert capsys.readouterr().err == "10%|#  |\r20%|##  |\r30%|###|\n"  # passed through


def test_without_tensorboard_installed_search_says_so_and_makes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["search", "--config", str(config), "--run-dir", str(run),
                                       "--tensorboard"])  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "train.tensorboard (--tensorboard)" in line and "bnn-nas[tensorboard]" in line
    assert not run.exists()


CURVE = (CurvePoint(0, 2.3, 0.1, None, None, 0.01, 1.5),
         CurvePoint(1, 2.0, 0.2, 2.1, 0.25, 0.005, 1.25))  # fmt: skip


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_both_stores_keep_a_curve(tmp_path, kind):
    store = SQLiteStore(tmp_path / STORE_FILE) if kind == "sqlite" else MemoryStore()
    (trial,) = store.add([Proposal(parse_genotype(GENOTYPE))])
    store.start(trial)
    result = TrialResult({"accuracy": 0.25, "ops": 1.0}, curve=CURVE)
    store.finish(trial, result)
    assert store.get(trial).result == result and store.trials()[0].result.curve == CURVE
    assert TrialResult.from_dict(result.to_message()) == result  # a worker's message
    assert result.to_dict() == {"accuracy": 0.25, "ops": 1.0}  # trials.csv: no curve
