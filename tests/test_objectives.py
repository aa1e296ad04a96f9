"""Objectives as data: any number of named objectives through Pareto sorting, the
controller, derive, status and plot; today's stores (docs/results) read as before."""

from __future__ import annotations

import csv
import itertools
import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from bnn_nas.cli import main
from bnn_nas.config import Config, SearchConfig, config_from_dict, config_to_dict
from bnn_nas.errors import ConfigError
from bnn_nas.objectives import Objective, points
from bnn_nas.search.derive import choose, front, knee, open_run
from bnn_nas.search.engine import SearchRun, check_resumable
from bnn_nas.search.executors import LocalExecutor
from bnn_nas.search.pareto import dominates, non_dominated_sort, pareto_front
from bnn_nas.search.store import STORE_FILE, SQLiteStore
from bnn_nas.search.trials import CurvePoint, Proposal, TrialRecord, TrialResult
from bnn_nas.space.search_space import load_search_space

ROOT = Path(__file__).resolve().parents[1]
SEARCH_CIFAR = ROOT / "docs" / "results" / "search-cifar"
THREE = (
    Objective("accuracy", "maximize"),
    Objective("ops", "minimize"),
    Objective("params", "minimize"),
)
SPACE = load_search_space("bnn_darts")

values = st.integers(0, 4).map(float)  # few distinct values: ties and duplicates are common
directions3 = st.tuples(*[st.sampled_from(["maximize", "minimize"])] * 3)


def brute_front(pts, directions):
    return {i for i, p in enumerate(pts) if not any(dominates(q, p, directions) for q in pts)}


@given(st.lists(st.tuples(values, values, values), min_size=1, max_size=25), directions3)
def test_front_of_three_objectives_equals_brute_force(pts, directions):
    assert set(pareto_front(pts, directions)) == brute_front(pts, directions)
    fronts = non_dominated_sort(pts, directions)
    assert sorted(i for f in fronts for i in f) == list(range(len(pts)))


@given(st.lists(st.tuples(values, values), min_size=1, max_size=25),
       st.tuples(*[st.sampled_from(["maximize", "minimize"])] * 2))  # fmt: skip
def test_two_objective_sweep_agrees_with_the_general_rule(pts, directions):
    assert set(pareto_front(pts, directions)) == brute_front(pts, directions)


def fake(genotype) -> TrialResult:
    """Synthetic, deterministic metrics of a genotype (three conflicting objectives)."""
    rng = random.Random(genotype.hash)
    binary = sum(op.startswith(("xnor", "bireal")) for op, _ in genotype.normal + genotype.reduce)
    pools = sum("pool" in op for op, _ in genotype.normal + genotype.reduce)
    return TrialResult.of(
        accuracy=0.1 + 0.04 * binary + 0.01 * rng.random(), loss=1.0, train_loss=1.0,
        ops=1e6 * (1 + binary) + 1e4 * rng.random(), params=1e3 * (1 + pools + binary)
        + 10 * rng.random(), train_seconds=0.1,
    )  # fmt: skip


def three_objective_run(run_dir: Path) -> SQLiteStore:
    """A pareto search over three objectives, its store in run_dir, the trials faked."""
    config = replace(Config(seed=3), search=SearchConfig(
        controller="pareto", budget=24, population=6, objectives=THREE))  # fmt: skip
    run_dir.mkdir()
    store = SQLiteStore(run_dir / STORE_FILE)
    store.set_meta("config", config_to_dict(config))
    costs = {}

    def cost_of(genotype):
        costs[genotype.hash] = fake(genotype).metrics
        return costs[genotype.hash]

    run = SearchRun(config, SPACE, store, cost_of, run_dir)
    run.prepare()
    run.run(LocalExecutor(fake))
    return store


