"""Genotypes as graphs: a networkx DiGraph per cell and a DOT / PNG / SVG drawing.

Graph node names follow the DARTS figures: ``c_{k-2}`` and ``c_{k-1}`` are the cell inputs
(genotype nodes 0 and 1), ``"0"``..``"steps-1"`` the intermediate nodes (genotype node
``i + 2``) and ``c_{k}`` the output, the concat of the listed intermediate nodes. Drawings
label intermediate nodes with their genotype numbers (2, 3, ...), as the genotype text does.

Pictures come from graphviz's ``dot`` when it is installed, else from matplotlib (the
``[plot]`` extra), else the DOT text is written and the caller is told why.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import networkx as nx

from bnn_nas.errors import BnnNasError
from bnn_nas.space.genotype import KINDS, Genotype

INPUTS = ("c_{k-2}", "c_{k-1}")
OUTPUT = "c_{k}"
_IMAGE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
# Graphviz HTML labels: c_{k-2} set with a subscript, as in the DARTS figures.
_HTML_LABELS = {
    "c_{k-2}": "<c<SUB>k-2</SUB>>",
    "c_{k-1}": "<c<SUB>k-1</SUB>>",
    "c_{k}": "<c<SUB>k</SUB>>",
}
_FILL = {"input": "darkseagreen2", "intermediate": "lightblue", "output": "palegoldenrod"}


class Drawing(NamedTuple):
    """What :func:`render` wrote: the file, and a one-line note when it fell back."""

    path: Path
    note: str | None = None


def node_name(index: int) -> str:
    """Graph name of genotype node ``index`` (0, 1: inputs; k >= 2: step k - 2)."""
    return INPUTS[index] if index < 2 else str(index - 2)


def cell_graph(g: Genotype, kind: str) -> nx.DiGraph:
    """The ``"normal"`` or ``"reduce"`` cell as a DAG.

    Each genotype edge becomes a graph edge with attribute ``op``; the concat becomes edges
    with op ``"concat"`` into :data:`OUTPUT`. A DiGraph holds one edge per node pair, so when
    both edges of a step read the same input they share a graph edge whose ``op`` is
    ``"a + b"`` and whose ``ops`` is ``("a", "b")`` (every edge has ``ops``). Nodes carry
    ``role`` (input, intermediate, output); the graph carries ``kind`` and ``steps``.
    """
    edges, concat = g.cell(kind)
    steps = len(edges) // 2
    graph = nx.DiGraph(kind=kind, steps=steps)
    graph.add_nodes_from(INPUTS, role="input")
    graph.add_nodes_from((str(i) for i in range(steps)), role="intermediate")
    graph.add_node(OUTPUT, role="output")
    for j, (op, index) in enumerate(edges):
        source, target = node_name(index), str(j // 2)
        if graph.has_edge(source, target):
            data = graph.edges[source, target]
            data["ops"] = (*data["ops"], op)
            data["op"] = " + ".join(data["ops"])
        else:
            graph.add_edge(source, target, op=op, ops=(op,))
    for index in concat:
        graph.add_edge(node_name(index), OUTPUT, op="concat", ops=("concat",))
    return graph


def _quote(text: str) -> str:
    """A DOT double-quoted string; op names come from user text, so escape them."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def to_dot(g: Genotype) -> str:
    """DOT text with one cluster per cell, readable by graphviz's ``dot``.

    Drawn from the genotype, not the DiGraph, so two edges between the same nodes both show.
    """
    lines = [
        "digraph genotype {",
        "  rankdir=LR;",
        f"  label={_quote(f'genotype {g.hash[:12]}')}; labelloc=t;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for kind in KINDS:
        edges, concat = g.cell(kind)
        steps = len(edges) // 2

        def ident(name: str, kind: str = kind) -> str:
            return _quote(f"{kind}:{name}")

        lines += [f"  subgraph cluster_{kind} {{", f"    label={_quote(f'{kind} cell')};"]
        roles = [(name, _HTML_LABELS[name], "input") for name in INPUTS]
        roles += [(str(i), _quote(str(i + 2)), "intermediate") for i in range(steps)]
        roles.append((OUTPUT, _HTML_LABELS[OUTPUT], "output"))
        for name, label, role in roles:
            lines.append(f"    {ident(name)} [label={label}, fillcolor={_FILL[role]}];")
        for j, (op, index) in enumerate(edges):
            source, target = ident(node_name(index)), ident(str(j // 2))
            lines.append(f"    {source} -> {target} [label={_quote(op)}];")
        for index in concat:
            lines.append(f"    {ident(node_name(index))} -> {ident(OUTPUT)} [color=gray];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def check_drawing_path(path: Path | str) -> Path:
    """``path`` names a format :func:`render` writes, or a one-line error (before any work)."""
    path = Path(path)
    if path.suffix.lower() not in (".dot", ".gv", *_IMAGE_FORMATS):
        raise BnnNasError(
            f"cannot draw a genotype to {path.name!r}; use a .dot, .gv, .png, .svg or .pdf file"
        )
    return path


def render(g: Genotype, path: Path | str) -> Drawing:
    """Write ``g`` as ``.dot``, or as ``.png``/``.svg``/``.pdf``.

    Pictures are drawn by graphviz's ``dot`` when it is on PATH, else by matplotlib. With
    neither, the DOT text is written next to the asked path (``path.with_suffix(".dot")``)
    and the returned note says so.
    """
    path = check_drawing_path(path)
    suffix = path.suffix.lower()
    text = to_dot(g)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".dot", ".gv"):
        path.write_text(text, encoding="utf-8")
        return Drawing(path)
    dot = shutil.which("dot")
    if dot is not None:
        _run_dot(dot, text, path, _IMAGE_FORMATS[suffix])
        return Drawing(path)
    try:
        from bnn_nas.space.picture import draw_genotype
    except ImportError:
        out = path.with_suffix(".dot")
        out.write_text(text, encoding="utf-8")
        return Drawing(
            out,
            f"neither graphviz `dot` nor matplotlib is installed: wrote DOT text to {out} "
            f"instead of {path} (pip install matplotlib, or install graphviz)",
        )
    draw_genotype(g, path, title=f"genotype {g.hash[:12]}")
    return Drawing(path, f"graphviz `dot` is not installed: drew {path} with matplotlib")


def _run_dot(dot: str, text: str, path: Path, image_format: str) -> None:
    try:
        result = subprocess.run(
            [dot, f"-T{image_format}", "-o", str(path)],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BnnNasError(
            f"graphviz dot could not draw {path}: {exc}; write a .dot file instead"
        ) from None
    if result.returncode != 0:
        detail = " ".join(result.stderr.decode("utf-8", "replace").split())[:200]
        raise BnnNasError(
            f"graphviz dot failed to draw {path}: {detail or 'no message'}; "
            f"check the graphviz install or write a .dot file"
        )
