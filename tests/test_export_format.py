"""The .bnn container: round trip, and one-line errors for truncated, foreign, corrupt files."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bnn_nas.cli.export_commands import infer_command
from bnn_nas.config import ModelConfig
from bnn_nas.errors import CheckpointError
from bnn_nas.export import Architecture, InputSpec, export_network, load_packed, pack_model
from bnn_nas.export.fileformat import MAGIC, PRELUDE, decode, encode, read_bnn, write_bnn

SPEC = InputSpec((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), tuple(map(str, range(10))), 32, 32)


def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "a.weight_bits": rng.integers(0, 2**63, 7, dtype=np.uint64),
        "b.weight": rng.standard_normal((3, 5)).astype(np.float32),
        "c.count": np.array(4, dtype=np.int64),
        "d.flag": np.array([True, False]),
    }


def test_round_trip_keeps_header_and_tensors(tmp_path):
    path = tmp_path / "m.bnn"
    size = write_bnn(path, {"format": "x", "n": 3}, tensors())
    assert size == path.stat().st_size
    header, loaded = read_bnn(path)
    assert header == {"format": "x", "n": 3}
    for name, array in tensors().items():
        assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array)
    data = path.read_bytes()
    assert data[:8] == MAGIC and hashlib.sha256(data[:-32]).digest() == data[-32:]
    _, version, _, hlen, plen = PRELUDE.unpack_from(data)
    assert version == 1 and (PRELUDE.size + hlen) % 64 == 0  # tensors start 64-byte aligned
    assert size == PRELUDE.size + hlen + plen + 32


@pytest.mark.parametrize("cut", [0, 5, 31, 40, 200, -33, -1])
def test_truncated_files_are_rejected(tmp_path, cut):
    data = encode({"format": "x"}, tensors())
    with pytest.raises(CheckpointError, match=r"truncated|empty") as err:
        decode(data[:cut], "m.bnn")
    assert "\n" not in str(err.value) and "export" in str(err.value)


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n" + b"\0" * 100, b"PK\x03\x04 a zip, e.g. torch.save", b"hello world\n"],
)
def test_foreign_files_are_rejected(data):
    with pytest.raises(CheckpointError, match="not a bnn-nas model file"):
        decode(data, "m.bnn")


def test_corrupt_files_are_rejected():
    data = bytearray(encode({"format": "x"}, tensors()))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(CheckpointError, match="checksum"):
        decode(bytes(flipped), "m.bnn")
    with pytest.raises(CheckpointError, match="past its end"):
        decode(bytes(data) + b"\0", "m.bnn")
    newer = bytearray(data)
    struct.pack_into("<I", newer, 8, 99)
    with pytest.raises(CheckpointError, match="version 99"):
        decode(bytes(newer), "m.bnn")


def test_a_valid_checksum_over_a_bad_table_is_still_rejected():
    """The checksum catches damage, not a bad writer: the table is checked on its own."""
    data = encode({"format": "x"}, tensors())
    _, _, _, hlen, plen = PRELUDE.unpack_from(data)
    header = json.loads(data[PRELUDE.size : PRELUDE.size + hlen])
    header["tensors"][0]["offset"] = plen + 64
    text = json.dumps(header, separators=(",", ":")).encode().ljust(hlen)
    assert len(text) == hlen
    body = data[: PRELUDE.size] + text + data[PRELUDE.size + hlen : -32]
    with pytest.raises(CheckpointError, match="malformed header"):
        decode(body + hashlib.sha256(body).digest(), "m.bnn")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    arch = Architecture(ModelConfig(type="resnet20", family="bireal"), 10)
    path = tmp_path_factory.mktemp("export") / "r20.bnn"
    return export_network(arch.build(), arch, SPEC, path)


def test_loader_rejects_a_file_whose_layers_do_not_match(exported, tmp_path):
    header, arrays = read_bnn(exported.path)
    header["packed_layers"][0]["kernel"] = [5, 5]
    path = tmp_path / "edited.bnn"
    write_bnn(path, header, arrays)
    with pytest.raises(CheckpointError, match="network builders differ"):
        load_packed(path, native=False)
    header, arrays = read_bnn(exported.path)
    del arrays["classifier.weight"]
    write_bnn(path, header, arrays)
    with pytest.raises(CheckpointError, match="does not fit its network"):
        load_packed(path, native=False)
    header["format"] = "something-else"
    write_bnn(path, header, read_bnn(exported.path)[1])
    with pytest.raises(CheckpointError, match="not a packed bnn-nas model"):
        load_packed(path, native=False)


def test_infer_on_a_damaged_file_is_one_line_and_exit_2(exported, tmp_path):
    damaged = tmp_path / "damaged.bnn"
    damaged.write_bytes(exported.path.read_bytes()[:-100])
    result = CliRunner().invoke(
        infer_command, [str(damaged), "--dataset", "cifar10_sample", "--limit", "10"]
    )
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "truncated" in result.output
    missing = CliRunner().invoke(infer_command, [str(tmp_path / "none.bnn"), "--images", "."])
    assert missing.exit_code == 2 and "not found" in missing.output


DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("native", [True, False])
def test_a_file_of_the_previous_version_still_loads_and_computes_the_same(native):
    """format1_cells.bnn was written before grouped convs were packed: it holds its grouped
    conv as float weights, and the loader keeps that conv in torch as the file has it."""
    from bnn_nas.binary import BinaryConv2d

    engine = load_packed(DATA / "format1_cells.bnn", native=native)
    stored = np.load(DATA / "format1_cells.npz")
    reasons = {why for _, why in engine.header["skipped"]}
    assert len(engine.header["skipped"]) == 3 and all("groups=2" in r for r in reasons)
    kept = [m for m in engine.module.modules() if isinstance(m, BinaryConv2d)]
    assert len(kept) == 3 and all(m.groups == 2 for m in kept)
    assert all("groups" not in layer for layer in engine.header["packed_layers"])
    with torch.no_grad():
        logits = engine.logits(torch.from_numpy(stored["x"])).numpy()
    np.testing.assert_allclose(logits, stored["logits"], rtol=1e-5, atol=1e-5)


def test_a_grouped_network_round_trips(tmp_path):
    """Grouped packed layers record their groups, and the file loads into the network
    that the builders pack the same way."""
    from bnn_nas.config import ModelConfig as Model
    from bnn_nas.space.genotype import parse_genotype
    from bnn_nas.space.search_space import search_space_from_dict

    space = search_space_from_dict(
        {"steps": 2, "ops": ["skip_connect", {"name": "xnor_conv_3x3", "groups": 4,
                                              "shuffle": True}],
         "network": {"cells": 3, "channels": 8, "stem_multiplier": 2}}, "grouped",
    )  # fmt: skip
    genotype = parse_genotype(
        "Genotype(normal=[('xnor_conv_3x3', 0), ('skip_connect', 1), ('xnor_conv_3x3', 2), "
        "('xnor_conv_3x3', 0)], normal_concat=[2, 3], reduce=[('xnor_conv_3x3', 0), "
        "('xnor_conv_3x3', 1), ('skip_connect', 2), ('xnor_conv_3x3', 1)], reduce_concat=[2, 3])"
    )
    arch = Architecture(Model(), 10, space, genotype)
    model = arch.build()
    summary = export_network(model, arch, SPEC, tmp_path / "g.bnn")
    header, tensors = read_bnn(summary.path)
    grouped = [layer for layer in header["packed_layers"] if layer.get("groups") == 4]
    assert len(grouped) == 9 == summary.packed_layers and not summary.skipped  # 3 per cell
    weights = {k: v for k, v in tensors.items() if k.endswith(".weight_bits")}
    assert all(v.dtype == np.uint64 for v in weights.values())
    assert sum(v.nbytes for v in weights.values()) == summary.binary_weight_bytes
    engine = load_packed(summary.path)
    assert [layer.to_dict() for layer in pack_model(arch.build()).layers] == grouped
    assert engine.header["packed_layers"] == grouped
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(engine.logits(x), model(x), rtol=1e-5, atol=1e-4)