def test_three_objective_search_front_equals_brute_force_and_derives(tmp_path):
    run_dir = tmp_path / "run"
    store = three_objective_run(run_dir)
    records = store.trials()
    assert len(records) == 24 and all(r.done for r in records)
    assert {r.origin["kind"] for r in records} == {"random", "mutation"}  # NSGA-II bred
    pts = points([r.result.metrics for r in records], THREE)
    directions = [o.direction for o in THREE]
    expected = {records[i].id for i in brute_front(pts, directions)}
    loaded, objectives = open_run(run_dir)
    assert objectives == THREE
    assert {r.id for r in front(loaded, objectives)} == expected
    chosen, ranking = choose(loaded, "pareto", None, objectives)
    assert chosen in ranking and {r.id for r in ranking} == expected
    assert knee(ranking, objectives).id == chosen.id
    # through the command line: derive --by pareto, status, a limit on ops
    result = CliRunner().invoke(main, ["derive", str(run_dir), "--by", "pareto", "--top", "99"])
    assert result.exit_code == 0, result.output
    assert f"Pareto front (by OPs), {len(expected)} candidates:" in result.output
    assert f" * trial {chosen.id} acc " in result.output and " params " in result.output
    saved = (run_dir / "genotype.yaml").read_text()
    assert f"trial: {chosen.id}" in saved and "name: params" in saved
    status = CliRunner().invoke(main, ["status", str(run_dir)])
    assert status.exit_code == 0 and "params (k)" in status.output.splitlines()[0]
    cheapest = min(r.result.ops for r in loaded)
    limited = CliRunner().invoke(
        main, ["derive", str(run_dir), "--by", "pareto", "--max-ops", str(cheapest)]
    )
    assert limited.exit_code == 0 and "1 candidate:" in limited.output
    assert all(r.result.ops <= cheapest for r in choose(loaded, "pareto", cheapest, THREE)[1])


def test_a_cost_limit_is_never_proposed(tmp_path):
    limit = 9.5e6
    objectives = (THREE[0], Objective("ops", "minimize", limit), THREE[2])
    config = replace(Config(seed=1), search=SearchConfig(
        controller="pareto", budget=12, population=4, objectives=objectives))  # fmt: skip
    run = SearchRun(config, SPACE, _memory(), lambda g: fake(g).metrics)
    run.run(LocalExecutor(fake))
    assert all(r.result.ops <= limit for r in run.store.trials())


def _memory():
    from bnn_nas.search.store import MemoryStore

    return MemoryStore()


def test_evolution_reads_its_primary_objective():
    objectives = (Objective("params", "minimize"),)
    config = replace(Config(seed=2), search=SearchConfig(
        controller="evolution", budget=30, population=6, sample_size=2,
        objectives=objectives))  # fmt: skip
    run = SearchRun(config, SPACE, _memory(), lambda g: 1.0)
    run.run(LocalExecutor(fake))
    params = [r.result.params for r in run.store.trials()]
    assert min(params[15:]) <= min(params[:6])  # it bred towards fewer params


def test_knee_by_hand():
    def record(i, acc, ops):
        from bnn_nas.search.trials import TrialRecord, TrialStatus

        return TrialRecord(i, SPACE.random_sample(random.Random(i)), TrialStatus.DONE, {},
                           result=TrialResult.of(accuracy=acc, ops=ops))  # fmt: skip

    # cheap and poor, a knee, expensive and barely better: the knee is the middle one
    recs = [record(1, 0.10, 1e5), record(2, 0.50, 1e6), record(3, 0.52, 1e8)]
    assert [r.id for r in front(recs)] == [1, 2, 3]
    assert knee(front(recs)).id == 2
    assert knee(recs[:2]).id == 2  # two points: the more accurate
    assert choose(recs, "accuracy", None)[0].id == 3
    assert choose(recs, "accuracy", 2e6)[0].id == 2
    with pytest.raises(ConfigError, match=r"trial has OPs <= 10.0k; the cheapest has 100k$"):
        choose(recs, "accuracy", 1e4)
    # a limit and a cheapest trial that round alike read apart, with no more digits than needed
    with pytest.raises(ConfigError, match=r"OPs <= 99\.99k; the cheapest has 100\.0k$"):
        choose(recs, "accuracy", 99_990)


