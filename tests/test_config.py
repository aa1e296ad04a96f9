"""Config loading: strict keys and types, named in one-line errors; a lossless mapping form."""

from __future__ import annotations

import pytest
import yaml

from bnn_nas.config import Config, config_from_dict, config_to_dict, load_config
from bnn_nas.errors import ConfigError


def test_defaults_and_overrides():
    c = config_from_dict({"seed": 3, "train": {"epochs": 2, "lr": 1}, "plugins": ["a.py"]}, "x")
    assert c.seed == 3 and c.train.epochs == 2 and c.train.lr == 1.0
    assert isinstance(c.train.lr, float) and c.plugins == ("a.py",)
    assert c.search == Config().search
    assert config_from_dict(config_to_dict(c), "y") == c


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"trian": {}}, "cfg.yaml: unknown key trian; did you mean train?"),
        ({"train": {"epoch": 3}}, "cfg.yaml: unknown key train.epoch; did you mean train.epochs?"),
        ({"train": {"epochs": "3"}}, "cfg.yaml: train.epochs must be an integer, not '3'"),
        ({"train": {"epochs": 0}}, "cfg.yaml: train.epochs must be at least 1"),
        ({"train": {"bf16": 1}}, "cfg.yaml: train.bf16 must be true or false"),
        ({"search": {"controller": "rl"}}, "controller: unknown controller 'rl'; registered"),
        ({"search": {"controller": "evolutoin"}}, "did you mean evolution?"),
        ({"executor": {"type": "proceses"}}, "executor 'proceses'; did you mean processes?"),
        ({"data": {"name": "cifar"}}, "unknown dataset 'cifar'; did you mean cifar10"),
        ({"search": {"controller": "pareto", "temperature": 1}}, "unknown key search.temperature"),
        ({"search": {"eliminate": "best"}}, "search.eliminate is 'best'; choose one of oldest"),
        ({"data": []}, "cfg.yaml: data must be a mapping"),
        ({"plugins": "a.py"}, "cfg.yaml: plugins must be a list"),
        ({"seed": True}, "cfg.yaml: seed must be an integer"),
        (
            {"final": {"momentum_cycle": [0.85, 0.95, 0.9]}},
            "cfg.yaml: final.momentum_cycle=[0.85, 0.95, 0.9] must be two Adam beta1 values",
        ),
        ({"train": {"momentum_cycle": [0.85, 1.0]}}, "must be two Adam beta1 values in [0, 1)"),
        (
            {"train": {"optimizer": "sgd", "momentum_cycle": [0.85, 0.95]}},
            "cfg.yaml: train.momentum_cycle cycles Adam's beta1; set train.optimizer=adam",
        ),
        (
            {"final": {"epochs": 15, "warmup_epochs": 43}},
            "cfg.yaml: final.warmup_epochs=43 is longer than final.epochs=15; lower it",
        ),
    ],
)
def test_errors_name_key_and_file(data, expected):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data, "cfg.yaml")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML at line"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  epochs: 4\n")
    config = load_config(good)
    assert config.train.epochs == 4 and config.source == str(good)


def test_exponent_floats_that_pyyaml_reads_as_strings_are_numbers():
    # YAML 1.1 (PyYAML) wants a dot and a signed exponent: 1e-3 and 3.2e6 arrive as text
    data = yaml.safe_load("train: {lr: 1e-3}\nsearch: {max_ops: 3.2e6}")
    assert isinstance(data["train"]["lr"], str)
    config = config_from_dict(data, "t.yaml")
    assert config.train.lr == 1e-3 and config.search.max_ops == 3.2e6
    with pytest.raises(ConfigError, match=r"train\.lr must be a number, not '1e-3x'"):
        config_from_dict({"train": {"lr": "1e-3x"}}, "t.yaml")


