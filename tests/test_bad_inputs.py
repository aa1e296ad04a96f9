"""Malformed inputs through every command: exit 2, one line on stderr, no traceback, and
nothing already on disk changes (every file under the test's world is hashed before and
after each case, and no file appears).

Each case is one row of ``CASES``: an id and the command line (``{w}`` is the world
folder, built once with run directories, configs, checkpoints, model files, genotype
files and plugins that are each wrong in one way).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sqlite3
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from bnn_nas.cli import main
from bnn_nas.export.fileformat import encode
from bnn_nas.rundir import creating, release_run_dir
from bnn_nas.search.store import SQLiteStore
from bnn_nas.search.trials import Proposal, TrialResult
from bnn_nas.space.genotype import parse_genotype
from bnn_nas.train.checkpoint import FORMAT, save_checkpoint

GENOTYPE = (
    "Genotype(normal=[('xnor_conv_3x3', 0), ('skip_connect', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3], reduce=[('max_pool_3x3', 0), "
    "('xnor_conv_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3])"
)
SPACE = """\
search_space:
  steps: 2
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3]
  network: {cells: 3, channels: 4, stem_multiplier: 1}
"""
OK = SPACE + """\
device: cpu
data: {name: cifar10_sample, valid_fraction: 0.2, search_train_size: 100, search_valid_size: 50}
train: {epochs: 1, batch_size: 50}
final: {epochs: 1, batch_size: 50}
search: {budget: 1}
"""
TRAIN_RUN = "device: cpu\nmodel: {type: resnet20}\nfinal: {epochs: 1, batch_size: 50}\n"

# config bodies that are each wrong in one way (appended to OK: a later key wins in YAML?
# no - PyYAML keeps the last duplicate, so each replaces one setting of OK)
BAD_CONFIGS = {
    "unknown_key": "serach: {budget: 2}\n",
    "unknown_nested_key": "train: {epoch: 2}\n",
    "wrong_type": "train: {epochs: two}\n",
    "float_for_int": "train: {epochs: 1.5}\n",
    "bool_for_int": "train: {batch_size: true}\n",
    "lr_negative": "train: {lr: -1}\n",
    "lr_zero": "train: {lr: 0}\n",
    "lr_nan": "train: {lr: .nan}\n",
    "lr_inf": "train: {lr: .inf}\n",
    "lr_string": "train: {lr: fast}\n",
    "label_smoothing_2": "train: {label_smoothing: 2}\n",
    "label_smoothing_negative": "train: {label_smoothing: -0.1}\n",
    "grad_clip_negative": "train: {grad_clip: -1}\n",
    "drop_path_2": "train: {drop_path: 2}\n",
    "warmup_negative": "train: {warmup_epochs: -1}\n",
    "warmup_longer": "train: {warmup_epochs: 9}\n",
    "momentum_1": "train: {momentum: 1.0}\n",
    "weight_decay_negative": "train: {weight_decay: -0.1}\n",
    "batch_zero": "train: {batch_size: 0}\n",
    "batch_larger_than_data": "train: {batch_size: 5000}\n",
    "epochs_negative": "train: {epochs: -3}\n",
    "optimizer_unknown": "train: {optimizer: lion}\n",
    "momentum_cycle_bad": "train: {momentum_cycle: [0.85, 1.5]}\n",
    "valid_size_negative": "data: {name: cifar10_sample, search_valid_size: -5}\n",
    "train_size_zero": "data: {name: cifar10_sample, search_train_size: 0}\n",
    "valid_fraction_0": "data: {name: cifar10_sample, valid_fraction: 0}\n",
    "valid_fraction_2": "data: {name: cifar10_sample, valid_fraction: 2}\n",
    "data_unknown": "data: {name: imagenet42}\n",
    "data_root_missing": "data: {name: image_folder, root: /nonexistent/images}\n",
    "data_cache_dir_wrong_set": "data: {name: cifar10_sample, cache_dir: /tmp/x}\n",
    "budget_zero": "search: {budget: 0}\n",
    "controller_unknown": "search: {controller: bayes}\n",
    "rung_train_size_over_split": "data: {name: cifar10_sample, valid_fraction: 0.2}\n"
    "search: {budget: 1, controller: successive_halving, rung_epochs: [1, 2], "
    "rung_train_size: [100, 1000000]}\n",
    "max_ops_negative": "search: {max_ops: -1}\n",
    "device_tpu": "device: tpu\n",
    "device_meta": "device: meta\n",
    "device_cuda_99": "device: cuda:99\n",
    "device_number": "device: 3\n",
    "executor_unknown": "executor: {type: slurm}\n",
    "executor_devices_bad": "executor: {type: processes, devices: [gpu9]}\n",
    "executor_devices_cuda": "executor: {type: processes, devices: ['cuda:7']}\n",
    "max_attempts_zero": "executor: {max_attempts: 0}\n",
    "seed_string": "seed: abc\n",
    "plugins_not_list": "plugins: 3\n",
    "plugin_missing": "plugins: [/nonexistent/plugin.py]\n",
    "space_unknown_op": "search_space: {ops: [skip_connect, xnor_resnet_blok]}\n",
    "space_steps_zero": "search_space: {steps: 0, ops: [skip_connect]}\n",
    "space_unknown_name": "search_space: no_such_space\n",
    "space_not_mapping": "search_space: [1, 2]\n",
    "section_not_mapping": "train: 5\n",
    "model_unknown": "model: {type: resnet9000}\n",
    "python_tag": "seed: !!python/object/apply:os.getcwd []\n",
}
RAW_CONFIGS = {
    "not_utf8": b"seed: \xff\xfe\n",
    "yaml_list": b"- a\n- b\n",
    "yaml_scalar": b"42\n",
    "yaml_syntax": b"train: {epochs: 1\n",
    "alias_bomb": (b"a: &a [x, x, x, x, x, x, x, x, x]\n"
                   + b"".join(b"%s: &%s [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n"
                              % ((c.encode(),) * 2 + (p.encode(),) * 9)
                              for p, c in zip("abcdefgh", "bcdefghi", strict=True))),
    "deep_nesting": b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "tabs": b"train:\n\tepochs: 1\n",
}


def digest(folder: Path) -> dict[str, str]:
    out = {}
    for root, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                out[str(path.relative_to(folder))] = "dir-or-link"
                continue
            if name == ".lock":
                continue  # holds the pid of the last holder
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def fake_result(i: int) -> TrialResult:
    return TrialResult(accuracy=0.1 * i, loss=1.0, train_loss=1.0, bops=1000 * i, flops=10,
                       ops=1e5 * i, binary_params=1, float_params=1, bytes=1.0,
                       train_seconds=0.1)  # fmt: skip


def make_bnn(path: Path, header: dict, tensors: dict | None = None) -> None:
    path.write_bytes(encode(header, tensors or {}))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("world")
    (w / "ok.yaml").write_text(OK)
    (w / "cfg").mkdir()
    for name, body in BAD_CONFIGS.items():
        (w / "cfg" / f"{name}.yaml").write_text(OK + body)
    for name, raw in RAW_CONFIGS.items():
        (w / "cfg" / f"{name}.yaml").write_bytes(raw)
    (w / "cfg" / "a_directory.yaml").mkdir()
    (w / "afile").write_text("just a file\n")

    # a search run with two finished trials
    with creating(w / "search", "search") as staging:
        store = SQLiteStore(staging / "trials.sqlite")
        store.set_meta("config", {})
        g = parse_genotype(GENOTYPE)
        store.add([Proposal(g, {"kind": "random"})])
        store.start(1)
        store.finish(1, fake_result(1))
        store.close()
        (staging / "config.yaml").write_text(OK)
    release_run_dir(w / "search")
    (w / "empty_run").mkdir()
    (w / "zero_store").mkdir()
    (w / "zero_store" / "trials.sqlite").write_bytes(b"")
    (w / "text_store").mkdir()
    (w / "text_store" / "trials.sqlite").write_text("hello\n")
    (w / "dir_store").mkdir()
    (w / "dir_store" / "trials.sqlite").mkdir()
    (w / "foreign").mkdir()
    db = sqlite3.connect(w / "foreign" / "trials.sqlite")
    db.execute("CREATE TABLE notes (x TEXT)")
    db.commit()
    db.close()
    (w / "no_trials").mkdir()  # a store with no finished trial
    SQLiteStore(w / "no_trials" / "trials.sqlite").close()

    # training runs whose checkpoints are each wrong in one way
    def train_run(name: str, checkpoint) -> Path:
        run = w / name
        run.mkdir()
        (run / "config.yaml").write_text(TRAIN_RUN)
        checkpoint(run / "checkpoint.pt")
        return run

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(w / "code-ran"),))

    good = {"model": {}, "optimizer": {}, "scheduler": {}, "rng": {}, "epoch": 0, "metrics": []}
    train_run("ck_garbage", lambda p: p.write_bytes(b"garbage" * 10))
    train_run("ck_empty", lambda p: p.write_bytes(b""))
    train_run("ck_payload", lambda p: torch.save({"format": FORMAT, "x": Payload()}, p))
    train_run("ck_foreign", lambda p: torch.save({"state_dict": {}}, p))
    train_run("ck_version", lambda p: torch.save({"format": FORMAT, "version": 99}, p))
    train_run("ck_missing_keys", lambda p: save_checkpoint(p, {"model": {}}))
    train_run("ck_no_classifier", lambda p: save_checkpoint(p, good))
    train_run("ck_wrong_shapes", lambda p: save_checkpoint(p, {**good, "model": {
        "classifier.weight": torch.zeros(10, 3), "classifier.bias": torch.zeros(10)}}))
    train_run("ck_epoch_text", lambda p: save_checkpoint(p, {**good, "epoch": "3"}))

    def flipped(p: Path) -> None:
        save_checkpoint(p, {**good, "model": {"w": torch.full((64,), 1.2345)}})
        raw = bytearray(p.read_bytes())
        raw[bytes(raw).index(torch.full((64,), 1.2345).numpy().tobytes()) + 7] ^= 0x10
        p.write_bytes(bytes(raw))

    train_run("ck_flipped", flipped)
    train_run("ck_truncated", lambda p: (save_checkpoint(p, good),
                                         p.write_bytes(p.read_bytes()[:200])))  # fmt: skip
    (w / "ck_dir").mkdir()
    (w / "ck_dir" / "config.yaml").write_text(TRAIN_RUN)
    (w / "ck_dir" / "checkpoint.pt").mkdir()
    (w / "ck_no_config").mkdir()
    save_checkpoint(w / "ck_no_config" / "checkpoint.pt", good)
    plugin_run = train_run("ck_plugins", lambda p: save_checkpoint(p, good))
    (plugin_run / "evil.py").write_text(f"import os\nos.mkdir({str(w / 'plugin-ran')!r})\n")
    (plugin_run / "config.yaml").write_text(TRAIN_RUN + f"plugins: [{plugin_run / 'evil.py'}]\n")

    # model files
    (w / "bnn").mkdir()
    (w / "bnn" / "empty.bnn").write_bytes(b"")
    (w / "bnn" / "text.bnn").write_text("not a model\n")
    arch = {"model": {"type": "resnet20"}, "num_classes": 10, "search_space": None,
            "genotype": None}  # fmt: skip
    good_header = {"format": "bnn-nas-packed", "architecture": arch,
                   "input": {"mean": [0.5] * 3, "std": [0.2] * 3, "classes": list("abcdefghij")}}
    make_bnn(w / "bnn" / "no_tensors.bnn", good_header)
    huge = {**good_header, "architecture": {**arch, "model": {"type": "cells", "cells": 8,
            "channels": 10**7}, "search_space": {"ops": ["xnor_conv_3x3"], "steps": 1},
            "genotype": "Genotype(normal=[('xnor_conv_3x3', 0), ('xnor_conv_3x3', 1)], "
            "normal_concat=[2], reduce=[('xnor_conv_3x3', 0), ('xnor_conv_3x3', 1)], "
            "reduce_concat=[2])"}}  # fmt: skip
    make_bnn(w / "bnn" / "huge.bnn", huge)
    make_bnn(w / "bnn" / "foreign_format.bnn", {"format": "other"})
    make_bnn(w / "bnn" / "bad_arch.bnn", {**good_header, "architecture": 5})
    make_bnn(w / "bnn" / "bad_input.bnn", {**good_header, "input": {"mean": "x"}})
    raw = bytearray((w / "bnn" / "no_tensors.bnn").read_bytes())
    (w / "bnn" / "truncated.bnn").write_bytes(bytes(raw[:-40]))
    flipped_bnn = bytearray(raw)
    flipped_bnn[40] ^= 1
    (w / "bnn" / "flipped.bnn").write_bytes(bytes(flipped_bnn))
    (w / "bnn" / "extra.bnn").write_bytes(bytes(raw) + b"\0")
    version = bytearray(raw)
    version[8] = 7
    (w / "bnn" / "version.bnn").write_bytes(bytes(version))

    # a valid model file (an untrained network: its packing, not its accuracy, matters)
    from bnn_nas.config import ModelConfig
    from bnn_nas.export.architecture import Architecture, InputSpec
    from bnn_nas.export.exporter import export_network

    arch_ok = Architecture(ModelConfig(type="resnet20"), 10)
    spec = InputSpec((0.5,) * 3, (0.25,) * 3, tuple(f"c{i}" for i in range(10)), 32, 32)
    export_network(arch_ok.build(), arch_ok, spec, w / "bnn" / "ok.bnn")
    (w / "images_wrong_class" / "dog").mkdir(parents=True)
    (w / "images_not_images").mkdir()
    (w / "images_not_images" / "a.png").write_text("not a png")
    (w / "images_no_files").mkdir()

    # genotype files
    (w / "geno").mkdir()
    (w / "geno" / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (w / "geno" / "list.json").write_text("[1, 2, 3]")
    (w / "geno" / "binary.txt").write_bytes(b"\xff\xfe\x00")
    (w / "geno" / "bad.yaml").write_text("genotype: [unclosed\n")
    (w / "geno" / "empty.txt").write_text("")
    (w / "geno" / "unknown_op.txt").write_text(GENOTYPE.replace("max_pool_3x3", "max_pool_9x9"))

    # plugins
    (w / "plugins").mkdir()
    (w / "plugins" / "exits.py").write_text("import sys\nsys.exit(0)\n")
    (w / "plugins" / "exits_1.py").write_text("raise SystemExit(1)\n")
    (w / "plugins" / "raises.py").write_text("raise RuntimeError('boom')\n")
    (w / "plugins" / "syntax.py").write_text("def broken(:\n")
    (w / "plugins" / "duplicate.py").write_text(
        "from bnn_nas import register_primitive\n"
        "@register_primitive('skip_connect')\ndef f(C_in, C_out, stride, **o):\n    pass\n"
    )

    (w / "plugins" / "nan_op.py").write_text(
        "import torch\nfrom bnn_nas import register_primitive\n"
        "class Nan(torch.nn.Module):\n"
        "    def __init__(self, c):\n        super().__init__()\n"
        "        self.w = torch.nn.Parameter(torch.ones(1))\n"
        "    def forward(self, x):\n        return x * self.w * float('nan')\n"
        "@register_primitive('t_nan_op')\ndef nan_op(C_in, C_out, stride, **o):\n"
        "    assert C_in == C_out and stride == 1\n    return Nan(C_in)\n"
    )
    (w / "nan.yaml").write_text(
        f"device: cpu\nplugins: [{w / 'plugins' / 'nan_op.py'}]\n"
        "search_space: {steps: 1, normal_ops: [t_nan_op], reduce_ops: [max_pool_3x3],\n"
        "  network: {cells: 1, channels: 4, stem_multiplier: 1, reduction_cells: []}}\n"
        "data: {name: cifar10_sample}\nfinal: {epochs: 1, batch_size: 500}\n"
    )

    # an image folder with a symlink loop
    loop = w / "images_loop" / "train" / "cat"
    loop.mkdir(parents=True)
    (loop / "again").symlink_to(loop, target_is_directory=True)
    (w / "images_empty").mkdir()
    return w


G = GENOTYPE
S = ["search", "--config"]
NEW = "{w}/new_run"  # never created by a failing command
CASES: list[tuple[str, list[str]]] = [
    *[(f"search-{n}", [*S, f"{{w}}/cfg/{n}.yaml", "--run-dir", NEW])
      for n in (*BAD_CONFIGS, *RAW_CONFIGS, "a_directory")],
    *[(f"train-{n}", ["train", "--config", f"{{w}}/cfg/{n}.yaml", "--model", "resnet20",
                      "--run-dir", NEW])
      for n in ("unknown_key", "lr_nan", "label_smoothing_2", "drop_path_2", "not_utf8",
                "yaml_list", "alias_bomb", "device_tpu", "python_tag", "deep_nesting")],
    ("search-missing-config", [*S, "{w}/nope.yaml", "--run-dir", NEW]),
    ("search-no-config", ["search", "--run-dir", NEW]),
    ("search-run-dir-is-training", [*S, "{w}/ok.yaml", "--run-dir", "{w}/ck_no_classifier"]),
    ("search-run-dir-is-file", [*S, "{w}/ok.yaml", "--run-dir", "{w}/afile"]),
    ("search-run-dir-under-file", [*S, "{w}/ok.yaml", "--run-dir", "{w}/afile/run"]),
    ("search-run-dir-too-long", [*S, "{w}/ok.yaml", "--run-dir", "{w}/" + "x" * 300]),
    ("search-resume-nothing", [*S, "{w}/ok.yaml", "--run-dir", NEW, "--resume"]),
    ("search-resume-changed", [*S, "{w}/ok.yaml", "--run-dir", "{w}/search"]),
    ("search-foreign-store", [*S, "{w}/ok.yaml", "--run-dir", "{w}/foreign"]),
    ("search-budget-zero", [*S, "{w}/ok.yaml", "--run-dir", NEW, "--budget", "0"]),
    ("search-budget-hex", [*S, "{w}/ok.yaml", "--run-dir", NEW, "--budget", "0x10"]),
    ("search-set-no-equals", [*S, "{w}/ok.yaml", "--run-dir", NEW, "--set", "train.lr"]),
    ("search-set-empty-key", [*S, "{w}/ok.yaml", "--run-dir", NEW, "--set", "=3"]),
    ("search-set-bad-yaml", [*S, "{w}/ok.yaml", "--run-dir", NEW, "--set", "train.lr=[1"]),
    ("search-set-unknown", [*S, "{w}/ok.yaml", "--run-dir", NEW, "--set", "train.lrr=1"]),
    ("search-set-huge", [*S, "{w}/ok.yaml", "--run-dir", NEW, "--set", "train.lr=" + "9" * 5000]),
    ("search-plugin-exits", [*S, "{w}/ok.yaml", "--run-dir", NEW, "--plugin",
                             "{w}/plugins/exits.py"]),
    ("search-unknown-option", [*S, "{w}/ok.yaml", "--run-dir", NEW, "--budgett", "3"]),
    ("derive-run-dir-option", ["derive", "--run-dir", "{w}/search"]),
    ("export-run-dir-option", ["export", "--run-dir", "{w}/ck_no_classifier", "-o", "{w}/m.bnn"]),
    ("train-neither", ["train", "--config", "{w}/ok.yaml", "--run-dir", NEW]),
    ("train-both", ["train", "--config", "{w}/ok.yaml", "--model", "resnet20", "--genotype", G,
                    "--run-dir", NEW]),
    ("train-genotype-malformed", ["train", "--config", "{w}/ok.yaml", "--genotype",
                                  "Genotype(normal=[('x', 0)", "--run-dir", NEW]),
    ("train-genotype-huge-int", ["train", "--config", "{w}/ok.yaml", "--genotype",
                                 G.replace("1)", "9" * 5000 + ")", 1), "--run-dir", NEW]),
    ("train-genotype-negative", ["train", "--config", "{w}/ok.yaml", "--genotype",
                                 G.replace("1)", "-1)", 1), "--run-dir", NEW]),
    ("train-genotype-call", ["train", "--config", "{w}/ok.yaml", "--genotype",
                             "__import__('os').system('true')", "--run-dir", NEW]),
    *[(f"train-genotype-file-{n}", ["train", "--config", "{w}/ok.yaml", "--genotype",
                                    f"{{w}}/geno/{n}", "--run-dir", NEW])
      for n in ("deep.json", "list.json", "binary.txt", "bad.yaml", "empty.txt",
                "unknown_op.txt", "missing.yaml")],
    ("train-run-dir-is-search", ["train", "--config", "{w}/ok.yaml", "--model", "resnet20",
                                 "--run-dir", "{w}/search"]),
    ("train-run-dir-under-file", ["train", "--config", "{w}/ok.yaml", "--model", "resnet20",
                                  "--run-dir", "{w}/afile/x"]),
    ("train-epochs-zero", ["train", "--config", "{w}/ok.yaml", "--model", "resnet20",
                           "--epochs", "0", "--run-dir", NEW]),
    ("train-model-unknown", ["train", "--config", "{w}/ok.yaml", "--model", "resnet9000",
                             "--run-dir", NEW]),
    ("train-no-resume-over-checkpoint", ["train", "--config", "{w}/ck_no_classifier/config.yaml",
                                         "--model", "resnet20", "--run-dir",
                                         "{w}/ck_no_classifier"]),
    *[(f"train-resume-{n}", ["train", "--config", f"{{w}}/{n}/config.yaml", "--model",
                             "resnet20", "--run-dir", f"{{w}}/{n}", "--resume"])
      for n in ("ck_garbage", "ck_empty", "ck_payload", "ck_foreign", "ck_version",
                "ck_missing_keys", "ck_no_classifier", "ck_wrong_shapes", "ck_epoch_text",
                "ck_flipped", "ck_truncated", "ck_dir", "ck_plugins")],
    ("train-resume-nothing", ["train", "--config", "{w}/ok.yaml", "--model", "resnet20",
                              "--run-dir", NEW, "--resume"]),
    ("train-resume-not-a-run", ["train", "--config", "{w}/ok.yaml", "--model", "resnet20",
                                "--run-dir", "{w}/plugins", "--resume"]),
    ("train-resume-other-settings", ["train", "--config", "{w}/ok.yaml", "--model", "resnet20",
                                     "--run-dir", "{w}/ck_no_classifier", "--resume"]),
    ("train-loss-becomes-nan", ["train", "--config", "{w}/nan.yaml", "--genotype",
                                "Genotype(normal=[('t_nan_op', 0), ('t_nan_op', 1)], "
                                "normal_concat=[2], reduce=[('max_pool_3x3', 0), "
                                "('max_pool_3x3', 1)], reduce_concat=[2])", "--run-dir", NEW]),
    ("train-image-folder-loop", ["train", "--config", "{w}/ok.yaml", "--model", "resnet20",
                                 "--set", "data.name=image_folder", "--set",
                                 "data.root={w}/images_loop", "--run-dir", NEW]),
    ("train-image-folder-empty", ["train", "--config", "{w}/ok.yaml", "--model", "resnet20",
                                  "--set", "data.name=image_folder", "--set",
                                  "data.root={w}/images_empty", "--run-dir", NEW]),
    *[(f"{c}-{n}", [c, f"{{w}}/{n}"])
      for c in ("status", "derive", "plot")
      for n in ("nope", "empty_run", "zero_store", "text_store", "dir_store", "foreign", "afile")],
    ("derive-no-finished-trial", ["derive", "{w}/no_trials", "-o", "{w}/out.yaml"]),
    ("derive-max-ops-too-low", ["derive", "{w}/search", "--max-ops", "1", "-o", "{w}/o.yaml"]),
    ("derive-max-ops-too-low-suffixed", ["derive", "{w}/search", "--max-ops", "99.9k", "-o",
                                         "{w}/o.yaml"]),
    ("derive-max-ops-not-a-count", ["derive", "{w}/search", "--max-ops", "2.2MB"]),
    ("derive-by-unknown", ["derive", "{w}/search", "--by", "luck"]),
    ("derive-top-zero", ["derive", "{w}/search", "--top", "0"]),
    ("derive-output-under-file", ["derive", "{w}/search", "-o", "{w}/afile/g.yaml"]),
    ("status-no-argument", ["status"]),
    *[(f"export-{n}", ["export", f"{{w}}/{n}", "-o", "{w}/out.bnn"])
      for n in ("nope", "empty_run", "search", "ck_garbage", "ck_empty", "ck_payload",
                "ck_foreign", "ck_version", "ck_missing_keys", "ck_no_classifier",
                "ck_wrong_shapes", "ck_flipped", "ck_truncated", "ck_dir", "ck_no_config",
                "ck_plugins")],
    ("export-checkpoint-file", ["export", "{w}/ck_garbage/checkpoint.pt", "-o", "{w}/o.bnn"]),
    ("export-mean-only", ["export", "{w}/ck_no_classifier", "--mean", "0.5,0.5,0.5"]),
    ("export-mean-text", ["export", "{w}/ck_no_classifier", "--mean", "a,b", "--std", "1,1"]),
    *[(f"infer-{n}", ["infer", f"{{w}}/bnn/{n}.bnn", "--dataset", "cifar10_sample"])
      for n in ("empty", "text", "no_tensors", "huge", "foreign_format", "bad_arch",
                "bad_input", "truncated", "flipped", "extra", "version", "missing")],
    ("infer-neither", ["infer", "{w}/bnn/no_tensors.bnn"]),
    ("infer-both", ["infer", "{w}/bnn/no_tensors.bnn", "--images", "{w}", "--dataset",
                    "cifar10_sample"]),
    ("infer-limit-zero", ["infer", "{w}/bnn/no_tensors.bnn", "--dataset", "cifar10_sample",
                          "--limit", "0"]),
    ("infer-threads-zero", ["infer", "{w}/bnn/no_tensors.bnn", "--dataset", "cifar10_sample",
                            "--threads", "0"]),
    ("infer-batch-text", ["infer", "{w}/bnn/no_tensors.bnn", "--dataset", "cifar10_sample",
                          "--batch-size", "many"]),
    ("infer-images-missing", ["infer", "{w}/bnn/no_tensors.bnn", "--images", "{w}/nope"]),
    ("infer-dataset-unknown", ["infer", "{w}/bnn/no_tensors.bnn", "--dataset", "mnist"]),
    *[(f"infer-ok-model-{n}", ["infer", "{w}/bnn/ok.bnn", "--images", f"{{w}}/{n}"])
      for n in ("nope", "images_wrong_class", "images_not_images", "images_no_files",
                "images_loop", "afile")],
    ("infer-ok-model-output-under-file", ["infer", "{w}/bnn/ok.bnn", "--dataset",
                                          "cifar10_sample", "--limit", "2", "-o",
                                          "{w}/afile/p.csv"]),
    ("infer-ok-model-folder-as-dataset", ["infer", "{w}/bnn/ok.bnn", "--dataset",
                                          "image_folder", "--data-root", "{w}/images_empty"]),
    ("infer-ok-model-cifar-missing", ["infer", "{w}/bnn/ok.bnn", "--dataset", "cifar10",
                                      "--data-root", "{w}/nope"]),
    ("show-malformed", ["show", "Genotype(normal=[("]),
    ("show-huge-int", ["show", G.replace("1)", "9" * 5000 + ")", 1)]),
    ("show-deep-json", ["show", "{w}/geno/deep.json"]),
    ("show-output-under-file", ["show", G, "-o", "{w}/afile/cell.png"]),
    ("profile-image-size-zero", ["profile", G, "--image-size", "0"]),
    ("profile-image-size-negative", ["profile", G, "--image-size", "-3"]),
    ("profile-neither", ["profile"]),
    ("profile-bad-config", ["profile", G, "--config", "{w}/cfg/not_utf8.yaml"]),
    *[(f"primitives-plugin-{n}", ["primitives", "--plugin", f"{{w}}/plugins/{n}.py"])
      for n in ("exits", "exits_1", "raises", "syntax", "duplicate", "missing")],
    ("primitives-plugin-module-missing", ["primitives", "--plugin", "no_such_module_xyz"]),
    ("unknown-command", ["serach"]),
    ("no-such-option", ["--frobnicate"]),
]


def shown_lines(stderr: str) -> list[str]:
    """The lines a terminal shows: a progress bar redraws itself after carriage returns,
    and one erased at the end leaves only blanks."""
    shown = (line.rsplit("\r", 1)[-1].strip() for line in stderr.split("\n"))
    return [line for line in shown if line]


@pytest.fixture
def isolated(world, monkeypatch, clean_registry):
    monkeypatch.chdir(world)  # a default run directory would appear here (and be caught)
    return world


@pytest.mark.parametrize(("case", "argv"), CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(isolated, case, argv):
    w = isolated
    before = digest(w)
    args = [a.replace("{w}", str(w)) for a in argv]
    result = CliRunner().invoke(main, args)
    lines = shown_lines(result.stderr)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("bnn-nas: error: "), result.stderr
    assert "Traceback" not in result.output
    assert len(lines[0]) < 1500, "an error message echoed a huge value"
    assert digest(w) == before, "a failing command changed or created files"
    assert not (w / "code-ran").exists() and not (w / "plugin-ran").exists()


def test_run_dir_as_an_option_of_a_command_that_takes_it_as_argument(world):
    """search and train take --run-dir; derive, status, plot and export take the directory
    as their argument: the option is answered with the corrected command, which runs."""
    run = str(world / "search")
    result = CliRunner().invoke(main, ["status", "--format", "csv", "--run-dir", run])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        "bnn-nas: error: `bnn-nas status` takes the run directory as its argument, not "
        f"--run-dir: bnn-nas status {shlex.quote(run)} --format csv"
    )
    fixed = shlex.split(line.split("not --run-dir: ", 1)[1])
    assert CliRunner().invoke(main, fixed[1:]).exit_code == 0
    equals = CliRunner().invoke(main, ["derive", f"--run-dir={run}", "--top", "1"])
    assert equals.stderr.strip().endswith(f"bnn-nas derive {shlex.quote(run)} --top 1")
    other = CliRunner().invoke(main, ["derive", "--rund", run])  # another option: click's line
    assert "No such option '--rund'" in other.stderr and other.exit_code == 2


def test_max_ops_takes_the_counts_the_commands_print(world, tmp_path):
    """derive --max-ops 100k (as status prints OPs) is 100,000; a bad value names the forms."""
    run = str(world / "search")
    for limit in ("100k", "0.1M", "100000", "1e5"):
        out = tmp_path / f"{limit}.yaml"
        result = CliRunner().invoke(main, ["derive", run, "--max-ops", limit, "-o", str(out)])
        assert result.exit_code == 0, (limit, result.output)
        assert "max_ops=100000" in out.read_text()
    bad = CliRunner().invoke(main, ["derive", run, "--max-ops", "2.2MB"])
    (line,) = bad.stderr.strip().splitlines()
    assert "'2.2MB' is not a count" in line and "k, M, G or T" in line and "2.2M" in line


def test_the_table_is_large():
    assert len(CASES) >= 200
    assert len({c for c, _ in CASES}) == len(CASES)
    json.dumps(CASES)  # plain data, listed in the README's count


def test_an_unexpected_error_is_one_line_naming_the_command_and_debug_shows_it(
    world, monkeypatch
):
    def broken(run_dir):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr("bnn_nas.search.derive.open_run_config", broken)  # what status reads
    result = CliRunner().invoke(main, ["status", str(world / "search")])
    (line,) = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and "`bnn-nas status` failed unexpectedly" in line
    assert "RuntimeError: a bug" in line and "--debug" in line
    debug = CliRunner().invoke(main, ["status", str(world / "search"), "--debug"])
    assert isinstance(debug.exception, RuntimeError)  # the traceback is there to see