def test_written_apart_adds_digits_only_where_values_would_tie():
    from bnn_nas.objectives import written_apart

    assert written_apart("ops", 2_050_000, 2_054_000) == ("2.050M", "2.054M")
    assert written_apart("ops", 2_050_000, 3_000_000) == ("2.05M", "3.00M")
    assert written_apart("ops", 2_050_000, 2_050_000) == ("2.05M", "2.05M")
    assert written_apart("bytes", 1_440_000, 1_440_400) == ("1.4400 MB", "1.4404 MB")
    low, high = written_apart("accuracy", 0.91231, 0.91234)
    assert low != high and float(low.rstrip("%")) < float(high.rstrip("%"))


def test_objectives_in_the_config():
    listed = [{"name": "accuracy"}, {"name": "params", "direction": "minimize", "limit": 5e4}]
    config = config_from_dict({"search": {"objectives": listed}})
    assert config.search.objectives[1] == Objective("params", "minimize", 5e4)
    assert config_from_dict(config_to_dict(config)) == config
    for bad, message in [
        ([{"name": "acuracy"}], "unknown metric 'acuracy'; did you mean accuracy?"),
        ([{"name": "ops", "direction": "down"}], "direction 'down' is not one of"),
        ([], "search.objectives is empty"),
        ([{"name": "ops"}, {"name": "ops"}], "names ops twice"),
    ]:
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"search": {"objectives": bad}}, "c.yaml")


def test_a_search_stored_before_objectives_resumes():
    stored = config_to_dict(Config())
    del stored["search"]["objectives"]  # what bnn-nas wrote before objectives were data
    check_resumable(stored, config_to_dict(Config()), Path("run"))


@pytest.fixture
def search_cifar(tmp_path) -> Path:
    copy = tmp_path / "search-cifar"
    shutil.copytree(SEARCH_CIFAR, copy)
    return copy


