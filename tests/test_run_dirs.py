"""Run directories: one process at a time, the right kind, born whole; stores opened
read-only by the commands that only read."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnn_nas.cli import main
from bnn_nas.errors import CheckpointError, ConfigError
from bnn_nas.rundir import (
    LOCK,
    MARKER,
    RunDirBusyError,
    check_run_dir,
    creating,
    lock_run_dir,
    release_run_dir,
    remove_stale_parts,
    remove_stale_staging,
    run_kind,
)
from bnn_nas.search.store import SQLiteStore
from bnn_nas.search.trials import Proposal
from bnn_nas.space.genotype import Genotype

G1 = Genotype([("a", 0), ("b", 1)], [2], [("c", 0), ("d", 1)], [2])

HOLD = """
import sys
from bnn_nas.rundir import lock_run_dir
lock_run_dir(sys.argv[1])
print("held", flush=True)
sys.stdin.read()
"""


def digest(folder: Path) -> str:
    """Hash of every file's path and bytes under ``folder`` (the lock file's pid aside)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != LOCK):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def test_a_locked_run_directory_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirBusyError, match=f"in use by bnn-nas process {holder.pid}"):
            lock_run_dir(run)
    finally:
        holder.stdin.close()
        holder.wait()
    lock_run_dir(run)  # the holder is gone, and so is its lock
    lock_run_dir(run)  # this process holds it already: fine
    release_run_dir(run)


def test_kinds_are_told_apart_and_a_file_is_no_run_dir(tmp_path):
    assert run_kind(tmp_path) is None and not check_run_dir(tmp_path / "new", "search", "search")
    (tmp_path / "trials.sqlite").write_bytes(b"")
    assert run_kind(tmp_path) == "search"
    with pytest.raises(ConfigError, match="holds a search run, not a training"):
        check_run_dir(tmp_path, "train", "train")
    training = tmp_path / "t"
    training.mkdir()
    (training / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="holds a training run, not a search"):
        check_run_dir(training, "search", "search")
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_run_dir(afile, "search", "search")
    with pytest.raises(ConfigError, match="is a file"):
        check_run_dir(afile / "below", "search", "search")


def test_creation_is_atomic_and_leaves_nothing_on_failure(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError), creating(run, "search") as staging:
        (staging / "half").write_text("x")
        raise RuntimeError("killed half-way")
    assert list(tmp_path.iterdir()) == []
    with creating(run, "train") as staging:
        (staging / "config.yaml").write_text("x")
        assert not run.exists()
    assert run_kind(run) == "train" and (run / "config.yaml").is_file() and (run / MARKER).is_file()
    release_run_dir(run)
    stale = tmp_path / ".run.abc.new"  # what a SIGKILL during creation leaves
    stale.mkdir()
    remove_stale_staging(run)
    assert not stale.exists()


def test_cli_refuses_a_run_dir_of_another_kind_without_writing(tmp_path):
    training = tmp_path / "training"
    training.mkdir()
    (training / "checkpoint.pt").write_bytes(b"not really")
    (training / "config.yaml").write_text("device: cpu\n")
    before = digest(training)
    config = tmp_path / "c.yaml"
    config.write_text("device: cpu\nsearch: {budget: 1}\n")
    result = CliRunner().invoke(main, ["search", "--config", str(config), "--run-dir",
                                       str(training)])  # fmt: skip
    assert result.exit_code == 2 and "holds a training run" in result.output
    assert digest(training) == before


def make_store(path: Path) -> None:
    store = SQLiteStore(path)
    store.set_meta("config", {})
    store.add([Proposal(G1)])
    store.close()


@pytest.mark.parametrize("command", ["status", "derive", "plot"])
def test_read_only_commands_refuse_foreign_and_empty_files_unchanged(tmp_path, command):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    db = sqlite3.connect(foreign / "trials.sqlite")
    db.execute("CREATE TABLE notes (x TEXT)")
    db.commit()
    db.close()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "trials.sqlite").write_bytes(b"")
    for run in (foreign, empty):
        before = digest(run)
        result = CliRunner().invoke(main, [command, str(run)])
        assert result.exit_code == 2 and "not a bnn-nas results store" in result.output
        assert digest(run) == before and sorted(p.name for p in run.iterdir()) == ["trials.sqlite"]


def test_the_read_only_store_writes_nothing(tmp_path):
    path = tmp_path / "trials.sqlite"
    make_store(path)
    before = digest(tmp_path)
    store = SQLiteStore(path, read_only=True)
    assert len(store.trials()) == 1
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.set_meta("x", 1)
    store.close()
    assert digest(tmp_path) == before


def test_read_only_media(tmp_path, monkeypatch):
    """A store that cannot be opened ``mode=ro`` (its folder is a read-only mount, so no
    ``-shm`` can be made) is read as it lies."""
    path = tmp_path / "trials.sqlite"
    make_store(path)
    Path(f"{path}-wal").write_bytes(b"")  # as if its writer had been cut off
    real = sqlite3.connect

    def no_shm(target, *args, **kwargs):
        if "mode=ro" in str(target):
            raise sqlite3.OperationalError("unable to open database file")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", no_shm)
    assert len(SQLiteStore(path, read_only=True).trials()) == 1


def test_a_foreign_sqlite_file_is_refused_read_write_too(tmp_path):
    path = tmp_path / "other.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (x TEXT)")
    db.commit()
    db.close()
    with pytest.raises(CheckpointError, match="not a bnn-nas results store"):
        SQLiteStore(path)
    db = sqlite3.connect(path)
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["notes"]
    db.close()


def test_temporary_files_of_cut_off_writes_are_removed(tmp_path):
    old = tmp_path / ".checkpoint.pt.abc123.part"
    old.write_bytes(b"half a checkpoint")
    os.utime(old, (1, 1))
    fresh = tmp_path / ".genotype.yaml.def456.part"  # a derive writing right now
    fresh.write_text("x")
    assert remove_stale_parts(tmp_path) == [old]
    assert not old.exists() and fresh.exists()


def test_an_existing_folder_becomes_a_run_keeping_what_it_holds(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with creating(empty, "search") as staging:
        (staging / "trials.sqlite").write_text("x")
    assert run_kind(empty) == "search"
    release_run_dir(empty)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's own file")
    with creating(mine, "train") as staging:
        (staging / "config.yaml").write_text("x")
    assert run_kind(mine) == "train" and (mine / "notes.txt").read_text() == "the user's own file"
    assert not list(tmp_path.glob(".*.new"))
    release_run_dir(mine)


def test_a_training_that_fails_at_once_leaves_a_users_folder_as_it_was(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    config = tmp_path / "c.yaml"
    config.write_text("device: cpu\nfinal: {epochs: 1, batch_size: 50, lr: .nan}\n")
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--model", "resnet20",
                                       "--run-dir", str(mine)])  # fmt: skip
    assert result.exit_code == 2 and "final.lr" in result.output
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
