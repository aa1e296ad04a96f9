"""benchmarks.ops_scale: a search-size OPs cap read against the final network's OPs."""

from __future__ import annotations

import json
import random

from benchmarks.ops_scale import Scale, sampled_scales, summary
from bnn_nas.cli.options import load_run_config
from bnn_nas.config import ModelConfig
from bnn_nas.cost import count_cost
from bnn_nas.space.network import build_model
from bnn_nas.space.search_space import load_search_space


def test_summary_counts_shares_and_admitted_genotypes_over_the_final_limit():
    scales = [Scale(1.0e6, 2.0e6), Scale(2.0e6, 5.0e6), Scale(3.0e6, 6.3e6)]
    figures = summary(scales, max_ops=2.5e6, final_limit=5.5e6)
    assert (figures["ratio_min"], figures["ratio_max"]) == (2.0, 2.5)
    assert figures["ratio_mean"] == round((2.0 + 2.5 + 2.1) / 3, 3)
    assert figures["share_under_final_limit"] == 2 / 3
    assert figures["share_under_max_ops"] == 2 / 3
    assert figures["admitted_over_final_limit"] == 0  # 5.0e6 of the admitted two is under
    assert figures["max_ops_times_ratio_max"] == 6_250_000
    assert figures["final_ops_median"] == 5.0e6
    tight = summary(scales, max_ops=2.5e6, final_limit=4.0e6)
    assert tight["admitted_over_final_limit"] == 1
    assert "max_ops" not in summary(scales, max_ops=None, final_limit=5.5e6)


def test_sampled_scales_are_the_cost_model_at_both_sizes(tmp_path):
    config = load_run_config("configs/cifar_tiny.yaml", ())
    space = load_search_space(config.search_space)
    scales = sampled_scales(space, ModelConfig(cells=3, channels=12), 2, seed=5)
    rng = random.Random(5)
    for scale in scales:
        genotype = space.random_sample(rng)
        small = build_model(ModelConfig(), space, 10, genotype)
        large = build_model(ModelConfig(cells=3, channels=12), space, 10, genotype)
        assert scale.search_ops == count_cost(small).ops
        assert scale.final_ops == count_cost(large).ops
        assert scale.final_ops != scale.search_ops


def test_a_bad_config_or_setting_ends_in_its_one_line(tmp_path):
    import pytest

    from benchmarks.ops_scale import main

    missing = tmp_path / "none.yaml"
    with pytest.raises(SystemExit, match=r"^config file .*none\.yaml not found; pass --config"):
        main(["--config", str(missing)])
    with pytest.raises(SystemExit) as caught:
        main(["--config", "configs/cifar_tiny.yaml", "--set", "search.bogus=1"])
    message = str(caught.value)
    assert message.startswith("--set 'search.bogus=1': unknown override key")
    assert "\n" not in message


def test_a_config_without_a_final_size_reports_the_spaces_own(capsys):
    from benchmarks.ops_scale import main

    figures = main(["--config", "configs/cifar_tiny.yaml", "--samples", "1"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    space = load_search_space(load_run_config("configs/cifar_tiny.yaml", ()).search_space)
    assert line["final_size"] == f"{space.network.cells} x {space.network.channels}"
    assert figures["ratio_min"] == figures["ratio_max"] == 1.0  # the same network twice
