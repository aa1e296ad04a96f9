"""Run another benchmark with the fused binarizers off: the A side of an A/B.

bnn_nas/binary/fused.py is not a setting (its results are bit-identical to the ATen
path), so measuring what it buys needs the ATen path on purpose. This runs the named
benchmark module in this process with ``fused.applies`` answering False, so every
binarizer takes the ATen chains. Worker processes (``benchmarks.trial --executor
processes``) import afresh and do not see it: use the streams executor.

    python -m benchmarks.without_fused benchmarks.train_step --only resnet18_xnor
"""

from __future__ import annotations

import runpy
import sys

from bnn_nas.binary import fused


def run_without_fused(argv: list[str]) -> None:
    """Run module ``argv[0]`` as ``__main__`` with arguments ``argv[1:]``, fused path off."""
    if not argv:
        sys.exit("usage: python -m benchmarks.without_fused MODULE [ARGS...]")
    original, saved_argv = fused.applies, sys.argv
    fused.applies = lambda x: False
    sys.argv = list(argv)
    try:
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    finally:
        fused.applies, sys.argv = original, saved_argv


if __name__ == "__main__":
    run_without_fused(sys.argv[1:])
