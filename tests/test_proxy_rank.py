"""benchmarks.proxy_rank: rank statistics against brute force, and a resumable tiny run."""

from __future__ import annotations

import csv
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


def test_a_killed_proxy_study_keeps_the_wall_seconds_of_its_finished_trials(tmp_path, monkeypatch):
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


# Studies split over processes, and tables of partial scores: scripted scores, no training.

FIDELITIES = [
    "--fidelity", "short: train.epochs=1", "--fidelity", "mid: train.epochs=2",
    "--fidelity", "few: train.epochs=1", "--reference", "long: train.epochs=3",
]  # fmt: skip
N = 8


def table_args(tmp_path, out, *extra: str) -> list[str]:
    """proxy_rank's arguments for N genotypes of the tiny space and four fidelities."""
    config = str(write(tmp_path))
    return ["--config", config, "--genotypes", str(N), "--out", str(out), *FIDELITIES, *extra]


def scripted_study(tmp_path, out, scores: dict[str, dict[int, float]], wall, *extra: str):
    """A study folder as proxy_rank leaves it, holding ``scores`` as if it had trained them."""
    from benchmarks.proxy_rank import SCORE_FIELDS
    from bnn_nas.space.genotype import parse_genotype

    proxy_rank.main(table_args(tmp_path, out, "--no-train", *extra))  # only genotypes.txt
    listed = [parse_genotype(line) for line in (out / "genotypes.txt").read_text().splitlines()]
    with (out / "scores.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SCORE_FIELDS, lineterminator="\n")
        writer.writeheader()
        for name, by in scores.items():
            for i, accuracy in by.items():
                writer.writerow({"fidelity": name, "index": i, "hash": listed[i].hash,
                                 "accuracy": accuracy, "loss": 1 - accuracy,
                                 "train_seconds": 1.0})  # fmt: skip
    (out / "wall_seconds.json").write_text(json.dumps(wall))
    return out


_rng = random.Random(3)
SHORT = {i: round(_rng.random(), 4) for i in range(N)}
MID = {i: round(_rng.random(), 4) for i in range(N)}
LONG = {i: round(_rng.random(), 4) for i in (0, 2, 3, 5, 7)}  # the reference, cut at 5 of 8
FEW = {i: round(_rng.random(), 4) for i in (1, 2, 3, 4, 6)}  # 2 shared with the reference
WALL = {"short": 10.0, "mid": 20.0, "few": 5.0}


def split_studies(tmp_path):
    """A: the three proxies; B: the reference, cut at 5 of 8 (as issue 21's two processes)."""
    a = scripted_study(tmp_path, tmp_path / "A", {"short": SHORT, "mid": MID, "few": FEW}, WALL)
    b = scripted_study(tmp_path, tmp_path / "B", {"long": LONG}, {"long": 100.0})
    return a, b


def test_a_merged_table_equals_the_table_of_one_study_holding_every_row(tmp_path, capsys):
    a, b = split_studies(tmp_path)
    every = {"short": SHORT, "mid": MID, "few": FEW, "long": LONG}
    one = scripted_study(tmp_path, tmp_path / "one", every, {**WALL, "long": 100.0})
    capsys.readouterr()
    alone = proxy_rank.main(table_args(tmp_path, one, "--no-train"))
    alone_out = capsys.readouterr().out
    merged_out_dir = tmp_path / "AB"
    argv = table_args(tmp_path, merged_out_dir, "--no-train", "--scores-from", str(a),
                      "--scores-from", str(b))  # fmt: skip
    merged = proxy_rank.main(argv)
    assert merged["fidelities"] == alone["fidelities"]
    assert merged["wall_seconds"] == alone["wall_seconds"] == {**WALL, "long": 100.0}
    assert capsys.readouterr().out == alone_out  # the printed table too
    assert merged["scores_from"] == [str(a), str(b)]
    assert not (merged_out_dir / "scores.csv").exists()  # OUT's files stay its own
    assert (
        json.loads((merged_out_dir / "proxy_rank.json").read_text())["fidelities"]
        == (alone["fidelities"])
    )
    # the same fidelity in two studies: the union of their genotypes, the sum of their time
    c = scripted_study(tmp_path, tmp_path / "C", {"long": {0: LONG[0], 1: 0.5}}, {"long": 7.0})
    both = proxy_rank.main([*argv, "--scores-from", str(c)])
    assert both["fidelities"]["long"]["scored"] == 6 and both["wall_seconds"]["long"] == 107.0


def test_scores_from_another_study_are_not_trained_again_nor_copied(tmp_path, monkeypatch):
    _, b = split_studies(tmp_path)
    trained = []

    def fake_train(fidelity, settings, dataset, genotypes, todo, scores, wall_path):
        name = fidelity.name
        trained.append((name, todo))
        new = not scores.is_file()
        with scores.open("a") as handle:
            if new:
                handle.write(",".join(proxy_rank.SCORE_FIELDS) + "\n")
            for i in todo:
                handle.write(f"{name},{i},{genotypes[i].hash},0.{i + 1},1.0,1.0\n")

    monkeypatch.setattr(proxy_rank, "train_fidelity", fake_train)
    monkeypatch.setattr(proxy_rank, "load_dataset", lambda settings: None)
    out = tmp_path / "rest"
    summary = proxy_rank.main(table_args(tmp_path, out, "--scores-from", str(b)))
    everything = list(range(N))
    assert trained == [("short", everything), ("mid", everything), ("few", everything),
                       ("long", [1, 4, 6])]  # fmt: skip
    assert all(row["n"] == N for row in summary["fidelities"].values())
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert sorted(int(r["index"]) for r in rows if r["fidelity"] == "long") == [1, 4, 6]


def safe_tau_b(x, y):
    try:
        return brute_tau_b(x, y)
    except ZeroDivisionError:  # every item alike in one ranking
        return float("nan")


def test_partial_scores_give_statistics_over_the_genotypes_scored_under_both(tmp_path, capsys):
    from benchmarks.proxy_rank import bootstrap_interval
    from bnn_nas.space.genotype import parse_genotype

    a, b = split_studies(tmp_path)
    capsys.readouterr()
    out = tmp_path / "AB"
    argv = table_args(tmp_path, out, "--no-train", "--scores-from", str(a), "--scores-from", str(b))
    table = proxy_rank.main(argv)["fidelities"]
    printed = capsys.readouterr().out
    free_ops = {"none", "skip_connect", "max_pool_3x3", "avg_pool_3x3"}
    listed = [parse_genotype(line) for line in (out / "genotypes.txt").read_text().splitlines()]
    free = [float(sum(op in free_ops for op, _ in g.normal)) for g in listed]
    assert len(set(free)) > 1 and not math.isnan(table["short"]["tau_free_edges"])  # can tell
    k = N // 4
    for name, scores in [("short", SHORT), ("mid", MID), ("long", LONG)]:
        row, shared = table[name], sorted(set(scores) & set(LONG))
        x, y = [scores[i] for i in shared], [LONG[i] for i in shared]
        assert (row["n"], row["scored"]) == (5, len(scores))
        assert row["kendall_tau"] == pytest.approx(brute_tau_b(x, y))
        d2 = sum((a - b) ** 2 for a, b in zip(ranks(x), ranks(y), strict=True))  # no ties
        assert row["spearman_rho"] == pytest.approx(1 - 6 * d2 / (5 * (25 - 1)))
        assert row["kendall_tau_95"] == list(bootstrap_interval(x, y, kendall_tau_b))
        best_x = set(sorted(shared, key=lambda i: -scores[i])[:k])
        best_y = set(sorted(shared, key=lambda i: -LONG[i])[:k])
        assert row[f"top{k}_overlap"] == len(best_x & best_y) / k
        # the free-edge columns and the mean over every genotype the fidelity scored
        own = sorted(scores)
        assert row["mean_accuracy"] == pytest.approx(sum(scores.values()) / len(scores))
        tau_free = safe_tau_b([scores[i] for i in own], [free[i] for i in own])
        assert row["tau_free_edges"] == pytest.approx(tau_free, nan_ok=True)
        top = sorted(own, key=lambda i: (-scores[i], i))[:k]
        assert row[f"top{k}_free_edges"] == sum(free[i] for i in top) / k
    assert table["long"]["kendall_tau"] == 1.0
    # below 3 shared genotypes: no statistics against the reference, and it says so
    few = table["few"]
    assert (few["n"], few["scored"]) == (2, 5)
    assert few["kendall_tau"] is few["spearman_rho"] is few["kendall_tau_95"] is None
    assert few[f"top{k}_overlap"] is None
    tau_free = safe_tau_b([FEW[i] for i in sorted(FEW)], [free[i] for i in sorted(FEW)])
    assert few["tau_free_edges"] == pytest.approx(tau_free, nan_ok=True)
    lines = {line.split()[0]: line for line in printed.splitlines() if line.strip()}
    assert lines["short"].split()[1] == "5/8" and lines["few"].split()[1] == "2/8"
    assert lines["few"].split()[2:6] == ["-", "-", "-", "-"]
    assert "(few: 2 of the 8 genotypes scored under both it and the reference, 3 needed: " \
        "no statistics against the reference)" in printed  # fmt: skip
    assert json.loads((out / "proxy_rank.json").read_text())["fidelities"]["few"]["n"] == 2
    # an empty study prints its table too: n 0 everywhere, no statistics
    empty = proxy_rank.main(table_args(tmp_path, tmp_path / "empty", "--no-train"))
    assert all(row["n"] == 0 and row["kendall_tau"] is None
               for row in empty["fidelities"].values())  # fmt: skip


def test_another_study_with_other_genotypes_or_other_scores_is_refused(tmp_path):
    a, _ = split_studies(tmp_path)
    other = scripted_study(tmp_path, tmp_path / "seed1", {"long": LONG}, {}, "--seed", "1")
    out = tmp_path / "AB"
    refusal = r"--scores-from .*seed1: its genotypes.txt differs from this study's; give the "
    with pytest.raises(SystemExit, match=refusal + r"--config, --set, --genotypes and --seed"):
        proxy_rank.main(table_args(tmp_path, out, "--scores-from", str(a), "--scores-from",
                                   str(other)))  # fmt: skip
    with pytest.raises(SystemExit, match=r"no genotypes\.txt there"):
        proxy_rank.main(table_args(tmp_path, out, "--scores-from", str(tmp_path)))
    clash = scripted_study(tmp_path, tmp_path / "clash", {"short": {0: SHORT[0] + 0.01}}, {})
    with pytest.raises(SystemExit, match=r"short #0 scored .* in .*A but .* in .*clash: two "
                       r"budgets under one name"):  # fmt: skip
        proxy_rank.main(table_args(tmp_path, out, "--scores-from", str(a), "--scores-from",
                                   str(clash)))  # fmt: skip
    with pytest.raises(SystemExit, match="given twice"):
        proxy_rank.main(table_args(tmp_path, out, "--scores-from", str(a), "--scores-from",
                                   str(a)))  # fmt: skip
    with pytest.raises(SystemExit, match="fidelity long is named twice"):
        proxy_rank.main(table_args(tmp_path, out, "--fidelity", "long: train.epochs=1"))
    assert not out.exists()  # every refusal came before anything was written or trained
    # the same score in two studies is no clash
    same = scripted_study(tmp_path, tmp_path / "same", {"short": {0: SHORT[0]}}, {})
    proxy_rank.main(table_args(tmp_path, out, "--no-train", "--scores-from", str(a),
                               "--scores-from", str(same)))  # fmt: skip


def test_a_bad_setting_ends_in_one_line_not_a_traceback(tmp_path):
    import subprocess
    import sys

    from tests.test_search_cli import ROOT

    argv = ["--config", str(write(tmp_path)), "--genotypes", "3", "--out", str(tmp_path / "p"),
            "--reference", "long: train.epochs=1"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "benchmarks.proxy_rank", *argv,
                           "--set", "data.root=x"], capture_output=True, text=True,
                          cwd=ROOT)  # fmt: skip
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "data.root applies to cifar10, image_folder only, not 'cifar10_sample'; drop it"
    )
    assert not (tmp_path / "p" / "scores.csv").exists()
    # a fidelity's bad override is named with the fidelity, before anything trains
    with pytest.raises(SystemExit) as caught:
        proxy_rank.main([*argv, "--fidelity", "short: train.bogus=1"])
    message = str(caught.value)
    assert message.startswith("fidelity short: --set 'train.bogus=1': unknown override key")
    assert "\n" not in message


