"""The README's end-to-end table from run directories: searched network vs baselines.

The table is `bnn-nas compare` (``bnn_nas/compare.py``, installed with the package); this
script stays for the commands in README and docs/ that call it:

    python -m benchmarks.results_table runs/final-searched runs/final-r18-xnor \\
        runs/r18-bireal-s0,runs/r18-bireal-s1,runs/r18-bireal-s2 --search runs/cifar
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bnn_nas import compare
from bnn_nas.compare import accuracy_cell, network_name, seed_runs  # noqa: F401  (re-exported)
from bnn_nas.errors import BnnNasError
from bnn_nas.search.progress import busy_seconds  # noqa: F401  (re-exported)


def table(runs: list[str | Path], search: Path | None, search_gpus: int) -> str:
    """compare.table; a mistake in the runs ends the script with its one line."""
    try:
        return compare.table(runs, search, search_gpus)
    except BnnNasError as err:
        raise SystemExit(str(err)) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "runs", nargs="+", help="bnn-nas train run directories (DIR,DIR,...: seeds of one network)"
    )
    parser.add_argument("--search", type=Path, help="the search run directory")
    parser.add_argument("--search-gpus", type=int, default=1)
    args = parser.parse_args()
    print(table(args.runs, args.search, args.search_gpus))


if __name__ == "__main__":
    main()
