"""search.png: a colour bar for the trial colours, legends clear of the points, a title
naming the run and its objectives (objectives are data: any number of them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnn_nas.objectives import Objective
from bnn_nas.search.plot import draw_search, plot_search, search_title
from bnn_nas.search.trials import TrialRecord, TrialResult, TrialStatus
from bnn_nas.space.genotype import parse_genotype

pytest.importorskip("matplotlib")

G = parse_genotype(
    "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], normal_concat=[2], "
    "reduce=[('max_pool_3x3', 0), ('skip_connect', 1)], reduce_concat=[2])"
)
THREE = (
    Objective("accuracy", "maximize"),
    Objective("ops", "minimize"),
    Objective("params", "minimize"),
)


def records(n: int = 30) -> list[TrialRecord]:
    out = []
    for i in range(1, n + 1):
        metrics = {"accuracy": 0.2 + 0.01 * (i % 13), "ops": 1e6 * (1 + i % 7),
                   "params": 1e4 * (1 + i % 5), "train_seconds": 1.0}  # fmt: skip
        out.append(TrialRecord(i, G, TrialStatus.DONE, {"kind": "random"},
                               result=TrialResult(metrics)))  # fmt: skip
    return out


def test_colour_bar_legends_above_the_axes_and_a_title():
    import matplotlib.pyplot as plt

    title = search_title("cifar_tiny", records(), THREE)
    assert title == (
        "run cifar_tiny: 30 trials, accuracy (max) vs OPs (min) vs params (min)"
    )
    fig = draw_search(records(), title, THREE)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        colour_bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert len(panels) == 3 and len(colour_bars) == 2  # one per scatter panel
        assert all(bar.get_ylabel() == "trial number" for bar in colour_bars)
        for ax in panels:  # each legend lies wholly above its axes: no point is hidden
            legend = ax.get_legend().get_window_extent(renderer)
            assert legend.y0 >= ax.get_window_extent(renderer).y1 - 1
        assert fig.get_suptitle() == title
    finally:
        plt.close(fig)


def test_plot_writes_a_png_with_the_objectives_as_the_default_title(tmp_path: Path):
    import matplotlib.pyplot as plt

    fig = draw_search(records(5))
    try:
        assert fig.get_suptitle() == "accuracy (max) vs OPs (min)"
    finally:
        plt.close(fig)
    out = plot_search(records(5), tmp_path / "search.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
