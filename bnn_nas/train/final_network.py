"""The network of a run directory: its saved config, the network description
(:class:`~bnn_nas.space.architecture.Architecture`) `bnn-nas train` records there, and
the network it trains from a config (the student of a training, the teacher of a
distillation).

A leaf of bnn_nas.train: run.py (training), distill.py (loading a teacher) and export
read run directories through it, and it imports neither.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import yaml
from torch import nn

from bnn_nas.config import Config, config_from_dict
from bnn_nas.errors import ConfigError
from bnn_nas.io import dump_yaml, load_yaml, read_text_file
from bnn_nas.space.architecture import Architecture
from bnn_nas.space.genotype import Genotype, load_genotype
from bnn_nas.train.seeding import seeded_build

NETWORK = "network.yaml"  # the run's Architecture, as `bnn-nas train` built it
REPORT = "report.json"  # a training's figures, written once its last epoch is done


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


def saved_genotype(run_dir: Path) -> Genotype | None:
    """The genotype RUN/genotype.yaml records, or None (a baseline's run has none)."""
    path = Path(run_dir) / "genotype.yaml"
    return load_genotype(str(path)) if path.is_file() else None


def network_text(architecture: Architecture) -> str:
    """RUN/network.yaml's text for ``architecture``."""
    return dump_yaml(architecture.to_dict())


def recorded_architecture(run_dir: Path) -> Architecture | None:
    """RUN/network.yaml read back, or None for a run directory written before bnn-nas
    recorded it. The primitives it names must be registered (the run's plugins loaded)."""
    path = Path(run_dir) / NETWORK
    if not path.is_file():
        return None
    try:
        data = load_yaml(read_text_file(path, "network description"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {' '.join(str(err).split())}") from err
    return Architecture.from_dict(data, str(path))


def run_architecture(
    run_dir: Path,
    config: Config,
    *,
    num_classes: int,
    image_size: int | None = None,
) -> Architecture:
    """The network a training run directory holds: RUN/network.yaml where `bnn-nas train`
    recorded it, else (older runs) the one its ``config`` (RUN/config.yaml) and
    RUN/genotype.yaml describe, for ``num_classes`` classes at ``image_size`` px (what its
    checkpoint and report.json, or the caller's data, say)."""
    recorded = recorded_architecture(run_dir)
    if recorded is not None:
        return recorded
    return Architecture.from_config(config, saved_genotype(run_dir), num_classes, image_size)


def build_trained_network(architecture: Architecture, seed: int) -> nn.Module:
    """``architecture`` freshly built in train mode, its initial weights drawn from
    ``seed`` (they are part of a run's identity)."""
    return seeded_build(partial(architecture.build, training=True), seed)


def build_final_network(
    config: Config, genotype: Genotype | None, num_classes: int, image_size: int | None = None
) -> nn.Module:
    """The network `bnn-nas train` trains: the genotype at the config's final size, or the
    config's baseline; its initial weights come from the config's seed. ``image_size``
    picks a baseline's layout (CIFAR or ImageNet) and is checked against a cell stem."""
    architecture = Architecture.from_config(config, genotype, num_classes, image_size)
    return build_trained_network(architecture, config.seed)
