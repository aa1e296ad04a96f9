"""Extension points: a controller, an executor and a dataset from one plugin file each run a
search through the command line; unknown names are one-line errors with suggestions."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bnn_nas.config import config_from_dict, config_to_dict
from bnn_nas.errors import ConfigError, DataError
from bnn_nas.extensions import (
    CONTROLLERS,
    DATASETS,
    EXECUTORS,
    get_baseline,
    get_controller,
    get_dataset,
    get_executor,
    list_baselines,
    list_controllers,
    list_executors,
    list_families,
    register_controller,
)
from bnn_nas.registry import Registry

CONTROLLER_PLUGIN = '''
from dataclasses import dataclass

from bnn_nas.extensions import register_controller
from bnn_nas.search.controllers import Controller
from bnn_nas.search.trials import Proposal


@dataclass(frozen=True)
class FirstSettings:
    offset: int = 0  # a setting of this controller only, read from the search section


@register_controller("t_first", settings=FirstSettings)
class First(Controller):
    """Random samples, but records its setting in each proposal's origin."""

    def _propose(self, rng):
        proposal = self._fresh_random(rng)
        return Proposal(proposal.genotype, {"kind": f"first+{self.settings.offset}"})
'''

EXECUTOR_PLUGIN = '''
from dataclasses import dataclass

from bnn_nas.extensions import register_executor
from bnn_nas.search.executors import LocalExecutor


@dataclass(frozen=True)
class InlineSettings:
    note: str = "inline"


@register_executor("t_inline", settings=InlineSettings)
def make(config, evaluator, plugins, settings):
    """The local executor, under another name, with a setting of its own."""
    assert settings.note == "from-config"
    return LocalExecutor(evaluator)
'''

DATASET_PLUGIN = '''
from dataclasses import dataclass

import numpy as np

from bnn_nas.data import Dataset, ImageSet
from bnn_nas.extensions import register_dataset


@dataclass(frozen=True)
class NoiseSettings:
    images: int = 60


@register_dataset("t_noise", settings=NoiseSettings)
def load(settings):
    """Random 8x8 images of two classes."""
    rng = np.random.default_rng(0)

    def part(n):
        images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
        return ImageSet(images, np.arange(n) % 2, ("a", "b"))

    return Dataset(part(settings.images), part(20), "t_noise")
