"""The ``optuna`` controller (any Optuna sampler over a bnn-nas space, the store the source
of truth, exact resume) and ``bnn-nas export-optuna`` (the [optuna] extra, in [test])."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bnn_nas.cli import main
from bnn_nas.config import config_from_dict
from bnn_nas.errors import ConfigError
from bnn_nas.search.derive import open_run, pareto_trials
from bnn_nas.space.search_space import load_search_space
from tests.test_faults import (
    SPACE,
    FakeExecutor,
    Injector,
    Killed,
    end_state,
    rows,
    run_search,
    search_cmd,
    wait_for,
)
from tests.test_objectives import SEARCH_CIFAR

optuna = pytest.importorskip("optuna")
from bnn_nas.extensions import SAMPLERS  # noqa: E402
from bnn_nas.search.optuna_search import (  # noqa: E402  (after the skip)
    distributions,
    genotype_of,
    params_of,
    register_sampler,
    sampler_factory,
)

OPTIONS = {"tpe": {"n_startup_trials": 3}, "nsga2": {"population_size": 4}, "random": {}}


def config(sampler: str = "tpe", budget: int = 10, **search):
    return config_from_dict({
        "seed": 3, "device": "cpu", "search_space": SPACE,
        "search": {"controller": "optuna", "budget": budget, "sampler": sampler,
                   "sampler_options": OPTIONS.get(sampler, {}), **search},
    })  # fmt: skip


def test_a_genotype_is_one_categorical_per_edge_op_and_input_and_back():
    space = load_search_space(SPACE)
    dists = distributions(space)
    assert len(dists) == 2 * space.steps * 2 * 2  # cells x steps x edges x (op, input)
    assert dists["normal/1/0/input"].choices == (0, 1, 2)
    assert dists["normal/1/1/input"].choices == (0, 1)  # distinct: the other nodes
    rng = random.Random(0)
    for _ in range(50):
        genotype = space.random_sample(rng)
        params = params_of(genotype, space)
        assert set(params) == set(dists) and genotype_of(params, space) == genotype
        assert all(params[k] in dists[k].choices for k in params)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_a_killed_search_resumes_to_the_same_end(tmp_path, monkeypatch, sampler):
    """Killed in the store and the executor, then resumed: the same proposals (the samplers
    see the studies the uninterrupted run built), all in the space, none twice."""
    reference = tmp_path / "straight.sqlite"
    run_search(reference, config(sampler), FakeExecutor())
    expected = end_state(reference)
    assert len(expected) == 10 and len({r[1] for r in expected}) == 10
    assert {json.loads(r[3])["kind"] for r in expected} == {"optuna"}
    if sampler == "nsga2":  # its generation is kept in the origin, for the replay
        assert json.loads(expected[-1][3])["optuna_system_attrs"]
    path = tmp_path / "killed" / "trials.sqlite"
    path.parent.mkdir()
    for point, at in [("finish", 4), ("next_outcome", 2), ("add", 3)]:
        with monkeypatch.context() as patch:
            Injector(patch, point, at)
            with pytest.raises(Killed):
                run_search(path, config(sampler), FakeExecutor())
    run_search(path, config(sampler), FakeExecutor())
    assert end_state(path) == expected


def test_samplers_by_path_and_by_plugin_and_bad_ones():
    space = load_search_space(SPACE)
    from bnn_nas.search.controllers import make_controller

    # samplers that need nothing beyond optuna (QMC and GP also need scipy)
    for name in ("optuna.samplers:RandomSampler", "optuna.samplers.TPESampler"):
        controller = make_controller(config(name).search, space, 0, lambda g: {"ops": 1.0})
        assert len({p.genotype.hash for p in controller.ask(3)}) == 3

    @register_sampler("test_random")
    def seeded_random(seed=None):
        return optuna.samplers.RandomSampler(seed=seed)

    try:
        controller = make_controller(config("test_random").search, space, 0,
                                     lambda g: {"ops": 1.0})  # fmt: skip
        assert controller.ask(1)[0].origin == {"kind": "optuna", "sampler": "test_random"}
        with pytest.raises(ConfigError, match="'tpe' is already registered"):
            register_sampler("tpe")(seeded_random)
        # the choices listed are the registry's, the plugin's among them
        with pytest.raises(ConfigError, match="is not an Optuna sampler; use one of gp, nsga2, "
                           "nsga3, qmc, random, test_random, tpe or package"):  # fmt: skip
            make_controller(config("tpee").search, space, 0, lambda g: {"ops": 1.0})
    finally:
        SAMPLERS.unregister("test_random")
    # a config names no code to import or call: only sampler classes of imported modules
    assert "bnn_nas_not_imported" not in sys.modules
    for name, expected in (("subprocess:run", r"\(an optuna.samplers.BaseSampler\)$"),
                           ("bnn_nas_not_imported:Sampler", "--plugin bnn_nas_not_imported")):
        with pytest.raises(ConfigError, match=expected):
            make_controller(config(name, sampler_options={"args": "false"}).search, space, 0,
                            lambda g: {"ops": 1.0})  # fmt: skip
    cmaes = "optuna.samplers:CmaEsSampler"  # one objective only (and no categoricals)
    with pytest.raises(ConfigError, match=rf"search\.sampler {cmaes}: .*multi-objective"):
        make_controller(config(cmaes).search, space, 0, lambda g: {"ops": 1.0})
    with pytest.raises(ConfigError, match="sampler_options for tpe"):
        make_controller(config("tpe", sampler_options={"n_startup": 2}).search, space, 0,
                        lambda g: {"ops": 1.0})  # fmt: skip


def test_the_samplers_are_one_registry():
    assert SAMPLERS.names() == ["gp", "nsga2", "nsga3", "qmc", "random", "tpe"]
    assert SAMPLERS.get("tpe").doc == "optuna.samplers.TPESampler"
    assert sampler_factory("nsga2") is optuna.samplers.NSGAIISampler
    with pytest.raises(ConfigError, match="invalid"):
        register_sampler("not-a-name")


def test_a_search_leaves_optunas_log_level_as_it_was(tmp_path):
    """bnn-nas quiets Optuna only while it runs a study: the process's level is the user's."""
    import logging

    class Kept(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    kept = Kept()
    logger = logging.getLogger("optuna")  # optuna's own handler does not propagate
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    logger.addHandler(kept)
    try:
        run_search(tmp_path / "trials.sqlite", config("tpe", budget=4), FakeExecutor())
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
        optuna.create_study()  # the user's own study logs at the user's level
    finally:
        logger.removeHandler(kept)
        optuna.logging.set_verbosity(before)
    created = [m for m in kept.messages if m.startswith("A new study created")]
    assert len(created) == 1  # only the user's: none from inside the search


def test_a_sampler_missing_a_package_is_one_line(monkeypatch):
    """QMC imports scipy when it first samples: without it, a one-line error naming it
    (CI's environment has no scipy; here its import is made to fail either way)."""
    from bnn_nas.search.controllers import make_controller

    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    space = load_search_space(SPACE)
    with pytest.raises(ConfigError, match=r"search\.sampler qmc needs scipy.*pip install scipy"):
        controller = make_controller(config("qmc").search, space, 0, lambda g: {"ops": 1.0})
        controller.ask(3)


def test_without_optuna_a_search_is_one_line_and_makes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import fails
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["search", "--config", str(path), "--run-dir", str(run)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "pip install 'bnn-nas[optuna]'" in line and not run.exists()


CONFIG = """\
seed: 5
device: cpu
search_space:
  steps: 2
  ops: [skip_connect, max_pool_3x3, xnor_conv_3x3, bireal_conv_3x3_skip_connect]
  network: {cells: 3, channels: 4, stem_multiplier: 2}
data: {name: cifar10_sample, valid_fraction: 0.2, search_train_size: 100, search_valid_size: 100}
train: {epochs: 1, batch_size: 50, lr: 0.005, eval_batch_size: 100}
search: {controller: optuna, sampler: tpe, sampler_options: {n_startup_trials: 2}, budget: 4}
"""


def scores(run) -> list[tuple]:
    """Each trial's id, hash, status, origin and metrics, without its timings."""
    out = []
    for record in open_run(run)[0]:
        metrics = dict(record.result.metrics)
        metrics.pop("train_seconds")
        out.append((record.id, record.hash, record.status.value, record.origin, metrics))
    return out


@pytest.mark.slow
def test_optuna_tpe_search_resumes_after_sigkill_and_exports_the_same_trials(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    straight = tmp_path / "straight"
    # both in processes of their own: tests/conftest.py runs torch on one thread here, and
    # evaluation on one thread rounds differently from the CLI's on all cores
    done = subprocess.run(search_cmd(path, straight), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    expected = scores(straight)
    assert [s[3] for s in expected] == [{"kind": "optuna", "sampler": "tpe"}] * 4

    # SIGKILLed while trial 3 (TPE's first from its model) trains; trial 4 is proposed
    # after the resume, by a TPE rebuilt from the store
    run = tmp_path / "run"
    proc = subprocess.Popen(search_cmd(path, run), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_for(lambda: [r[2] for r in rows(run)][:3] == ["done", "done", "running"])
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    resumed = subprocess.run(search_cmd(path, run), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 interrupted trial to rerun" in resumed.stderr and scores(run) == expected

    records, objectives = open_run(run)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = CliRunner().invoke(main, ["export-optuna", str(run), url])
    assert result.exit_code == 0, result.output
    assert f"wrote 4 trials to study 'run' in {url}" in result.output
    study = optuna.load_study(study_name="run", storage=url)
    assert [d.name.lower() for d in study.directions] == [o.direction for o in objectives]
    assert study.metric_names == [o.name for o in objectives]
    space = load_search_space(config_from_dict(open_run_config_of(run)).search_space)
    assert len(study.trials) == len(records)
    for trial, record in zip(study.trials, records, strict=True):
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.values == [o.value(record.result.metrics) for o in objectives]
        assert trial.params == params_of(record.genotype, space)
        assert genotype_of(trial.params, space) == record.genotype
        assert (trial.user_attrs["trial"], trial.user_attrs["hash"]) == (record.id, record.hash)
        assert trial.user_attrs["metrics"] == record.result.metrics
        assert trial.intermediate_values == {0: record.result.curve[0].train_loss}
    front = {t.user_attrs["trial"] for t in study.best_trials}
    assert front == {r.id for r in pareto_trials(records, objectives)}  # dashboard's front
    again = CliRunner().invoke(main, ["export-optuna", str(run), url])
    assert again.exit_code == 2 and "--overwrite" in again.stderr  # never merged into
    assert CliRunner().invoke(main, ["export-optuna", str(run), url, "--overwrite"]).exit_code == 0
    assert len(optuna.load_study(study_name="run", storage=url).trials) == 4


def open_run_config_of(run) -> dict:
    from bnn_nas.search.derive import open_run_config

    return open_run_config(run)[2]


def test_any_run_exports_today_a_schema_1_store(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = CliRunner().invoke(main, ["export-optuna", str(SEARCH_CIFAR), url,
                                       "--study-name", "cifar"])  # fmt: skip
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="cifar", storage=url)
    assert len(study.trials) == 160
    records, objectives = open_run(SEARCH_CIFAR)
    assert {t.user_attrs["trial"] for t in study.best_trials} == {
        r.id for r in pareto_trials(records, objectives)}  # fmt: skip
    best = max(study.trials, key=lambda t: t.values[0])
    assert best.user_attrs["trial"] == 153 and best.user_attrs["origin"] == "mutation"


def test_a_storage_that_cannot_be_opened_is_one_line(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'no' / 'such' / 'study.db'}", "not a url"):
        result = CliRunner().invoke(main, ["export-optuna", str(SEARCH_CIFAR), url])
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"bnn-nas: error: optuna storage {url}: "), line
