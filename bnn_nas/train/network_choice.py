"""Which network a training trains: a genotype, or a baseline model in a block family or
as its float twin, set into a config as `bnn-nas train`'s --genotype/--model/--family do.
Its own module because the CLI, the API and a teacher spec (bnn_nas.train.teacher_spec) all
choose networks this way, and the last sits below the API."""

from __future__ import annotations

from dataclasses import replace

from bnn_nas import extensions
from bnn_nas.config import Config
from bnn_nas.errors import ConfigError
from bnn_nas.space.genotype import Genotype

# a baseline's float twin: both binarizers the identity (a distillation teacher)
FLOAT_TWIN = {"act": "identity", "weight": "identity"}


def network_config(
    config: Config, genotype: Genotype | None, model: str | None, family: str | None
) -> Config:
    """``config`` set to train ``genotype`` or baseline ``model`` (``family``: its block
    family, ``"float"`` the float twin of the config's family), as `bnn-nas train`'s
    --genotype/--model/--family do."""
    if (genotype is None) == (model is None):
        raise ConfigError("give either --genotype FILE_OR_TEXT or --model NAME")
    twin = family == "float"
    if model is None:
        if twin:
            raise ConfigError(
                "--family float trains the float twin of a baseline: give --model NAME too"
            )
        return config
    extensions.get_baseline(model)  # an unknown name: one line with the close names
    if family is not None and not twin:
        extensions.get_family(family)
    blocks = config.model.family if twin or family is None else family
    options = {**config.model.options, **FLOAT_TWIN} if twin else config.model.options
    return replace(config, model=replace(config.model, type=model, family=blocks,
                                         options=options))  # fmt: skip
