"""Genotype text/mapping round trips, canonical hash, validation errors and drawings."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import networkx as nx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bnn_nas.errors import BnnNasError, GenotypeError
from bnn_nas.space import drawing
from bnn_nas.space.drawing import cell_graph, render, to_dot
from bnn_nas.space.genotype import (
    Genotype,
    format_genotype,
    genotype_hash,
    load_genotype,
    parse_genotype,
    validate_genotype,
)
from tests.conftest import DARTS_V2

# Pinned: the hash keys the results store, so a format change must not slip through.
DARTS_V2_HASH = "74c3ae1b21286f80"
DARTS_OPS = {"sep_conv_3x3", "dil_conv_3x3", "skip_connect", "max_pool_3x3"}
OPS = ["xnor_conv_3x3", "bireal_conv_3x3", "skip_connect", "max_pool_3x3", "avg_pool_3x3"]
SMALL = Genotype(
    normal=[("xnor_conv_3x3", 0), ("skip_connect", 1), ("bireal_conv_3x3", 0), ("max_pool_3x3", 2)],
    normal_concat=[2, 3],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1)],
    reduce_concat=[2],
)


@st.composite
def cells(draw: st.DrawFn, steps: int) -> tuple[list[tuple[str, int]], list[int]]:
    edges = [
        (draw(st.sampled_from(OPS)), draw(st.integers(0, step + 1)))
        for step in range(steps)
        for _ in range(2)
    ]
    concat = draw(st.lists(st.integers(2, steps + 1), min_size=1, unique=True))
    return edges, concat


@st.composite
def genotypes(draw: st.DrawFn) -> Genotype:
    steps = draw(st.integers(1, 5))
    normal, normal_concat = draw(cells(steps))
    reduce, reduce_concat = draw(cells(steps))
    return Genotype(normal, normal_concat, reduce, reduce_concat)


def one_line(message: str) -> str:
    assert "\n" not in message and message == message.strip() and message
    return message


def error(call, *args, **kwargs) -> str:
    with pytest.raises(GenotypeError) as info:
        call(*args, **kwargs)
    return one_line(str(info.value))


# --- text and mapping forms ---------------------------------------------------------------


def test_darts_v2_parses_and_round_trips_identically() -> None:
    g = parse_genotype(DARTS_V2)
    assert g.normal[7] == ("dil_conv_3x3", 2)
    assert g.reduce_concat == (2, 3, 4, 5)
    assert g.normal_steps == g.reduce_steps == 4
    assert g.ops() == DARTS_OPS
    assert format_genotype(g) == str(g) == repr(g) == DARTS_V2
    validate_genotype(g, normal_ops=DARTS_OPS, reduce_ops=DARTS_OPS, steps=4)


def test_darts_v2_round_trips_through_yaml_and_json() -> None:
    g = parse_genotype(DARTS_V2)
    mapping = g.to_dict()
    assert mapping["normal"][0] == ["sep_conv_3x3", 0]
    assert mapping["normal_concat"] == [2, 3, 4, 5]
    assert Genotype.from_dict(yaml.safe_load(yaml.safe_dump(mapping))) == g
    assert Genotype.from_dict(json.loads(json.dumps(mapping))) == g


def test_range_concat_prefixes_and_comments_are_accepted() -> None:
    g = parse_genotype(DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)"))
    assert g.normal_concat == (2, 3, 4, 5)
    assert str(g) == DARTS_V2
    for text in (
        "  genotypes." + DARTS_V2 + "\n",
        "DARTS_V2 = " + DARTS_V2,
        "# searched on CIFAR-10\n" + DARTS_V2 + "  # second order",
    ):
        assert str(parse_genotype(text)) == DARTS_V2


def test_mapping_edges_and_list_inputs_are_normalised() -> None:
    g = Genotype.from_dict(
        {
            "normal": [{"op": "skip_connect", "input": 0}, ["max_pool_3x3", 1]],
            "normal_concat": [2],
            "reduce": [("max_pool_3x3", 0), ("max_pool_3x3", 1)],
            "reduce_concat": (2,),
        }
    )
    assert g.normal == (("skip_connect", 0), ("max_pool_3x3", 1))
    assert g == Genotype([["skip_connect", 0], ["max_pool_3x3", 1]], [2], g.reduce, [2])
    assert hash(g) == hash(Genotype(g.normal, g.normal_concat, g.reduce, g.reduce_concat))
    assert g.cell("reduce") == (g.reduce, (2,))


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(genotypes())
def test_text_and_mapping_round_trip(g: Genotype) -> None:
    assert parse_genotype(format_genotype(g)) == g
    assert Genotype.from_dict(g.to_dict()) == g
    assert Genotype.from_dict(json.loads(json.dumps(g.to_dict()))) == g


@settings(max_examples=150, deadline=None)
@given(genotypes())
def test_random_genotypes_validate(g: Genotype) -> None:
    validate_genotype(g, normal_ops=OPS, reduce_ops=OPS, steps=g.normal_steps)


@settings(max_examples=150, deadline=None)
@given(genotypes(), st.data())
def test_hash_ignores_edge_order_within_a_step_and_concat_order(
    g: Genotype, data: st.DataObject
) -> None:
    def swapped(edges: tuple) -> list:
        out = list(edges)
        for i in range(0, len(out), 2):
            if data.draw(st.booleans()):
                out[i], out[i + 1] = out[i + 1], out[i]
        return out

    other = Genotype(
        swapped(g.normal),
        data.draw(st.permutations(g.normal_concat)),
        swapped(g.reduce),
        data.draw(st.permutations(g.reduce_concat)),
    )
    assert other.hash == g.hash == genotype_hash(g)
    assert other.canonical() == g.canonical()
    assert g.canonical().canonical() == g.canonical()
    assert len(g.hash) == 16 and int(g.hash, 16) >= 0


@settings(max_examples=150, deadline=None)
@given(genotypes(), st.data())
def test_changing_one_op_changes_the_hash(g: Genotype, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["normal", "reduce"]))
    edges = list(getattr(g, kind))
    i = data.draw(st.integers(0, len(edges) - 1))
    op, index = edges[i]
    edges[i] = (data.draw(st.sampled_from([o for o in OPS if o != op])), index)
    changed = Genotype(**{**g.to_dict(), kind: edges})
    assert changed != g
    assert changed.hash != g.hash


def test_hash_is_pinned_and_distinguishes_inputs() -> None:
    g = parse_genotype(DARTS_V2)
    assert g.hash == DARTS_V2_HASH
    moved = Genotype((*g.normal[:-1], ("dil_conv_3x3", 3)), g.normal_concat, g.reduce, [2, 3, 4])
    assert moved.hash != g.hash
    fewer = Genotype(g.normal, [2, 3, 4], g.reduce, g.reduce_concat)
    assert fewer.hash != g.hash


# --- errors ---------------------------------------------------------------------------------

GOOD_REST = (
    "normal_concat=[2], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2]"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Genotype(normal=[('a', 0)", "text is not valid: '[' was never closed at column 17"),
        ("Genotype(normal=[1 2])", "at column 18"),
        ("[('sep_conv_3x3', 0)]", "must be one Genotype(...) call, found [('sep_conv_3x3', 0)]"),
        ("Cell(normal=[])", "must be one Genotype(...) call, found Cell(normal=[])"),
        ("", "genotype text is empty"),
        (
            f"Genotype(normal=[('a', 0), ('b', 1)], {GOOD_REST.replace('reduce_concat', 'x')})",
            "unknown key 'x'",
        ),
        (f"Genotype(normal=[('a', 0), ('b', 1)], {GOOD_REST}, extra=1)", "unknown key 'extra'"),
        (
            f"Genotype(normal=[('a', 0), ('b', 1)], {GOOD_REST}, reduce_concats=[2])",
            "unknown key 'reduce_concats' (did you mean 'reduce_concat'",
        ),
        (f"Genotype({GOOD_REST})", "missing normal=..."),
        (f"Genotype(normal=[('a', 0), ('b', 1)], {GOOD_REST}, normal=[])", "normal= is given"),
        (f"Genotype([('a', 0)], {GOOD_REST})", "positional arguments are not accepted"),
        (f"Genotype(normal=[('a', 0), 'b'], {GOOD_REST})", "normal edge 1 'b': must be a pair"),
        (
            f"Genotype(normal=[('a', 0), ('b', 1, 2)], {GOOD_REST})",
            "normal edge 1 ('b', 1, 2): must be a pair",
        ),
        (
            f"Genotype(normal=[('a', 0), ('sep_conv_3x3', 'x')], {GOOD_REST})",
            "genotype text: normal edge 1 ('sep_conv_3x3', 'x'): "
            "input must be an integer node index",
        ),
        (
            f"Genotype(normal=[('a', 0), ('b', True)], {GOOD_REST})",
            "normal edge 1 ('b', True): input must be an integer",
        ),
        (f"Genotype(normal=[(0, 0), ('b', 1)], {GOOD_REST})", "normal edge 0 (0, 0): op must be"),
        (
            f"Genotype(normal=[('a', 0), (x, 1)], {GOOD_REST})",
            "normal edge 1 (x, 1): must be a literal pair",
        ),
        (
            "Genotype(normal=[('a', 0), ('b', 1)], normal_concat='23', reduce=[], "
            "reduce_concat=[])",
            "normal_concat must be a list of node indices",
        ),
        (
            "Genotype(normal=[], normal_concat=range(2, 'x'), reduce=[], reduce_concat=[])",
            "normal_concat=range(2, 'x'): write range(start, stop) with integers",
        ),
        (
            "Genotype(normal=[], normal_concat=[2, 3.5], reduce=[], reduce_concat=[])",
            "normal_concat item 1 3.5: must be an integer node index",
        ),
    ],
)
def test_malformed_text_names_the_place(text: str, expected: str) -> None:
    assert expected in error(parse_genotype, text)


@pytest.mark.parametrize(
    "payload",
    [
        "__import__('pathlib').Path({p!r}).touch()",
        "Genotype(normal=__import__('pathlib').Path({p!r}).touch(), normal_concat=[2], "
        "reduce=[], reduce_concat=[])",
        "Genotype(normal=[(__import__('pathlib').Path({p!r}).touch(), 0)], normal_concat=[2], "
        "reduce=[], reduce_concat=[])",
        "Genotype(normal=[], normal_concat=range(__import__('pathlib').Path({p!r}).touch()), "
        "reduce=[], reduce_concat=[])",
    ],
)
def test_code_in_text_is_rejected_without_running(payload: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    message = error(parse_genotype, payload.format(p=str(marker)))
    assert "__import__" in message
    assert not marker.exists()


def test_darts_text_is_not_evaluated_even_when_it_names_os_system() -> None:
    message = error(parse_genotype, "__import__('os').system('x')")
    assert message.startswith("genotype text must be one Genotype(...) call")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([["a", 0]], "genotype mapping must be a mapping with keys normal"),
        ({**SMALL.to_dict(), "steps": 2}, "unknown key 'steps'"),
        ({k: v for k, v in SMALL.to_dict().items() if k != "reduce"}, "missing key 'reduce'"),
        (
            {**SMALL.to_dict(), "normal": [["a", 0], {"op": "b", "inp": 1}]},
            "normal edge 1 {'op': 'b', 'inp': 1}: unknown key 'inp'",
        ),
        (
            {**SMALL.to_dict(), "normal": [["a", 0], {"op": "b"}]},
            "normal edge 1 {'op': 'b'}: missing key 'input'",
        ),
        ({**SMALL.to_dict(), "reduce": [["a", 0], ["b"]]}, "reduce edge 1 ['b']: must be a pair"),
        ({**SMALL.to_dict(), "reduce": {"a": 0}}, "reduce must be a list of ('op', input) pairs"),
    ],
)
def test_bad_mapping_names_the_key_or_edge(data: object, expected: str) -> None:
    assert expected in error(Genotype.from_dict, data)


def test_constructor_rejects_bad_types() -> None:
    assert "Genotype: normal edge 0 ('a', False)" in error(Genotype, [("a", False)], [2], [], [2])
    assert "Genotype: reduce_concat item 0 '2'" in error(Genotype, [], [2], [], ["2"])


def _with(cell: str, edges: list | None = None, concat: list | None = None) -> Genotype:
    mapping = SMALL.to_dict()
    if edges is not None:
        mapping[cell] = edges
    if concat is not None:
        mapping[f"{cell}_concat"] = concat
    return Genotype.from_dict(mapping)


@pytest.mark.parametrize(
    ("g", "kwargs", "expected"),
    [
        (
            _with("reduce", [("max_pool_3x3", 0)] * 5 + [("max_pool_3x3", 5)], [2]),
            {},
            "reduce cell, step 2, edge 1 ('max_pool_3x3', 5): input 5 is not an earlier node "
            "(allowed 0..3)",
        ),
        (
            _with("normal", [("skip_connect", 0), ("skip_connect", -1)]),
            {},
            "normal cell, step 0, edge 1 ('skip_connect', -1): input -1 is not an earlier node",
        ),
        (
            _with("normal", [("skip_connect", 0), ("skip_connect", 2)]),
            {},
            "normal cell, step 0, edge 1 ('skip_connect', 2): input 2 is not an earlier node "
            "(allowed 0..1)",
        ),
        (
            SMALL,
            {"normal_ops": OPS[:2]},
            "normal cell, step 0, edge 1 ('skip_connect', 1): unknown op 'skip_connect'; allowed: "
            "bireal_conv_3x3, xnor_conv_3x3",
        ),
        (
            _with("reduce", [("max_pool_3x3", 0), ("max_pol_3x3", 1)]),
            {"reduce_ops": OPS},
            "reduce cell, step 0, edge 1 ('max_pol_3x3', 1): unknown op 'max_pol_3x3' "
            "(did you mean 'max_pool_3x3'",
        ),
        (_with("normal", SMALL.normal[:3]), {}, "normal cell has 3 edges, an odd number"),
        (_with("normal", []), {}, "normal cell has no edges"),
        (SMALL, {"steps": 2}, "reduce cell has 1 steps (2 edges) but the search space has 2"),
        (_with("normal", concat=[]), {}, "normal cell: concat is empty"),
        (
            _with("normal", concat=[2, 4]),
            {},
            "normal cell: concat node 4 is out of range; allowed are the intermediate nodes 2..3",
        ),
        (_with("reduce", concat=[1]), {}, "reduce cell: concat node 1 is out of range"),
        (_with("normal", concat=[3, 2, 3]), {}, "normal cell: concat lists node 3 twice"),
    ],
)
def test_validation_names_cell_step_and_edge(g: Genotype, kwargs: dict, expected: str) -> None:
    assert expected in error(validate_genotype, g, **kwargs)


def test_validation_accepts_the_small_genotype_and_checks_each_cell_separately() -> None:
    validate_genotype(SMALL, normal_ops=OPS, reduce_ops=["max_pool_3x3"], steps=None)
    assert "reduce cell" in error(validate_genotype, SMALL, reduce_ops=["skip_connect"])


# --- files ----------------------------------------------------------------------------------


def test_load_from_yaml_json_and_genotype_key(tmp_path: Path) -> None:
    g = parse_genotype(DARTS_V2)
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(g.to_dict()))
    (tmp_path / "g.json").write_text(json.dumps(g.to_dict()))
    derived = {"genotype": DARTS_V2, "hash": g.hash, "accuracy": 0.91}
    (tmp_path / "derived.yml").write_text(yaml.safe_dump(derived))
    (tmp_path / "mapped.json").write_text(json.dumps({"genotype": g.to_dict()}))
    for name in ("g.yaml", "g.json", "derived.yml", "mapped.json"):
        assert load_genotype(str(tmp_path / name)) == g, name
    assert load_genotype(tmp_path / "g.yaml") == g


def test_load_from_text_file_and_from_text(tmp_path: Path) -> None:
    path = tmp_path / "arch.txt"
    path.write_text("# DARTS V2, from genotypes.py\n\nDARTS_V2 = " + DARTS_V2 + "\n# end\n")
    assert load_genotype(str(path)) == parse_genotype(DARTS_V2)
    assert load_genotype(DARTS_V2) == parse_genotype(DARTS_V2)


def test_load_errors_are_one_line_and_name_the_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    assert error(load_genotype, missing).startswith(f"no such file: {missing};")
    assert "is a directory" in error(load_genotype, str(tmp_path))
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("normal: [\n  - a\nreduce: {")
    assert error(load_genotype, str(bad_yaml)).startswith(f"{bad_yaml}: not valid YAML:")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"normal": ')
    assert error(load_genotype, str(bad_json)).startswith(f"{bad_json}: not valid JSON:")
    key = tmp_path / "key.yaml"
    key.write_text(yaml.safe_dump({"genotype": {**SMALL.to_dict(), "normal_concat": [2, 9]}}))
    assert error(load_genotype, str(key)).startswith(
        f"{key}: normal cell: concat node 9 is out of range"
    )
    text = tmp_path / "arch.txt"
    text.write_text("# only a comment\n")
    assert error(load_genotype, str(text)) == (
        f"{text} is empty; expected Genotype(normal=[('op', input), ...], normal_concat=[...], "
        "reduce=[...], reduce_concat=[...])"
    )
    text.write_text("# header\nGenotype(normal=[('a', 0)\n")
    assert "at line 2, column 17" in error(load_genotype, str(text))


# --- graphs and drawings ---------------------------------------------------------------------


def test_cell_graph_is_a_dag_with_one_edge_per_genotype_edge() -> None:
    g = parse_genotype(DARTS_V2)
    graph = cell_graph(g, "normal")
    assert isinstance(graph, nx.DiGraph) and nx.is_directed_acyclic_graph(graph)
    assert set(graph.nodes) == {"c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "c_{k}"}
    # 8 genotype edges, all between distinct node pairs, plus 4 concat edges.
    assert graph.number_of_edges() == 12
    assert graph.edges["0", "3"]["op"] == "dil_conv_3x3"
    assert graph.edges["c_{k-2}", "3"]["op"] == "skip_connect"
    assert graph.edges["3", "c_{k}"]["op"] == "concat"
    assert graph.in_degree("c_{k}") == 4 and graph.out_degree("c_{k}") == 0
    assert graph.nodes["c_{k}"]["role"] == "output" and graph.graph["steps"] == 4


def test_cell_graph_merges_two_edges_from_the_same_input() -> None:
    graph = cell_graph(SMALL, "reduce")
    assert graph.number_of_nodes() == 4 and graph.number_of_edges() == 3
    g = Genotype([("skip_connect", 0), ("max_pool_3x3", 0)], [2], SMALL.reduce, [2])
    edge = cell_graph(g, "normal").edges["c_{k-2}", "0"]
    assert edge["ops"] == ("skip_connect", "max_pool_3x3")
    assert edge["op"] == "skip_connect + max_pool_3x3"
    assert "cell kind" in error(cell_graph, g, "reduction")


def test_to_dot_has_both_clusters_every_op_and_escapes_quotes() -> None:
    g = parse_genotype(DARTS_V2)
    dot = to_dot(g)
    assert "subgraph cluster_normal" in dot and "subgraph cluster_reduce" in dot
    for op in g.ops():
        assert f'[label="{op}"]' in dot
    assert dot.count("->") == 8 + 4 + 8 + 4
    odd = Genotype([('my"op', 0), ("skip_connect", 1)], [2], SMALL.reduce, [2])
    assert '[label="my\\"op"]' in to_dot(odd)


def test_to_dot_numbers_nodes_as_the_genotype_text_and_titles_the_hash() -> None:
    g = parse_genotype(DARTS_V2)
    dot = to_dot(g)
    assert f'label="genotype {g.hash[:12]}"' in dot
    assert '"normal:0" [label="2"' in dot and '"normal:3" [label="5"' in dot
    assert "<c<SUB>k-2</SUB>>" in dot and "<c<SUB>k</SUB>>" in dot
    assert dot.index("cluster_normal") < dot.index("cluster_reduce")


def test_render_writes_dot_and_draws_with_matplotlib_without_graphviz(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    g = parse_genotype(DARTS_V2)
    out = render(g, tmp_path / "cell.dot")
    assert out == (tmp_path / "cell.dot", None) and out.path.read_text() == to_dot(g)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    drawn = render(g, tmp_path / "sub" / "cell.png")
    assert drawn.path == tmp_path / "sub" / "cell.png"
    assert "graphviz `dot` is not installed" in drawn.note and "matplotlib" in drawn.note
    with Image.open(drawn.path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width >= 800 and height >= 600
        pixels = image.convert("L")
        histogram = pixels.histogram()
    # Not blank: a good share of the picture is ink (edges, labels, filled nodes).
    assert sum(histogram[:200]) > 0.01 * width * height
    assert not (tmp_path / "sub" / "cell.dot").exists()
    svg = render(g, tmp_path / "cell.svg").path.read_text()
    assert "<svg" in svg
    with pytest.raises(BnnNasError, match=r"use a \.dot"):
        render(g, tmp_path / "cell.bmp")


def test_render_falls_back_to_dot_text_without_graphviz_and_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "bnn_nas.space.picture", None)  # import fails
    g = parse_genotype(DARTS_V2)
    drawn = render(g, tmp_path / "cell.png")
    assert drawn.path == tmp_path / "cell.dot" and drawn.path.read_text() == to_dot(g)
    assert "neither graphviz `dot` nor matplotlib" in drawn.note
    assert not (tmp_path / "cell.png").exists()


def test_render_reports_a_failing_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'Error: syntax error in line 1' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(drawing.shutil, "which", lambda name: str(fake))
    with pytest.raises(BnnNasError) as info:
        render(SMALL, tmp_path / "cell.svg")
    assert "syntax error in line 1" in one_line(str(info.value))


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' is not installed")
def test_render_svg_with_graphviz(tmp_path: Path) -> None:
    g = parse_genotype(DARTS_V2)
    out = render(g, tmp_path / "cell.svg")
    assert out == (tmp_path / "cell.svg", None)
    svg = out.path.read_text()
    assert "<svg" in svg and "dil_conv_3x3" in svg and "normal cell" in svg
    check = subprocess.run(["dot", "-Tcanon"], input=to_dot(g), capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