def test_an_unknown_set_key_is_an_unknown_override_key_not_the_files(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train: {epochs: 2}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ("train.lr=0.01", "train.epoch=3"))
    message = str(err.value)
    assert message.startswith("--set 'train.epoch=3': unknown override key train.epoch; ")
    assert "close names: train.epochs" in message and str(path) not in message
    with pytest.raises(ConfigError, match=r"^--set 'trian.epochs=3': unknown override key "
                       r"trian; close names: train \(the config has: seed, "):  # fmt: skip
        load_config(path, ("trian.epochs=3",))
    # a bad value given by --set names the --set too; the file's own mistakes name the file
    with pytest.raises(ConfigError, match=r"^--set 'train.epochs=x': train.epochs must be an "):
        load_config(path, ("train.epochs=x",))
    path.write_text("train: {epoch: 2}\n")
    with pytest.raises(ConfigError, match=rf"^{path}: unknown key train.epoch; did you mean"):
        load_config(path, ("train.lr=0.01",))


def test_set_objectives_and_plugins_of_a_wrong_value_name_the_set_not_the_file(tmp_path):
    from bnn_nas.cli.options import load_run_config

    path = tmp_path / "cfg.yaml"
    path.write_text("train: {epochs: 2}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, ("search.objectives=[{name: acuracy}]",))
    assert str(err.value).startswith(
        "--set 'search.objectives=[{name: acuracy}]': search.objectives: unknown metric "
        "'acuracy'; did you mean accuracy?"
    )
    with pytest.raises(ConfigError) as err:  # read before the config is checked, by commands
        load_run_config(str(path), (), ("plugins=my_ops.py",))
    assert str(err.value) == (
        "--set 'plugins=my_ops.py': plugins must be a list, not 'my_ops.py'; write it in "
        "brackets, ['my_ops.py']"
    )
    path.write_text("plugins: my_ops.py\n")  # the file's own: the file is named
    with pytest.raises(ConfigError, match=rf"^{path}: plugins must be a list, not 'my_ops.py'"):
        load_run_config(str(path), (), ())


def test_count_fields_take_the_suffixes_commands_print(tmp_path):
    # search.max_ops and objective limits read 3.2M as --max-ops does (bnn_nas.units)
    path = tmp_path / "cfg.yaml"
    path.write_text(
        "search:\n  max_ops: 3.2M\n  objectives:\n    - {name: accuracy, limit: 0.5}\n"
        "    - {name: ops, direction: minimize, limit: 2.05M}\n"
        "    - {name: params, direction: minimize, limit: 98.3k}\n"
    )
    config = load_config(path)
    assert config.search.max_ops == 3.2e6 and isinstance(config.search.max_ops, float)
    assert [o.limit for o in config.search.objectives] == [0.5, 2.05e6, 98_300.0]
    assert load_config(path, ("search.max_ops=1.16G",)).search.max_ops == 1.16e9
    for plain in ("3200000", "3.2e6", "3.2e+6"):  # plain numbers as before
        assert load_config(path, (f"search.max_ops={plain}",)).search.max_ops == 3.2e6
    assert load_config(path, ("search.max_ops=null",)).search.max_ops is None
    # a bad value: one line naming the key and the forms, the file or the --set
    path.write_text("search: {max_ops: 3.2Q}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: search.max_ops: '3.2Q' is not a count; give a number, optionally with the "
        "suffix k, M, G or T as printed (2.2M, 98.3k, 2200000)"
    )
    with pytest.raises(ConfigError, match=r"^--set 'search.max_ops=lots': search.max_ops: "
                       r"'lots' is not a count; give a number"):  # fmt: skip
        load_config(path, ("search.max_ops=lots",))
    with pytest.raises(ConfigError, match=r"search.objectives\[0\].limit: '2x' is not a count"):
        config_from_dict({"search": {"objectives": [{"name": "ops", "limit": "2x"}]}}, "t.yaml")
    with pytest.raises(ConfigError, match=r"search.max_ops=-1000000.0 is out of range"):
        config_from_dict({"search": {"max_ops": "-1M"}}, "t.yaml")
    with pytest.raises(ConfigError, match=r"search.max_ops must be float or NoneType, not True"):
        config_from_dict({"search": {"max_ops": True}}, "t.yaml")
