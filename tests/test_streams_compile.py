"""train.compile with the streams executor is a config error: torch.compile is not
thread-safe, and a compile in one thread resets the process-wide RNGs that another
thread is seeding its candidate's initial weights from."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bnn_nas.errors import ConfigError
from bnn_nas.search.engine import make_executor, open_search
from tests.test_executors import make_config


def test_streams_refuse_compiled_candidates(tmp_path):
    config = make_config(type="streams", trials_per_device=2)
    config = replace(config, train=replace(config.train, compile=True))
    _, evaluator = open_search(config, tmp_path / "run", resume=False)
    with pytest.raises(ConfigError, match=r"train\.compile.*processes"):
        make_executor(config, evaluator)
    uncompiled = replace(config, train=replace(config.train, compile=False))
    with make_executor(uncompiled, evaluator) as executor:
        assert type(executor).__name__ == "StreamExecutor"
