"""The plugin workflow end to end: a config's plugin path is relative to the config file
and stored absolute, so search, derive, train, export and infer work from other
directories; `--plugin module` finds a module in the current directory; a `.bnn` whose
network uses a plugin's op names that plugin in one line when it is not loaded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bnn_nas.config import load_config, plugin_path
from tests.fixtures import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = (ROOT / "search_spaces" / "example_plugin.py").read_text()

CONFIG = """\
seed: 3
device: cpu
plugins: [ops/my_ops.py]
search_space:
  steps: 2
  ops: [skip_connect, xnor_sep_conv_3x3]
  network: {{cells: 3, channels: 4, stem_multiplier: 2}}
data: {{name: image_folder, root: {data}, valid_fraction: 0.3}}
train: {{epochs: 1, batch_size: 20, lr: 0.005, eval_batch_size: 60}}
search: {{controller: random, budget: 1}}
final: {{epochs: 1, batch_size: 20, lr: 0.005}}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bnn_nas.cli", *args], capture_output=True,
                          text=True, cwd=cwd)  # fmt: skip


def test_plugin_paths_are_relative_to_the_config_and_stored_absolute(tmp_path, monkeypatch):
    conf = tmp_path / "project" / "conf"
    (conf / "ops").mkdir(parents=True)
    (conf / "ops" / "my_ops.py").write_text("")
    (conf / "cfg.yaml").write_text("plugins: [ops/my_ops.py, some.module]\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(conf / "cfg.yaml")
    assert config.plugins == (str(conf / "ops" / "my_ops.py"), "some.module")
    # a --set plugin path is the user's own: relative to where the command runs, stored
    # absolute (a resume from another directory finds it); a module name stays as it is
    assert load_config(conf / "cfg.yaml", ("plugins=[x.py, ops/y.py, a.mod]",)).plugins == (
        str(tmp_path / "x.py"), str(tmp_path / "ops" / "y.py"), "a.mod")
    # older run configs stored paths relative to the directory the search ran in
    (tmp_path / "old.py").write_text("")
    assert plugin_path("old.py", conf) == str(tmp_path / "old.py")
    assert plugin_path("/abs/p.py", conf) == "/abs/p.py" and plugin_path("mod", conf) == "mod"


def test_a_set_plugin_is_stored_absolute_and_found_from_another_directory(tmp_path,
                                                                         monkeypatch):
    """`--set plugins=[ops.py]` names a file of the directory the command runs in; the
    config the run stores holds its absolute path, so a resume from elsewhere loads it."""
    import bnn_nas
    from bnn_nas.config import config_to_dict
    from bnn_nas.io import dump_yaml

    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    (here / "set_plugin_ops.py").write_text("LOADED = True\n")
    monkeypatch.chdir(here)
    config = bnn_nas.load_config(overrides=["plugins=[set_plugin_ops.py]"])
    assert config.plugins == (str(here / "set_plugin_ops.py"),)
    stored = tmp_path / "stored.yaml"
    stored.write_text(dump_yaml(config_to_dict(config)))
    monkeypatch.chdir(there)
    again = bnn_nas.load_config(stored, trust_run_plugins=True)
    assert again.plugins == (str(here / "set_plugin_ops.py"),)


@pytest.mark.slow
def test_a_plugin_relative_to_its_config_from_other_directories(tmp_path):
    data = make_image_folder(tmp_path / "data", train_per_class=10, test_per_class=3)
    conf = tmp_path / "project" / "conf"
    (conf / "ops").mkdir(parents=True)
    plugin = conf / "ops" / "my_ops.py"
    plugin.write_text(PLUGIN)
    (conf / "cfg.yaml").write_text(CONFIG.format(data=data))
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()

    searched = cli("search", "--config", "../project/conf/cfg.yaml", "--run-dir", "s", cwd=here)
    assert searched.returncode == 0, searched.stderr
    stored = yaml.safe_load((here / "s" / "config.yaml").read_text())
    assert stored["plugins"] == [str(plugin)]  # absolute: it works from anywhere
    derived = cli("derive", "s", cwd=here)
    assert derived.returncode == 0, derived.stderr
    hint = derived.stdout.strip().splitlines()[-1]
    assert hint.endswith(f"--plugin {plugin}"), hint

    run = here / "s"
    trained = cli("train", "--config", str(run / "config.yaml"), "--genotype",
                  str(run / "genotype.yaml"), "--plugin", str(plugin), "--run-dir", "t",
                  cwd=there)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    exported = cli("export", "t", "-o", "m.bnn", "--plugin", str(plugin), cwd=there)
    assert exported.returncode == 0, exported.stderr

    # without the plugin: one line naming it (the file's say-so imports nothing)
    missing = cli("infer", str(there / "m.bnn"), "--images", str(data / "test"), cwd=here)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert missing.stderr.strip() == (
        f"bnn-nas: error: {there / 'm.bnn'}: its network uses primitive xnor_sep_conv_3x3 "
        f"from plugin {plugin}, which is not loaded; pass --plugin {plugin}"
    )
    inferred = cli("infer", str(there / "m.bnn"), "--images", str(data / "test"),
                   "--plugin", str(plugin), cwd=here)  # fmt: skip
    assert inferred.returncode == 0, inferred.stderr
    assert "accuracy" in inferred.stdout


def test_plugin_module_in_the_current_directory(tmp_path):
    (tmp_path / "my_ops.py").write_text(PLUGIN)
    listed = cli("primitives", "xnor_sep*", "--plugin", "my_ops", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "xnor_sep_conv_3x3" in listed.stdout and str(tmp_path / "my_ops.py") in listed.stdout


def test_the_current_directory_is_on_the_import_path_only_while_the_plugin_loads(
    tmp_path, monkeypatch
):
    """After `--plugin my_ops`, a later import of a package that is not installed must not
    pick up a file of that name from wherever the command runs."""
    import importlib
    import sys

    from bnn_nas.primitives.plugins import load_plugin

    (tmp_path / "bnn_nas_cwd_plugin.py").write_text("LOADED = True\n")
    (tmp_path / "bnn_nas_cwd_stray.py").write_text("raise AssertionError('imported')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_plugin("bnn_nas_cwd_plugin").LOADED
    assert str(tmp_path) not in sys.path
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("bnn_nas_cwd_stray")


def test_a_run_that_stored_a_relative_plugin_path_resumes_from_where_it_ran(tmp_path,
                                                                           monkeypatch):
    """Runs made before plugin paths were stored absolute hold them as given (``--set
    plugins=[ops.py]``: relative to where the search ran); the same command from that
    directory now stores the absolute path, and the resume is not refused for it."""
    from bnn_nas.config import config_to_dict
    from bnn_nas.errors import ConfigError
    from bnn_nas.search.engine import check_resumable

    (tmp_path / "ops.py").write_text("")
    (tmp_path / "other.py").write_text("")
    (tmp_path / "c.yaml").write_text("seed: 1\n")
    monkeypatch.chdir(tmp_path)
    current = config_to_dict(load_config(tmp_path / "c.yaml", ("plugins=[ops.py]",)))
    assert current["plugins"] == [str(tmp_path / "ops.py")]
    stored = {**current, "plugins": ["ops.py"]}  # as the run stored it then
    check_resumable(stored, current, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"searched with plugins=\[.*other\.py'\]"):
        check_resumable({**current, "plugins": ["other.py"]}, current, tmp_path / "run")
