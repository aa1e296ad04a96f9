"""Pictures of a search: accuracy vs OPs with the Pareto front, best-so-far over trials."""

from __future__ import annotations

from pathlib import Path

from bnn_nas.errors import ConfigError
from bnn_nas.search.derive import front
from bnn_nas.search.trials import TrialRecord


def plot_search(records: list[TrialRecord], path: Path, title: str = "") -> Path:
    """Write a PNG (or any format matplotlib knows by suffix) with both panels."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(
            "plotting needs matplotlib; install it with pip install 'bnn-nas[plot]'"
        ) from None
    done = [r for r in records if r.done and r.result is not None]
    if not done:
        raise ConfigError("nothing to plot: the search has no finished trial yet")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    ops = [r.result.ops / 1e6 for r in done]  # type: ignore[union-attr]
    acc = [100 * r.result.accuracy for r in done]  # type: ignore[union-attr]
    left.scatter(ops, acc, s=18, c=[r.id for r in done], cmap="viridis", label="trials")
    pf = front(done)
    left.plot(
        [r.result.ops / 1e6 for r in pf],  # type: ignore[union-attr]
        [100 * r.result.accuracy for r in pf],  # type: ignore[union-attr]
        "-o", color="crimson", ms=5, label="Pareto front",
    )  # fmt: skip
    wide = max(ops) > 10 * min(ops)
    if wide:
        left.set_xscale("log")
    left.set_xlabel("OPs (millions" + (", log scale" if wide else "") + ") = BOPs/64 + FLOPs")
    left.set_ylabel("search-valid accuracy (%)")
    left.legend(loc="lower right")
    left.grid(alpha=0.3)
    ids, best, running = [], [], float("-inf")
    for r in sorted(done, key=lambda r: r.id):
        running = max(running, 100 * r.result.accuracy)  # type: ignore[union-attr]
        ids.append(r.id)
        best.append(running)
    right.plot([r.id for r in done], acc, ".", color="grey", label="trial")
    right.step(ids, best, where="post", color="crimson", label="best so far")
    right.set_xlabel("trial")
    right.set_ylabel("search-valid accuracy (%)")
    right.legend(loc="lower right")
    right.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
