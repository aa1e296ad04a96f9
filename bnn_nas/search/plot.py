"""Pictures of a search: the primary objective (accuracy) against each other one (OPs,
...) with the Pareto front, and best-so-far over trials. A multi-fidelity search's rungs
get a marker each; its front and best-so-far are those of the highest rung reached (the
trials derive chooses from)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bnn_nas.errors import ConfigError
from bnn_nas.objectives import DEFAULT_OBJECTIVES, Objective, metric
from bnn_nas.search.budget import rung_of, top_rung
from bnn_nas.search.derive import front
from bnn_nas.search.trials import TrialRecord, completed


def _shown(name: str, value: float) -> float:
    """Accuracy in percent, costs in millions (OPs, BOPs, FLOPs) or thousands."""
    if name == "accuracy":
        return 100 * value
    return value / metric(name).scale


def _label(name: str, log: bool = False) -> str:
    if name == "accuracy":
        return "search-valid accuracy (%)"
    if name == "ops":
        return "OPs (millions" + (", log scale" if log else "") + ") = BOPs/64 + FLOPs"
    m = metric(name)
    unit = {"M": "millions", "k": "thousands", "kB": "kB"}.get(m.unit, "")
    parts = [p for p in (unit, "log scale" if log else "") if p]
    return m.word + (f" ({', '.join(parts)})" if parts else "")


def objectives_phrase(objectives: Sequence[Objective]) -> str:
    """What a search optimises, in words: "accuracy (max) vs OPs (min)"."""
    return " vs ".join(
        f"{metric(o.name).word} ({'max' if o.maximize else 'min'})" for o in objectives
    )


def search_title(run: str, records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> str:
    """The figure's title: the run, its finished trials and its objectives."""
    return f"run {run}: {len(completed(list(records)))} trials, " + objectives_phrase(
        objectives
    )


def plot_search(
    records: list[TrialRecord],
    path: Path,
    title: str = "",
    objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
) -> Path:
    """Write a PNG (or any format matplotlib knows by suffix): the primary objective
    against each other one with its Pareto front, and best-so-far over trials.

    Points are coloured by trial number (a colour bar says so); legends sit above the
    axes, clear of the points. ``title``: default the objectives in words."""
    fig = draw_search(records, title, objectives)  # a one-line error without matplotlib
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw_search(
    records: list[TrialRecord],
    title: str = "",
    objectives: Sequence[Objective] = DEFAULT_OBJECTIVES,
):
    """The figure :func:`plot_search` writes (a matplotlib Figure; the caller closes it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "plotting needs matplotlib; install it with pip install 'bnn-nas[plot]'"
        ) from None
    done = completed(records)
    if not done:
        raise ConfigError("nothing to plot: the search has no finished trial yet")
    objectives = tuple(objectives)
    primary, others = objectives[0], objectives[1:]
    panels = max(1, len(others)) + 1
    fig, axes = plt.subplots(1, panels, figsize=(5.8 * panels, 4.6), layout="constrained")
    groups = _rung_groups(done)  # [(label, marker, trials)]: one group unless multi-fidelity
    top = top_rung(done)
    front_label = "Pareto front" + (f" (rung {rung_of(top[0])})" if len(groups) > 1 else "")
    ids = [r.id for r in done]
    for left, other in zip(axes[:-1], others, strict=False):
        x = [_shown(other.name, other.value(r.result.metrics)) for r in done]
        for label, marker, group in groups:
            points = left.scatter(
                [_shown(other.name, other.value(r.result.metrics)) for r in group],
                [_shown(primary.name, primary.value(r.result.metrics)) for r in group],
                s=18, c=[r.id for r in group], cmap="viridis", vmin=min(ids), vmax=max(ids),
                marker=marker, label=label,
            )  # fmt: skip
        pf = front(top, (primary, other))  # the front of this pair of objectives
        left.plot(
            [_shown(other.name, other.value(r.result.metrics)) for r in pf],
            [_shown(primary.name, primary.value(r.result.metrics)) for r in pf],
            "-o", color="crimson", ms=5, label=front_label,
        )  # fmt: skip
        positive = [v for v in x if v > 0]
        wide = bool(positive) and max(positive) > 10 * min(positive) and min(x) > 0
        if wide:
            left.set_xscale("log")
        left.set_xlabel(_label(other.name, log=wide))
        left.set_ylabel(_label(primary.name))
        _legend_above(left)
        left.grid(alpha=0.3)
        fig.colorbar(points, ax=left, label="trial number", pad=0.01)
    right = axes[-1]
    ids, best, running = [], [], None
    better = max if primary.maximize else min
    for r in sorted(top, key=lambda r: r.id):
        v = _shown(primary.name, primary.value(r.result.metrics))
        running = v if running is None else better(running, v)
        ids.append(r.id)
        best.append(running)
    for label, marker, group in groups:
        right.plot([r.id for r in group],
                   [_shown(primary.name, primary.value(r.result.metrics)) for r in group],
                   marker if len(groups) > 1 else ".", color="grey", linestyle="none",
                   ms=4 if len(groups) > 1 else 6, label=label)  # fmt: skip
    right.step(ids, best, where="post", color="crimson", label=front_label.replace(
        "Pareto front", "best so far"))  # fmt: skip
    right.set_xlabel("trial")
    right.set_ylabel(_label(primary.name))
    _legend_above(right)
    right.grid(alpha=0.3)
    fig.suptitle(title or objectives_phrase(objectives))
    return fig


RUNG_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _rung_groups(done: Sequence[TrialRecord]) -> list[tuple[str, str, list[TrialRecord]]]:
    """(legend label, marker, trials) per rung of a multi-fidelity search, lowest first;
    one group of every trial for other searches."""
    rungs = sorted({r for r in map(rung_of, done) if r is not None})
    if not rungs:
        return [("trial", "o", list(done))]
    return [
        (f"rung {rung}", RUNG_MARKERS[k % len(RUNG_MARKERS)],
         [r for r in done if rung_of(r) == rung])
        for k, rung in enumerate(rungs)
    ]  # fmt: skip


def _legend_above(ax) -> None:
    """The legend in one row above the axes: it never hides a point."""
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, frameon=False,
              borderaxespad=0.2, fontsize="small")  # fmt: skip
