"""The network a run directory describes: its saved config, and the network `bnn-nas
train` builds from a config (the student of a training, the teacher of a distillation).

A leaf of bnn_nas.train: run.py (training) and distill.py (loading a teacher) both read
run directories through it, and it imports neither.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from torch import nn

from bnn_nas.config import Config, config_from_dict
from bnn_nas.errors import ConfigError
from bnn_nas.io import load_yaml, read_text_file
from bnn_nas.space.genotype import Genotype
from bnn_nas.space.network import build_model
from bnn_nas.space.search_space import load_search_space
from bnn_nas.train.seeding import seed_everything


def saved_run_config(run_dir: Path) -> Config | None:
    """RUN/config.yaml parsed (settings added to bnn-nas since take their defaults), or
    None when the run has none."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return None
    try:
        saved = load_yaml(read_text_file(path, "config")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {' '.join(str(err).split())}") from err
    return config_from_dict(saved, str(path))


def build_final_network(
    config: Config, genotype: Genotype | None, num_classes: int, image_size: int | None = None
) -> nn.Module:
    """The network `bnn-nas train` trains: the genotype at the config's final size, or the
    config's baseline; its initial weights come from the config's seed. ``image_size``
    picks a baseline's layout (CIFAR or ImageNet) and is checked against a cell stem."""
    space = load_search_space(config.search_space)
    seed_everything(config.seed)  # the initial weights are part of the run's identity
    return build_model(config.model, space, num_classes, genotype, image_size=image_size)
