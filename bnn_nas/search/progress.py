"""Live progress of a search: trials done / budget, best so far, ETA."""

from __future__ import annotations

from types import TracebackType

from tqdm import tqdm

from bnn_nas.search.engine import Progress
from bnn_nas.search.trials import TrialRecord


def describe(record: TrialRecord) -> str:
    """One line for a finished trial: accuracy, OPs, time and how it was proposed."""
    if record.result is None:
        return f"trial {record.id} failed: {record.error}"
    r = record.result
    return (
        f"trial {record.id} acc {r.accuracy:.4f} OPs {r.ops / 1e6:.2f}M "
        f"({r.train_seconds:.1f} s) {record.origin.get('kind', '')}"
    )


class SearchProgress:
    """A tqdm bar over the budget; one line per finished trial above it."""

    def __init__(self, budget: int, done: int) -> None:
        self.bar = tqdm(total=budget, initial=done, unit="trial", dynamic_ncols=True)

    def update(self, progress: Progress) -> None:
        self.bar.write(describe(progress.last))
        if progress.best is not None and progress.best.result is not None:
            best = progress.best.result
            self.bar.set_postfix(best=f"{best.accuracy:.4f}", ops=f"{best.ops / 1e6:.2f}M")
        self.bar.update(progress.finished - self.bar.n)

    def __enter__(self) -> SearchProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.bar.close()
