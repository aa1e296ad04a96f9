"""The registry's contract and plugin loading from files, modules and entry points."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner
from torch import nn

from bnn_nas.cli import main
from bnn_nas.errors import PluginError, PrimitiveError
from bnn_nas.primitives import (
    REGISTRY,
    get_primitive,
    list_primitives,
    load_entry_point_plugins,
    load_plugin,
    register_primitive,
)
from bnn_nas.primitives import plugins as plugin_module
from tests.primitive_checks import check_primitive

PLUGIN = textwrap.dedent(
    '''
    from bnn_nas import register_primitive
    from bnn_nas.binary import BinaryConv2d
    from torch import nn

    @register_primitive("{name}", family="custom")
    def factory(C_in, C_out, stride, **options):
        """A plugin binary 5x5 conv with BN."""
        return nn.Sequential(
            nn.BatchNorm2d(C_in),
            BinaryConv2d(C_in, C_out, 5, stride=stride, padding=2, **options),
        )
    '''
)


def test_decorator_returns_the_function_and_duplicates_are_errors(clean_registry):
    def factory(C_in, C_out, stride, **options):
        """Doc line."""

    assert register_primitive("t_dup")(factory) is factory
    with pytest.raises(PrimitiveError, match=r"'t_dup' is already registered.*override=True"):
        register_primitive("t_dup")(factory)
    with pytest.raises(PrimitiveError, match="already registered"):
        register_primitive("xnor_conv_3x3")(factory)

    def replacement(C_in, C_out, stride, **options):
        """Replaced."""

    register_primitive("t_dup", override=True)(replacement)
    assert get_primitive("t_dup").factory is replacement
    assert get_primitive("t_dup").doc == "Replaced."


def test_a_factory_of_the_wrong_shape_is_a_one_line_error_naming_the_fix(clean_registry):
    """A plugin author's mistakes are theirs to fix, not bnn-nas bugs to report: a factory
    that cannot take (C_in, C_out, stride) is refused when it registers, one that returns
    no module when it builds."""

    def two_args(C_in, C_out):
        return nn.Identity()

    with pytest.raises(PrimitiveError) as err:
        register_primitive("t_two_args")(two_args)
    assert str(err.value) == (
        "primitive 't_two_args': its factory two_args(C_in, C_out) cannot be called as "
        "(C_in, C_out, stride, **options); give it that signature"
    )
    assert "t_two_args" not in REGISTRY

    @register_primitive("t_returns_none")
    def returns_none(C_in, C_out, stride, **options):
        nn.Identity()  # forgot to return it

    with pytest.raises(PrimitiveError, match=r"^primitive 't_returns_none' \(.*\) returned "
                       r"NoneType, not an nn.Module; its factory must return the module"):
        get_primitive("t_returns_none").build(4, 4, 1)

    @register_primitive("t_any_args")  # *args / defaults bind as well
    def any_args(*args, width=None, **options):
        return nn.Identity()

    assert isinstance(get_primitive("t_any_args").build(4, 4, 2), nn.Identity)


def test_unknown_name_suggests_close_names():
    with pytest.raises(PrimitiveError) as err:
        get_primitive("xnor_resnet_blok")
    message = str(err.value)
    assert "unknown primitive 'xnor_resnet_blok'" in message
    assert "xnor_resnet_block" in message and "\n" not in message


def test_list_primitives_wildcards_and_natural_order(clean_registry):
    for name in ("t_conv_10x10", "t_conv_2x2", "t_conv_1x1"):
        register_primitive(name)(lambda C_in, C_out, stride, **o: None)
    assert [s.name for s in list_primitives("t_conv_*")] == [
        "t_conv_1x1", "t_conv_2x2", "t_conv_10x10",
    ]  # fmt: skip
    assert all(s.name.startswith("bireal_") for s in list_primitives("bireal_*"))
    assert list_primitives("nothing*") == []
    with pytest.raises(PrimitiveError, match="invalid"):
        register_primitive("bad name")


def test_plugin_file_registers_and_passes_the_generic_checks(tmp_path, clean_registry):
    path = tmp_path / "my_plugin.py"
    path.write_text(PLUGIN.format(name="t_plugin_conv_5x5"))
    load_plugin(str(path))
    spec = get_primitive("t_plugin_conv_5x5")
    assert spec.source == str(path) and spec.doc == "A plugin binary 5x5 conv with BN."
    load_plugin(str(path))  # loading again is a no-op, not a duplicate error
    for stride in (1, 2):
        check_primitive(spec, 5, 10, stride)


def test_plugin_module_name(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "t_plugin_pkg.py").write_text(PLUGIN.format(name="t_module_conv"))
    monkeypatch.syspath_prepend(str(tmp_path))
    load_plugin("t_plugin_pkg")
    assert "t_module_conv" in REGISTRY
    with pytest.raises(PluginError, match=r"plugin module no_such_plugin_mod could not be"):
        load_plugin("no_such_plugin_mod")


def test_broken_plugin_files_give_one_line_errors(tmp_path, clean_registry):
    bad_syntax = tmp_path / "bad_syntax.py"
    bad_syntax.write_text("def broken(:\n")
    raising = tmp_path / "raising.py"
    raising.write_text("raise RuntimeError('boom\\nsecond line')\n")
    dup = tmp_path / "dup.py"
    dup.write_text(PLUGIN.format(name="xnor_conv_3x3"))
    for path, pattern in [
        (bad_syntax, "SyntaxError"),
        (raising, "RuntimeError: boom"),
        (dup, "'xnor_conv_3x3' is already registered"),
    ]:
        with pytest.raises(PluginError) as err:
            load_plugin(str(path))
        assert str(path) in str(err.value) and pattern in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(PluginError, match="does not exist"):
        load_plugin(str(tmp_path / "missing.py"))


def test_entry_point_plugins(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "t_ep_plugin.py").write_text(PLUGIN.format(name="t_entry_point_conv"))
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = importlib.metadata.EntryPoint(
        name="demo", value="t_ep_plugin", group=plugin_module.ENTRY_POINT_GROUP
    )

    def fake_entry_points(group=None):
        return [entry] if group == plugin_module.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(plugin_module.importlib.metadata, "entry_points", fake_entry_points)
    assert load_entry_point_plugins() == ["demo"]
    assert "t_entry_point_conv" in REGISTRY
    assert load_entry_point_plugins() == []  # once only


def test_cli_lists_plugin_primitive(tmp_path, clean_registry):
    path = tmp_path / "cli_plugin.py"
    path.write_text(PLUGIN.format(name="t_cli_conv"))
    result = CliRunner().invoke(main, ["primitives", "--plugin", str(path)])
    assert result.exit_code == 0, result.output
    line = next(row for row in result.output.splitlines() if row.startswith("t_cli_conv"))
    assert "custom" in line and str(path) in line and "A plugin binary 5x5 conv" in line
    assert "xnor_resnet_block" in result.output and "bireal_nin" in result.output


def test_cli_primitives_of_a_bare_name_that_matches_none_suggests_wildcards():
    result = CliRunner().invoke(main, ["primitives", "xnor_conv"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "bnn-nas: error: no primitive is named 'xnor_conv'; to list those containing it: "
        "bnn-nas primitives '*xnor_conv*'"
    )
    exact = CliRunner().invoke(main, ["primitives", "xnor_nin"])
    assert exact.exit_code == 0 and exact.output.splitlines()[1].startswith("xnor_nin ")
    none = CliRunner().invoke(main, ["primitives", "zz*"])
    assert none.exit_code == 2 and "no primitive matches 'zz*'" in none.stderr


def test_cli_broken_plugin_exit_code_2_one_line(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import not_a_real_module_xyz\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bnn_nas.cli", "primitives", "--plugin", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and "ModuleNotFoundError" in lines[0]
    assert "Traceback" not in proc.stderr


def test_cli_version():
    from bnn_nas import __version__

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