def test_a_row_cut_off_by_a_kill_trains_again_and_later_rows_start_on_their_own_line(
    tmp_path, monkeypatch
):
    out = scripted_study(tmp_path, tmp_path / "cut", {"long": LONG}, {"long": 100.0})
    whole = (out / "scores.csv").read_text()
    lines = whole.splitlines(keepends=True)
    cut = lines[-1][: len(lines[-1]) // 2]  # the last row (genotype 7) half written
    (out / "scores.csv").write_text("".join(lines[:-1]) + cut)
    assert [int(r["index"]) for r in proxy_rank.read_scores(out / "scores.csv")] == [0, 2, 3, 5]
    trained = []

    def fake_train_fidelity(fidelity, config, dataset, genotypes, todo, scores, wall_path):
        name = fidelity.name
        trained.append((name, todo))
        proxy_rank.drop_cut_off_row(scores)  # as train_fidelity does before it appends
        with scores.open("a") as handle:
            for i in todo:
                handle.write(f"{name},{i},{genotypes[i].hash},0.{i + 1},1.0,1.0\n")

    monkeypatch.setattr(proxy_rank, "train_fidelity", fake_train_fidelity)
    monkeypatch.setattr(proxy_rank, "load_dataset", lambda settings: None)
    config = table_args(tmp_path, out)[1]
    proxy_rank.main(["--config", config, "--genotypes", str(N), "--out", str(out),
                     "--reference", "long: train.epochs=3"])  # fmt: skip
    assert trained == [("long", [1, 4, 6, 7])]
    text = (out / "scores.csv").read_text()
    assert text.startswith("".join(lines[:-1]))  # the whole rows as they were
    new = text[len("".join(lines[:-1])) :].splitlines()
    assert [line.split(",")[:2] for line in new] == [["long", str(i)] for i in (1, 4, 6, 7)]
    assert all(len(line.split(",")) == 6 for line in new)  # the cut row is gone, not glued
    rows = proxy_rank.read_scores(out / "scores.csv")
    assert sorted(int(r["index"]) for r in rows) == list(range(N))


def test_dropping_a_cut_off_row_keeps_every_whole_row(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("fidelity,index,hash,accuracy,loss,train_seconds\nlong,0,ab,0.5,1,1\nlo")
    proxy_rank.drop_cut_off_row(path)
    assert path.read_text().endswith("long,0,ab,0.5,1,1\n")
    path.write_text("fideli")  # a header cut off: nothing is left (train_fidelity writes one)
    proxy_rank.drop_cut_off_row(path)
    assert path.read_text() == ""
    assert proxy_rank.read_scores(path) == []


@pytest.mark.parametrize("text", ["long,x,ab,0.5,1,1\n", "long,3,ab,,1,1\n", "long\n"])
def test_a_bad_score_row_is_refused_in_one_line_naming_it(tmp_path, text):
    path = tmp_path / "scores.csv"
    path.write_text("fidelity,index,hash,accuracy,loss,train_seconds\nlong,0,ab,0.5,1,1\n" + text)
    with pytest.raises(SystemExit, match=r"scores.csv, line 3: not a score row; delete"):
        proxy_rank.read_scores(path)


@pytest.mark.parametrize("text", ['{"long": 1', "[1, 2]", '{"long": "a"}'])
def test_broken_wall_seconds_are_refused_in_one_line(tmp_path, text):
    path = tmp_path / "wall_seconds.json"
    path.write_text(text)
    with pytest.raises(SystemExit, match="not a mapping of fidelity names to seconds"):
        proxy_rank.read_wall_seconds(path)


# A stopped fidelity (stop_after=N): scored as promotion: continue scores a lower rung.


def test_a_stopped_fidelity_scores_as_a_continued_rung_does(tmp_path):
    """``stop_after=1`` of a 2-epoch schedule gives, per genotype, the score the evaluator
    gives a continued rung-0 trial of that schedule (so the study measures what a
    continued search ranks by); stopped at the schedule's end it equals the plain
    fidelity; it is not the 1-epoch training (the schedule differs); no checkpoint stays."""
    import torch

    from bnn_nas.data import data_settings, load_dataset
    from bnn_nas.search.budget import Budget
    from bnn_nas.search.evaluator import Evaluator, split_for_search
    from bnn_nas.space.search_space import load_search_space

    config_path = write(tmp_path)
    out = tmp_path / "proxy"
    fit = "train.epochs=2 data.search_train_size=100"
    summary = proxy_rank.main([
        "--config", str(config_path), "--genotypes", "3", "--out", str(out),
        "--fidelity", f"c1-of-2: {fit} stop_after=1",
        "--fidelity", f"c2-of-2: {fit} stop_after=2",
        "--fidelity", "e1: train.epochs=1 data.search_train_size=100",
        "--reference", f"e2: {fit}",
    ])  # fmt: skip
    scores: dict[str, dict[int, float]] = {}
    with (out / "scores.csv").open() as handle:
        for row in csv.DictReader(handle):
            scores.setdefault(row["fidelity"], {})[int(row["index"])] = float(row["loss"])
    assert scores["c2-of-2"] == scores["e2"]
    assert scores["c1-of-2"] != scores["e1"]
    assert summary["fidelities"]["c1-of-2"]["stop_after"] == 1
    assert summary["fidelities"]["c1-of-2"]["overrides"] == fit.split()
    assert not any((out / "checkpoints").rglob("*.pt"))
    # the continued rung's score, computed by the evaluator itself
    fidelity = proxy_rank.Fidelity.parse(f"c1-of-2: {fit} stop_after=1")
    config = proxy_rank.fidelity_config(str(config_path), (), fidelity)
    genotypes = proxy_rank.sample_genotypes(config, 3, 0)
    evaluator = Evaluator(
        load_search_space(config.search_space),
        split_for_search(load_dataset(data_settings(config.data)), config),
        config.train, torch.device("cpu"), config.seed,
    )  # fmt: skip
    evaluator.checkpoints = tmp_path / "rungs"
    for i, genotype in enumerate(genotypes):
        low = evaluator(genotype, budget=Budget(epochs=1, schedule_epochs=2, save=f"t{i}.pt"))
        assert low.loss == scores["c1-of-2"][i]


@pytest.mark.parametrize(
    ("fidelity", "says"),
    [
        ("c: train.epochs=2 stop_after=0", "stop_after takes one whole number of epochs >= 1"),
        ("c: train.epochs=2 stop_after=x", "stop_after takes one whole number of epochs >= 1"),
        ("c: stop_after=1 train.epochs=2 stop_after=2", "(got stop_after=1 stop_after=2)"),
        ("c: train.epochs=2 stop_after=3", "stop_after=3 is beyond its schedule of "
                                           "train.epochs=2; give at most that many"),
    ],
)  # fmt: skip
def test_a_bad_stop_after_is_refused_in_one_line_before_anything_trains(tmp_path, fidelity, says):
    out = tmp_path / "proxy"
    with pytest.raises(SystemExit) as caught:
        proxy_rank.main(["--config", str(write(tmp_path)), "--genotypes", "3", "--out",
                         str(out), "--fidelity", fidelity,
                         "--reference", "long: train.epochs=1"])  # fmt: skip
    message = str(caught.value)
    assert message.startswith("fidelity c: ") and says in message and "\n" not in message
    assert not (out / "scores.csv").exists()


@pytest.mark.parametrize(
    ("fidelity", "reference", "says"),
    [
        ("c: train.epochs=1 data.name=cifar10 data.root=/data/cifar10", "long: train.epochs=1",
         "fidelity c: data.name=cifar10 changes which images are loaded"),
        ("c: train.epochs=1", "long: train.epochs=1 data.root=/other/images",
         "--reference long: data.root=/other/images changes which images are loaded"),
    ],
)  # fmt: skip
def test_a_fidelity_on_other_images_is_refused_in_one_line_before_anything_trains(
    tmp_path, fidelity, reference, says
):
    # the study loads the base config's data once: another data.name or data.root in a
    # fidelity's overrides trained silently on the base images
    out = tmp_path / "proxy"
    with pytest.raises(SystemExit) as caught:
        proxy_rank.main(["--config", str(write(tmp_path)), "--genotypes", "3", "--out",
                         str(out), "--fidelity", fidelity, "--reference", reference])  # fmt: skip
    message = str(caught.value)
    assert message.startswith(says) and "\n" not in message
    assert "every fidelity trains on the base config's data" in message
    assert not (out / "scores.csv").exists()
