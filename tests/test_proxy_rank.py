"""benchmarks.proxy_rank: rank statistics against brute force, and a resumable tiny run."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest

from benchmarks import proxy_rank
from benchmarks.proxy_rank import kendall_tau_b, ranks, spearman_rho, top_k_overlap
from tests.test_search_cli import write


def brute_tau_b(x, y):
    """tau-b = sum sgn(dx) sgn(dy) / sqrt(pairs untied in x * pairs untied in y)."""
    pairs = list(itertools.combinations(range(len(x)), 2))
    st = sum(((x[i] > x[j]) - (x[i] < x[j])) * ((y[i] > y[j]) - (y[i] < y[j])) for i, j in pairs)
    nx = sum(x[i] != x[j] for i, j in pairs)
    ny = sum(y[i] != y[j] for i, j in pairs)
    return st / math.sqrt(nx * ny)


def test_rank_statistics_match_their_definitions():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(3, 12)
        x = [rng.choice([0.1, 0.2, 0.3, 0.4, 0.5]) for _ in range(n)]  # ties on purpose
        y = [rng.random() for _ in range(n)]
        if len(set(x)) < 2:
            continue
        assert kendall_tau_b(x, y) == pytest.approx(brute_tau_b(x, y))
        # Spearman without ties: 1 - 6 sum d^2 / (n (n^2 - 1))
        u = rng.sample(range(100), n)
        d2 = sum((a - b) ** 2 for a, b in zip(ranks(u), ranks(y), strict=True))
        assert spearman_rho(u, y) == pytest.approx(1 - 6 * d2 / (n * (n * n - 1)))
    assert ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == -1.0
    assert top_k_overlap([0.9, 0.1, 0.8, 0.2], [0.7, 0.8, 0.9, 0.1], 2) == 0.5


def test_the_bootstrap_interval_holds_the_estimate_and_narrows_with_more_items():
    from benchmarks.proxy_rank import bootstrap_interval

    rng = random.Random(1)
    truth = [rng.random() for _ in range(96)]
    noisy = [t + rng.gauss(0, 0.15) for t in truth]
    low24, high24 = bootstrap_interval(noisy[:24], truth[:24], kendall_tau_b)
    low96, high96 = bootstrap_interval(noisy, truth, kendall_tau_b)
    assert low24 <= kendall_tau_b(noisy[:24], truth[:24]) <= high24
    assert low96 <= kendall_tau_b(noisy, truth) <= high96
    assert high96 - low96 < high24 - low24  # four times the items: about half the width
    assert 0.1 < high24 - low24 < 0.8
    assert bootstrap_interval(truth, truth, kendall_tau_b) == (1.0, 1.0)  # no noise
    assert bootstrap_interval(noisy[:24], truth[:24], kendall_tau_b) == (low24, high24)  # seeded
    # the percentiles of the resampled statistic, computed here by hand
    r = random.Random(0)
    values = []
    for _ in range(1000):
        pick = [r.randrange(24) for _ in range(24)]
        values.append(kendall_tau_b([noisy[i] for i in pick], [truth[i] for i in pick]))
    values.sort()
    assert (low24, high24) == (values[24], values[975])


def study(tmp_path, out, reference: str) -> list[str]:
    """proxy_rank's arguments for 3 genotypes of a tiny space: one short fidelity and
    ``reference``."""
    return [
        "--config", str(write(tmp_path)), "--genotypes", "3", "--out", str(out),
        "--fidelity", "short: train.epochs=1 data.search_train_size=100",
        "--reference", reference,
    ]  # fmt: skip


def test_a_tiny_proxy_study_writes_its_table_and_resumes_without_retraining(tmp_path, capsys):
    out = tmp_path / "proxy"
    argv = study(tmp_path, out, "long: train.epochs=2 data.search_train_size=300")
    summary = proxy_rank.main(argv)
    rows = (out / "scores.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 3  # header, then every genotype under both fidelities
    assert len((out / "genotypes.txt").read_text().splitlines()) == 3
    table = summary["fidelities"]
    assert set(table) == {"short", "long"} and table["long"]["kendall_tau"] == pytest.approx(1.0)
    assert table["long"]["kendall_tau_95"] == [1.0, 1.0]
    assert json.loads((out / "proxy_rank.json").read_text())["fidelities"] == table
    assert "short: training 3 of 3" in capsys.readouterr().err
    # the pooling-pathology columns, recomputed from the files by op name
    from bnn_nas.space.genotype import parse_genotype

    free_ops = {"none", "skip_connect", "max_pool_3x3", "avg_pool_3x3"}
    listed = [parse_genotype(line) for line in (out / "genotypes.txt").read_text().splitlines()]
    free = [float(sum(op in free_ops for op, _ in g.normal)) for g in listed]
    assert any(op not in free_ops for g in listed for op, _ in g.normal)  # the test can tell
    for name, row in table.items():
        scores = [0.0] * 3
        for line in rows[1:]:
            fidelity, index, _, accuracy = line.split(",")[:4]
            if fidelity == name:
                scores[int(index)] = float(accuracy)
        best = max(range(3), key=lambda i: (scores[i], -i))
        assert row["top1_free_edges"] == free[best]
        assert row["tau_free_edges"] == pytest.approx(brute_tau_b(scores, free), nan_ok=True)
    # a re-run finds every score in scores.csv and trains nothing
    again = proxy_rank.main(argv)
    assert "training" not in capsys.readouterr().err
    assert (out / "scores.csv").read_text().splitlines() == rows
    assert again["fidelities"]["short"] == table["short"]


def test_a_killed_proxy_study_keeps_the_wall_seconds_of_its_finished_trials(
    tmp_path, monkeypatch
):
    out = tmp_path / "proxy"
    argv = study(tmp_path, out, "long: train.epochs=1 data.search_train_size=200")
    clock = iter(range(0, 10_000, 10))  # every reading of the clock is 10 s later
    monkeypatch.setattr(proxy_rank, "perf_counter", lambda: float(next(clock)))
    real = proxy_rank.kendall_tau_b

    def killed(*args):  # the study dies once every score is in, before its table
        raise KeyboardInterrupt

    monkeypatch.setattr(proxy_rank, "kendall_tau_b", killed)
    with pytest.raises(KeyboardInterrupt):
        proxy_rank.main(argv)
    assert not (out / "proxy_rank.json").exists()
    # one clock reading at the start of each fidelity and one per finished trial
    assert json.loads((out / "wall_seconds.json").read_text()) == {"short": 30.0, "long": 30.0}
    monkeypatch.setattr(proxy_rank, "kendall_tau_b", real)
    summary = proxy_rank.main(argv)  # trains nothing, reports the time of the first run
    assert summary["wall_seconds"] == {"short": 30.0, "long": 30.0}
    assert summary["fidelities"]["long"]["wall_seconds"] == 30.0
