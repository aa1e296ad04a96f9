"""benchmarks.compile_reuse on tiny settings (Dynamo's eager backend: no C++ compiler): its
JSON line parses, and the candidates' figures say what the benchmark is for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_benchmark_prints_per_candidate_figures_of_every_variant():
    tiny = ["--backend", "eager", "--cells", "2", "--channels", "4", "--batch-size", "4",
            "--steps", "1", "--warm-steps", "1", "--candidates", "2",
            "--variants", "reset,keep", "--device", "cpu"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "benchmarks.compile_reuse", *tiny], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert line["benchmark"] == "compile_reuse" and line["backend"] == "eager"
    reset, keep = line["variants"]["reset"], line["variants"]["keep"]
    assert [r["candidate"] for r in reset] == [r["candidate"] for r in keep] == [1, 2]
    for a, b in zip(reset, keep, strict=True):
        assert a["genotype_hash"] == b["genotype_hash"]
        assert a["weights_norm"] == b["weights_norm"]  # the same training either way
        assert a["warm_up_s"] > 0 and a["images_per_s"] > 0
        assert isinstance(a["recompiles"], dict)
    # the first candidate compiles alike; a later one compiles less when the cache is kept
    assert reset[0]["graphs_train"] == keep[0]["graphs_train"] > 0
    assert keep[1]["graphs_train"] < reset[1]["graphs_train"]