'''

CONFIG = """\
seed: 1
device: cpu
plugins: [{dataset}]
search_space:
  steps: 1
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3]
  network: {{cells: 2, channels: 4, stem_multiplier: 1}}
data: {{name: t_noise, images: 40, valid_fraction: 0.5}}
train: {{epochs: 1, batch_size: 10, eval_batch_size: 20}}
search: {{controller: t_first, budget: 3, offset: 7}}
executor: {{type: t_inline, note: from-config}}
"""


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bnn_nas.cli", *args], capture_output=True,
                          text=True, cwd=cwd)  # fmt: skip


@pytest.mark.slow
def test_plugin_controller_executor_and_dataset_run_a_search(tmp_path):
    for name, text in [("t_controller", CONTROLLER_PLUGIN), ("t_executor", EXECUTOR_PLUGIN),
                       ("t_dataset", DATASET_PLUGIN)]:  # fmt: skip
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(dataset=tmp_path / "t_dataset.py"))
    run = tmp_path / "run"
    plugins = ["--plugin", str(tmp_path / "t_controller.py"),
               "--plugin", str(tmp_path / "t_executor.py")]  # fmt: skip
    result = cli("search", "--config", str(config), "--run-dir", str(run), *plugins)
    assert result.returncode == 0, result.stderr
    assert "3 trials done, 0 failed" in result.stdout
    assert result.stdout.count("first+7") == 3  # the controller's own setting reached it
    saved = (run / "config.yaml").read_text()
    assert "offset: 7" in saved and "note: from-config" in saved and "images: 40" in saved
    status = cli("status", str(run))
    assert status.returncode == 0 and "3 done" in status.stdout
    # without the controller's plugin, its name is a one-line error naming the fix
    result = cli("search", "--config", str(config), "--run-dir", str(tmp_path / "other"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unknown controller 't_first'" in result.stderr
    assert "--plugin" in result.stderr and not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    ("get", "name", "expected"),
    [
        (get_controller, "evolutoin", "unknown controller 'evolutoin'; did you mean evolution?"),
        (get_executor, "stream", "unknown executor 'stream'; did you mean streams?"),
        (get_dataset, "cifar_10", "unknown dataset 'cifar_10'; did you mean cifar10"),
        (get_baseline, "resnet19", "unknown baseline model 'resnet19'; did you mean resnet18"),
    ],
)
def test_unknown_names_are_one_line_with_suggestions(get, name, expected):
    with pytest.raises((ConfigError, DataError)) as err:
        get(name)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_cli_rejects_an_unknown_baseline_in_one_line(tmp_path):
    result = cli("profile", "--model", "resnet19")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "unknown baseline model 'resnet19'; did you mean resnet18" in result.stderr


def test_registries_list_the_built_ins_and_refuse_duplicates():
    assert [e.name for e in list_controllers()] == ["evolution", "optuna", "pareto", "random",
                                                    "successive_halving"]
    assert [e.name for e in list_executors()] == ["local", "processes", "ray", "streams"]
    assert {e.name for e in list_baselines()} >= {"resnet18", "resnet20", "vgg_small"}
    assert {e.name for e in list_families()} >= {"xnor", "bireal"}
    assert [e.name for e in CONTROLLERS.list("*o*")] == ["evolution", "optuna", "pareto", "random"]
    assert all(e.source == "builtin" for r in (CONTROLLERS, EXECUTORS, DATASETS) for e in r.list())
    assert get_controller("evolution").setting_names() == ("population", "sample_size", "eliminate")
    with pytest.raises(ConfigError, match=r"'random' is already registered.*override=True"):
        register_controller("random")(object)
    with pytest.raises(ConfigError, match="invalid"):
        register_controller("no spaces")


def test_a_registry_is_generic():
    @dataclasses.dataclass(frozen=True)
    class Settings:
        size: int = 2

    reg: Registry[object] = Registry("widget", key="x.widget")
    thing = reg.register("w_10", settings=Settings)(lambda: 1)
    reg.register("w_2")(lambda: 2)
    assert reg.get("w_10").obj is thing and reg.get("w_10").default_settings() == Settings()
    assert reg.names() == ["w_2", "w_10"]  # natural order
    with pytest.raises(ConfigError, match="did you mean w_10"):
        reg.get("w_1O")

    @dataclasses.dataclass(frozen=True)
    class Required:
        size: int

    with pytest.raises(ConfigError, match="needs a default"):
        reg.register("w_3", settings=Required)


def test_section_settings_round_trip_and_entry_checks():
    config = config_from_dict(
        {"search": {"controller": "evolution", "population": 4, "sample_size": 2}}, "c.yaml"
    )
    assert config_from_dict(config_to_dict(config), "again") == config
    with pytest.raises(ConfigError, match=r"c.yaml: search.sample_size 5 exceeds"):
        config_from_dict({"search": {"population": 4, "sample_size": 5}}, "c.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml: dataset 'cifar10' needs data.root"):
        config_from_dict({"data": {"name": "cifar10"}}, "c.yaml")


@pytest.mark.parametrize(
    "module",
    ["bnn_nas.search.processes", "bnn_nas.search.streams", "bnn_nas.search.ray_executor",
     "bnn_nas.space.baselines", "bnn_nas.data"],
)  # fmt: skip
def test_any_built_in_module_may_be_imported_first(module):
    code = (f"import {module}; from bnn_nas.extensions import REGISTRIES; "
            "print([len(r.names()) for r in REGISTRIES])")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    from bnn_nas.extensions import REGISTRIES

    assert result.stdout.strip() == str([len(r.names()) for r in REGISTRIES])
