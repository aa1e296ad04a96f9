"""Genotype pictures drawn with matplotlib, so a PNG/SVG/PDF needs no system graphviz.

One panel per cell, the normal cell first. Nodes are numbered as in the genotype text
(``c_{k-2}`` and ``c_{k-1}`` are nodes 0 and 1, intermediate node ``k`` is step ``k - 2``);
each edge carries its op name and is coloured by the op's declared precision, so a reader
sees at a glance where the binary convs are.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch

from bnn_nas.primitives import REGISTRY
from bnn_nas.space.genotype import KINDS, Genotype

# Edge colour and line style per declared precision; "none" edges are drawn faint.
_STYLE = {
    "binary": ("#1f5fa8", "-", "binary op"),
    "float": ("#c4561b", "-", "float op"),
    "free": ("#2e8b57", "-", "parameter-free op"),
    "zero": ("#9a9a9a", ":", "none (zero)"),
    "unknown": ("#7b3fa0", "--", "op from a plugin not loaded"),
}
_NODE_FILL = {"input": "#cfe8cf", "intermediate": "#cfe0f3", "output": "#f3e9b5"}
_COLUMN, _ROW = 3.2, 2.0  # distance between node columns / rows, in data units
# Where along an edge its op name may sit (0: source, 1: target), tried in this order.
_LABEL_SPOTS = (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78, 0.15, 0.85)
_INPUT_LABELS = (r"$c_{k-2}$", r"$c_{k-1}$")
_OUTPUT_LABEL = r"$c_{k}$"


def _category(op: str) -> str:
    if op == "none":
        return "zero"
    if op not in REGISTRY:
        return "unknown"
    return REGISTRY.get(op).precision


def _positions(edges: tuple[tuple[str, int], ...], concat: tuple[int, ...]) -> dict:
    """Layered layout: a node's column is its longest path from the inputs."""
    steps = len(edges) // 2
    depth = {0: 0, 1: 0}
    for step in range(steps):
        node = step + 2
        depth[node] = 1 + max(depth[index] for _, index in edges[2 * step : 2 * step + 2])
    output_depth = 1 + max(depth[index] for index in concat)
    columns: dict[int, list[int]] = {}
    for node, column in depth.items():
        columns.setdefault(column, []).append(node)
    position: dict[int | str, tuple[float, float]] = {}
    for column, nodes in columns.items():
        for row, node in enumerate(sorted(nodes)):
            position[node] = (_COLUMN * column, _ROW * ((len(nodes) - 1) / 2 - row))
    position["out"] = (_COLUMN * output_depth, 0.0)
    return position


def _draw_cell(ax, g: Genotype, kind: str) -> set[str]:
    edges, concat = g.cell(kind)
    position = _positions(edges, concat)
    xs = [x for x, _ in position.values()]
    ys = [y for _, y in position.values()]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 1.2, max(ys) + 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"{kind} cell", fontsize=11, loc="left")
    renderer = ax.figure.canvas.get_renderer()
    taken = []  # display boxes of the nodes and the labels placed so far
    for node, (x, y) in position.items():
        if node == "out":
            label, role = _OUTPUT_LABEL, "output"
        elif node < 2:
            label, role = _INPUT_LABELS[node], "input"
        else:
            label, role = str(node), "intermediate"
        text = ax.text(
            x, y, label, fontsize=11, ha="center", va="center", zorder=4,
            bbox={"boxstyle": "round,pad=0.45", "fc": _NODE_FILL[role], "ec": "#555555"},
        )
        taken.append(text.get_window_extent(renderer).expanded(1.1, 1.1))
    for index in concat:
        (x1, y1), (x2, y2) = position[index], position["out"]
        ax.add_patch(
            FancyArrowPatch(
                (x1, y1), (x2, y2), arrowstyle="-|>", mutation_scale=10, shrinkA=17,
                shrinkB=17, color="#b0b0b0", linewidth=1.0, zorder=0,
            )
        )
    used: set[str] = set()
    seen: dict[tuple[int, int], int] = {}
    for j, (op, source) in enumerate(edges):
        target = j // 2 + 2
        (x1, y1), (x2, y2) = position[source], position[target]
        # Two edges between the same nodes bend apart; long edges bend around the nodes between.
        repeat = seen.get((source, target), 0)
        seen[(source, target)] = repeat + 1
        span = abs(x2 - x1) / _COLUMN
        rad = (0.35 if repeat else -0.35) if (source, target) in _pairs(edges, j) else 0.0
        if rad == 0.0 and span > 1:
            rad = 0.25 if y1 >= y2 else -0.25
        category = _category(op)
        used.add(category)
        color, style, _ = _STYLE[category]
        ax.add_patch(
            FancyArrowPatch(
                (x1, y1), (x2, y2), arrowstyle="-|>", mutation_scale=12, shrinkA=17,
                shrinkB=17, connectionstyle=f"arc3,rad={rad}", color=color, linestyle=style,
                linewidth=1.4, zorder=1,
            )
        )
        # The label sits on the quadratic Bezier that arc3 draws (equal axis aspect), at the
        # first point from the middle outwards where it covers no node and no other label.
        cx = (x1 + x2) / 2 + rad * (y2 - y1)
        cy = (y1 + y2) / 2 - rad * (x2 - x1)
        text = ax.text(
            0, 0, op, fontsize=7, ha="center", va="center", color=color, zorder=3,
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9},
        )
        best = None
        for t in _LABEL_SPOTS:
            text.set_position(_bezier(t, (x1, y1), (cx, cy), (x2, y2)))
            box = text.get_window_extent(renderer)
            overlap = sum(_overlap(box, other) for other in taken)
            if best is None or overlap < best[0]:
                best = (overlap, t, box)
            if overlap == 0:
                break
        assert best is not None
        text.set_position(_bezier(best[1], (x1, y1), (cx, cy), (x2, y2)))
        taken.append(best[2])
    return used


def _bezier(t: float, p0, p1, p2) -> tuple[float, float]:
    return (
        (1 - t) ** 2 * p0[0] + 2 * t * (1 - t) * p1[0] + t**2 * p2[0],
        (1 - t) ** 2 * p0[1] + 2 * t * (1 - t) * p1[1] + t**2 * p2[1],
    )


def _overlap(a, b) -> float:
    """Area two display boxes share."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def _pairs(edges: tuple[tuple[str, int], ...], j: int) -> set[tuple[int, int]]:
    """The (source, target) of edge ``j`` when both edges of its step read the same node."""
    step = j // 2
    (_, a), (_, b) = edges[2 * step], edges[2 * step + 1]
    return {(a, step + 2)} if a == b else set()


def draw_genotype(g: Genotype, path: Path, title: str) -> None:
    """Write both cells of ``g`` to ``path`` (format from its suffix: png, svg or pdf)."""
    figure = Figure(figsize=(10, 7.5), constrained_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(KINDS), 1)
    used: set[str] = set()
    for ax, kind in zip(axes, KINDS, strict=True):
        used |= _draw_cell(ax, g, kind)
    handles = [
        Line2D([0], [0], color=_STYLE[c][0], linestyle=_STYLE[c][1], label=_STYLE[c][2])
        for c in _STYLE
        if c in used
    ]
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    figure.suptitle(title, fontsize=12)
    figure.savefig(path, dpi=140)