def test_todays_store_loads_with_the_same_trials_and_derives_the_same(search_cifar):
    records, objectives = open_run(search_cifar)
    assert objectives == THREE[:2]  # stored before objectives: accuracy vs OPs
    with (SEARCH_CIFAR / "trials.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(records) == len(rows) == 160
    for record, row in zip(records, rows, strict=True):
        assert (str(record.id), record.hash, record.status.value) == (
            row["id"], row["hash"], row["status"])  # fmt: skip
        for name in ("accuracy", "loss", "bops", "flops", "ops", "bytes", "train_seconds"):
            assert record.result.metrics[name] == pytest.approx(float(row[name]), rel=1e-12)
    # the derived genotypes of the code before objectives were data
    assert choose(records, "accuracy", None)[0].hash == "76be9a6011e10ad7"  # genotype.yaml
    assert choose(records, "accuracy", None)[0].id == 153
    assert choose(records, "pareto", None)[0].id == 157
    assert [r.id for r in choose(records, "pareto", 2.5e6)[1]] == [142, 155, 125]
    assert choose(records, "pareto", 2.5e6)[0].id == 155
    result = CliRunner().invoke(main, ["status", str(search_cifar)])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "  id  status   accuracy   OPs (M)  seconds  origin"
    assert lines[-1] == "best: trial 153 accuracy 0.6049 OPs 3.01M"
    result = CliRunner().invoke(main, ["derive", str(search_cifar)])
    assert result.exit_code == 0
    assert result.output.splitlines()[1] == " * trial 153 acc 0.6049 OPs 3.01M (76.1 s) mutation"
    assert "hash: 76be9a6011e10ad7" in (search_cifar / "genotype.yaml").read_text()
    assert SQLiteStore(search_cifar / STORE_FILE).get_meta("schema_version") == 1  # read only


def test_a_schema_1_store_takes_new_results_and_becomes_3(search_cifar):
    store = SQLiteStore(search_cifar / STORE_FILE)
    before = store.trials()
    assert all(r.result.curve == () for r in before)  # stored before curves were kept
    (new,) = store.add([Proposal(before[0].genotype, {"kind": "test"})])
    store.start(new)
    curve = [CurvePoint(0, 2.0, 0.3, 1.9, 0.5, 0.01, 1.0)]
    store.finish(new, TrialResult({"accuracy": 0.5, "ops": 1.0}, curve=curve))
    assert store.get_meta("schema_version") == 3
    after = store.trials()
    assert after[-1].result.metrics == {"accuracy": 0.5, "ops": 1.0}
    assert after[-1].result.curve == tuple(curve)
    assert [r.result for r in after[:-1]] == [r.result for r in before]
    store.close()
    again = SQLiteStore(search_cifar / STORE_FILE, read_only=True)
    assert again.trials() == after
    assert choose(again.trials()[:-1], "accuracy", None)[0].id == 153  # derives as before


def schema_2_store(path: Path) -> list[TrialRecord]:
    """A store as the code of schema 2 wrote it (no curve column); returns its trials."""
    import sqlite3

    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE trials (id INTEGER PRIMARY KEY, genotype TEXT NOT NULL,
            hash TEXT NOT NULL, status TEXT NOT NULL, origin TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT,
            created_at REAL NOT NULL, started_at REAL, finished_at REAL);
        CREATE INDEX trials_hash ON trials (hash);
    """)
    source = SQLiteStore(SEARCH_CIFAR / STORE_FILE, read_only=True)
    records = source.trials()[:12]
    db.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    db.execute("INSERT INTO meta VALUES ('config', ?)",
               (json.dumps(source.get_meta("config")),))  # fmt: skip
    for r in records:
        metrics = {**r.result.metrics, "params": 7.0}  # schema 2: any metric names
        db.execute(
            "INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
            (r.id, str(r.genotype), r.hash, r.status.value, json.dumps(r.origin), r.attempts,
             json.dumps(metrics), r.created_at, r.started_at, r.finished_at),
        )  # fmt: skip
    db.commit()
    db.close()
    source.close()
    return records


def test_a_schema_2_store_reads_as_it_lies_and_takes_curves_as_3(tmp_path):
    path = tmp_path / STORE_FILE
    written = schema_2_store(path)
    old = SQLiteStore(path, read_only=True)
    assert old.schema_version == 2
    records = old.trials()
    old.close()
    assert [(r.id, r.hash, r.status) for r in records] == [
        (r.id, r.hash, r.status) for r in written]  # fmt: skip
    assert all(r.result.metrics["params"] == 7.0 and r.result.curve == () for r in records)
    best = choose(records, "accuracy", None)[0]
    assert best.id == choose(written, "accuracy", None)[0].id
    store = SQLiteStore(path)  # resumed: the curve column is added, the trials are as they were
    assert store.trials() == records and store.get_meta("schema_version") == 2
    (new,) = store.add([Proposal(records[0].genotype, {"kind": "test"})])
    store.start(new)
    curve = (CurvePoint(0, 2.0, 0.3, None, None, 0.01, 1.0),)
    store.finish(new, TrialResult({"accuracy": 0.1}, curve=curve))
    assert store.get_meta("schema_version") == 3
    assert store.trials()[:-1] == records and store.get(new).result.curve == curve


def test_the_brute_force_helper_is_right():
    pts = [(0.5, 1.0, 1.0), (0.4, 2.0, 2.0), (0.6, 3.0, 0.5)]
    assert brute_front(pts, ["maximize", "minimize", "minimize"]) == {0, 2}
    assert all(len(c) == 3 for c in itertools.combinations(range(4), 3))
