"""Result files: written atomically, with the mode the user's umask gives new files."""

from __future__ import annotations

import os
import stat

import pytest

from bnn_nas.io import new_file_mode, process_umask, write_csv_atomic, write_text_atomic


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_follow_the_umask_not_mkstemps_0600(tmp_path, umask, mask):
    umask(mask)
    assert process_umask() == mask and new_file_mode() == 0o666 & ~mask
    write_text_atomic(tmp_path / "config.yaml", "seed: 1\n")
    write_csv_atomic(tmp_path / "trials.csv", ["id"], [{"id": 1}])
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives: the reference
    for name in ("config.yaml", "trials.csv"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~mask, name
    assert (tmp_path / "config.yaml").read_text() == "seed: 1\n"
    assert not list(tmp_path.glob("*.part"))
