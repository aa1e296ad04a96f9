"""Run configuration: YAML -> frozen dataclasses, strictly checked.

An unknown key or a wrong type is an error naming the key and the file, with the
closest valid key suggested; nothing is silently ignored. Every setting reaches the
code as an explicit, immutable value.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from bnn_nas.errors import BnnNasError, ConfigError
from bnn_nas.extensions import BASELINES, CONTROLLERS, DATASETS, EXECUTORS, FAMILIES
from bnn_nas.objectives import DEFAULT_OBJECTIVES, Objective, check_objectives
from bnn_nas.registry import Registry
from bnn_nas.units import parse_count

T = TypeVar("T")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, and how the training set is split for search."""

    name: str = "cifar10_sample"  # a registered dataset: bnn-nas datasets lists them
    root: str | None = None
    download: bool = False
    cache_dir: str | None = None
    # search-train / search-valid split of the training set (class-balanced, seeded)
    valid_fraction: float = 0.5
    search_train_size: int | None = None  # cap on search-train images (None: all)
    search_valid_size: int | None = None  # cap on search-valid images (None: all)
    # a plugin dataset's own settings (its registry entry's dataclass), written flat
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelConfig:
    """What `bnn-nas train --model` builds when no genotype is given."""

    type: str = "cells"  # cells, or a registered baseline model (resnet18, resnet20, ...)
    family: str = "xnor"  # baselines: the (registered) primitive family of their blocks
    options: dict[str, Any] = field(default_factory=dict)  # baselines: block options
    # cells: the final network may be larger than the search candidates (DARTS: 20 x 36)
    cells: int | None = None
    channels: int | None = None


# the config whose `final` section trains a teacher given as a spec (beside the student's
# config file, else from the working directory): the repository's float-teacher recipe
DEFAULT_TEACHER_CONFIG = "configs/recipes/teacher.yaml"


@dataclass(frozen=True)
class TeacherSpec:
    """A teacher that distillation trains first when ``run_dir`` holds none yet: what
    ``bnn-nas train --config CONFIG --model MODEL [--family FAMILY] | --genotype G
    --run-dir RUN_DIR`` trains, on the student's ``data`` section and device (a finished
    training there is used as it is, an unfinished one resumed to its end)."""

    run_dir: str = ""  # where the teacher is trained and read from (required)
    model: str | None = None  # a registered baseline (resnet18, ...), or
    genotype: str | None = None  # a genotype (text or file), as `bnn-nas train --genotype`
    family: str | None = None  # model's block family; float: its float twin (None: config's)
    config: str = DEFAULT_TEACHER_CONFIG  # its `final` section trains the teacher


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation from a trained (real-valued) teacher (Hinton et al. 2015).

    ``loss``: ``kl`` = weight * T^2 * KL(teacher_T || student_T) alone (ReActNet's
    distributional loss at T = 1); ``ce_kl`` = (1 - weight) * CE(labels) + weight * T^2 *
    KL (Hinton's mixture). The teacher runs in eval mode on the student's augmented batch.
    """

    # a run directory of `bnn-nas train` or its checkpoint.pt; or a mapping (TeacherSpec):
    # {model | genotype, family, config, run_dir}, trained first where run_dir holds none
    teacher: str | TeacherSpec = ""
    loss: str = "kl"  # kl | ce_kl
    temperature: float = 1.0
    weight: float = 1.0


@dataclass(frozen=True)
class MixConfig:
    """A mixing augmentation of whole batches, after crop/flip and Cutout (bnn_nas/data/mix.py).

    ``kind``: ``mixup`` (Zhang et al. 2018: lam * x + (1 - lam) * x[perm]) or ``cutmix``
    (Yun et al. 2019: x[perm] pasted into one box of area fraction 1 - lam); one lam ~
    Beta(alpha, alpha) and one partner permutation per batch; the loss is lam * CE(labels)
    + (1 - lam) * CE(partners). Both papers train CIFAR-10 with alpha = 1. ``prob``: the
    share of batches mixed (each decided from its own seeded draw; the others train as they
    are); CutMix's CIFAR experiments use 0.5.
    """

    kind: str = "mixup"  # mixup | cutmix
    alpha: float = 1.0
    prob: float = 1.0  # in [0, 1]: the probability that a batch is mixed (1: every batch)


@dataclass(frozen=True)
class StageConfig:
    """One stage of a staged final training: its own binarizers, optimiser run and schedule.

    Unset (None) settings take the section's value. The latent weights carry over from the
    stage before; optimiser state and schedule restart (Real-to-Binary, ReActNet).
    """

    epochs: int = 1
    act: str | None = None  # activation binarizer of every binary layer (None: the network's)
    weight: str | None = None  # weight binarizer (identity: float weights, binary acts)
    optimizer: str | None = None
    lr: float | None = None
    warmup_epochs: float | None = None
    weight_decay: float | None = None
    binary_weight_decay: float | None = None
    bn_weight_decay: float | None = None


@dataclass(frozen=True)
class TrainConfig:
    """One training run: a search trial (section `train`) or a final one (section `final`)."""

    epochs: int = 5
    batch_size: int = 128
    eval_batch_size: int = 1000
    optimizer: str = "adam"  # adam | sgd
    lr: float = 2e-3
    momentum: float = 0.9
    nesterov: bool = True  # sgd: Nesterov momentum
    weight_decay: float = 0.0
    decay_binary_and_bn: bool = False  # weight decay on binary latent weights and BN too
    # per parameter group, overriding the two above: binary latent weights; BN and biases
    binary_weight_decay: float | None = None
    bn_weight_decay: float | None = None
    warmup_epochs: float = 0.0
    # Adam's beta1 moves against the learning rate, one-cycle style: [at the lr peak, at
    # the start and the end], e.g. [0.85, 0.95]; none: fixed at 0.9
    momentum_cycle: tuple[float, float] | None = None
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    drop_path: float = 0.0
    auxiliary_weight: float = 0.4  # DARTS: loss weight of network.auxiliary_head, if any
    augment: bool = True
    # Cutout (DeVries & Taylor 2017) where augment is on: one square of this many pixels per
    # image (centre uniform over the image, clipped at the borders) set to the mean; 0: off
    cutout: int = 0
    # mixup / CutMix where augment is on: {kind: mixup | cutmix, alpha}; none: off
    mix: MixConfig | None = None
    bf16: bool = True  # autocast to bfloat16 on CUDA
    channels_last: bool = True  # on CUDA
    # torch.compile the forward (captured in the CUDA graph where that is on); the
    # binarizers are plain ATen arithmetic to it (bnn_nas/binary/compiled_sign.py says why)
    compile: bool = False
    # what one compilation covers: network (the whole forward) | ops (a cell network's
    # stem, preprocess units and edge ops one by one: far less to compile, no fusion across
    # them; a network without cells is compiled whole either way)
    compile_scope: str = "network"
    cuda_graph: bool = True  # capture the whole step in one CUDA graph (CUDA, no drop-path)
    checkpoint_every: int = 1  # epochs between checkpoints (final training)
    distill: DistillConfig | None = None  # a teacher's soft targets (off: none)
    # staged final training; the stages' epochs must sum to epochs (empty: one stage)
    stages: tuple[StageConfig, ...] = ()
    # per-epoch scalars (the [tensorboard] extra): final training in RUN/tensorboard/, a
    # search's trials (section train) in RUN/tensorboard/trial-N
    tensorboard: bool = False


@dataclass(frozen=True)
class SearchConfig:
    """The controller and its budget."""

    controller: str = "evolution"  # a registered controller: random | evolution | pareto | ...
    budget: int = 20  # trials in all
    # what to optimise: [{name: a trial metric, direction: maximize|minimize, limit}, ...];
    # the first is the primary objective (evolution's fitness, derive's "most accurate")
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES
    # the built-in controllers' settings (each declares its own: search/controllers.py)
    population: int = 8  # evolution / pareto: trials kept
    sample_size: int = 3  # evolution: tournament size
    eliminate: str = "oldest"  # evolution: oldest (aging evolution) | worst
    max_ops: float | None = None  # pareto: drop candidates above this many OPs
    # a plugin controller's own settings (its registry entry's dataclass), written flat
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutorConfig:
    """Where trials run."""

    # auto: streams on a GPU, local on the CPU | a registered executor: local | processes |
    # streams | ray | ...
    type: str = "auto"
    # processes, streams: e.g. [cuda:0, cuda:1]; default every GPU, or cpu
    devices: tuple[str, ...] = ()
    # trials sharing one device at a time; default per GPU: processes 4, streams 8
    # (docs/benchmarks.md); 1 on the CPU
    trials_per_device: int | None = None
    max_attempts: int = 2  # tries of a trial whose worker died before it is marked failed
    # local, streams (trials run inside the search process): a trial that was training
    # when the search process died this many times is recorded failed (its candidate may
    # be what kills it: a segfault, the OOM killer). None: 2 for deaths `bnn-nas search`'s
    # supervisor saw (Linux: a signal nobody sent, bnn_nas.search.supervisor), never for
    # one a resume finds (a user's kill, a preemption, a timeout look the same in the store)
    max_process_deaths: int | None = None
    address: str | None = None  # ray: an existing cluster (e.g. auto); default a local one
    # a plugin executor's own settings (its registry entry's dataclass), written flat
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """A whole run: search space, data, training of trials and of the final network."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    run_dir: str | None = None
    plugins: tuple[str, ...] = ()
    search_space: str | dict[str, Any] = "bnn_darts"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    final: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=50))
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    source: str = field(default="<defaults>", compare=False)  # the file it came from


_CHOICES: dict[str, tuple[str, ...]] = {
    "train.optimizer": ("adam", "sgd"),
    "final.optimizer": ("adam", "sgd"),
}
# Names that come from a registry (never listed here): key -> (registry, other names allowed)
_REGISTERED_NAMES: dict[str, tuple[Registry[Any], tuple[str, ...]]] = {
    "data.name": (DATASETS, ()),
    "model.type": (BASELINES, ("cells",)),
    "model.family": (FAMILIES, ()),
    "search.controller": (CONTROLLERS, ()),
    "executor.type": (EXECUTORS, ("auto",)),
}
# Sections whose entry brings its own settings: section -> the key naming the entry
_ENTRY_SECTIONS: dict[str, str] = {"data": "name", "search": "controller", "executor": "type"}
_HIDDEN = ("source", "extra")  # fields that are not keys of a config file
_POSITIVE = {
    "epochs", "batch_size", "eval_batch_size", "budget", "population", "sample_size",
    "trials_per_device", "max_attempts", "checkpoint_every", "cells", "channels",
    "search_train_size", "search_valid_size", "max_process_deaths",
}  # fmt: skip
# what to write instead, for keys whose plain error ("must be at least 1") does not say it
_FIXES = {
    "executor.max_process_deaths": "give a whole number of deaths, 1 or more, or null (the "
    "default: 2 deaths bnn-nas search saw happen, none that only a resume finds)",
}
# (section field, low, high, low included, high included) for every bounded number
_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "lr": (0.0, math.inf, False, False),
    "momentum": (0.0, 1.0, True, False),
    "weight_decay": (0.0, math.inf, True, False),
    "warmup_epochs": (0.0, math.inf, True, False),
    "label_smoothing": (0.0, 1.0, True, False),
    "grad_clip": (0.0, math.inf, True, False),
    "drop_path": (0.0, 1.0, True, False),
    "valid_fraction": (0.0, 1.0, False, False),
    "max_ops": (0.0, math.inf, False, False),
}
# fields holding a count (OPs, params, bytes: search.max_ops, search.objectives[i].limit):
# text reads as `--max-ops` reads it, 3.2M, 98.3k, 1.16G or a plain number (bnn_nas.units)
_COUNTS = {"max_ops", "limit"}
MAX_SHOWN = 60  # characters of a value an error message prints


def shown(value: Any) -> str:
    """``repr(value)`` cut to :data:`MAX_SHOWN` characters (a huge value is not echoed).

    Containers are summarised before ``repr`` runs: a YAML alias bomb has billions of
    items and its full repr would take minutes and all memory.
    """
    if isinstance(value, Mapping | list | tuple | set) and len(value) > 8:
        return f"<{type(value).__name__} of {len(value)} items>"
    if isinstance(value, Mapping | list | tuple):
        nested = [v for v in (value.values() if isinstance(value, Mapping) else value)]
        if any(isinstance(v, Mapping | list | tuple) for v in nested):
            return f"<{type(value).__name__} of {len(value)} items>"
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _check_range(key: str, value: float, where: str) -> None:
    low, high, low_ok, high_ok = _RANGES[key.rsplit(".", 1)[-1]]
    inside = math.isfinite(value) and (low <= value if low_ok else low < value) and (
        value <= high if high_ok else value < high
    )
    if not inside:
        left, right = "[" if low_ok else "(", "]" if high_ok else ")"
        top = "inf" if math.isinf(high) else f"{high:g}"
        raise ConfigError(
            f"{where}: {key}={value!r} is out of range; it must be a finite number in "
            f"{left}{low:g}, {top}{right}"
        )


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_YAML11_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _convert(value: Any, tp: Any, key: str, where: str) -> Any:
    """``value`` checked (and lightly normalised) against the annotation ``tp``."""
    counted = key.rpartition(".")[2] in _COUNTS and float in (typing.get_args(tp) or (tp,))
    if counted and isinstance(value, str):
        try:
            value = parse_count(value)
        except ValueError as err:
            raise ConfigError(f"{where}: {key}: {err}") from None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        sections = [o for o in options if is_dataclass(o)]
        if len(sections) == 1 and isinstance(value, Mapping):
            return _convert(value, sections[0], key, where)  # its own errors (unknown keys)
        if len(sections) == 1 and type(None) in options:  # an optional section (distill, mix)
            names = ", ".join(f.name for f in fields(sections[0]))
            raise ConfigError(
                f"{where}: {key} must be a mapping of settings ({names}) or null, not "
                f"{shown(value)}"
            )
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key, where)
            except ConfigError as err:
                errors.append(err)
        names = " or ".join("a mapping" if is_dataclass(o) else _type_name(o) for o in options)
        raise ConfigError(f"{where}: {key} must be {names}, not {shown(value)}")
    if is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key} must be a mapping of settings, not {shown(value)}")
        return _from_mapping(tp, value, where, f"{key}.")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(
                f"{where}: {key} must be a list, not {shown(value)}; write it in brackets, "
                f"[{shown(value)[:MAX_SHOWN]}]"
            )
        (item_type, _) = typing.get_args(tp)
        return tuple(_convert(v, item_type, f"{key}[{i}]", where) for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key} must be a mapping, not {shown(value)}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, not {shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, not {shown(value)}")
        return value
    if tp is float:
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            value = float(value)  # PyYAML reads 1e-3 and 3.2e6 as strings (YAML 1.1)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key} must be a number, not {shown(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, not {shown(value)}")
        return value
    raise TypeError(f"unsupported config annotation {tp!r}")  # a bug in this module


def _registered(key: str, value: Any, where: str) -> None:
    """A name that must be in its registry (or one of the few names allowed besides)."""
    registry, others = _REGISTERED_NAMES[key]
    if value not in others and value not in registry:
        raise ConfigError(f"{where}: {key}: {registry.unknown(value)}")


def _chosen_entry(cls: type, data: Mapping[str, Any], section: str, where: str) -> Any:
    """The registry entry a section names (None for a name like executor.type auto)."""
    key = _ENTRY_SECTIONS[section]
    full = f"{section}.{key}"
    if key in data:
        name = _convert(data[key], str, full, where)
    else:
        name = next(f.default for f in fields(cls) if f.name == key)
    _registered(full, name, where)
    registry, others = _REGISTERED_NAMES[full]
    return None if name in others else registry.get(name)


def entry_settings(section: Any, entry: Any) -> Any:
    """The settings object of a registry ``entry`` (its declared dataclass), filled from
    a config ``section``: its fields of the same name, then its ``extra`` keys."""
    if entry.settings is None:
        return None
    own = {f.name for f in fields(section)}
    values = {}
    for name in entry.setting_names():
        if name in own:
            values[name] = getattr(section, name)
        elif name in section.extra:
            values[name] = section.extra[name]
    return entry.settings(**values)


def _check_positive(key: str, name: str, value: Any, where: str) -> None:
    if name in _POSITIVE and isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise ConfigError(f"{where}: {key} must be at least 1, not {shown(value)}")


class UnknownKeyError(ConfigError):
    """A key no setting has: ``key`` its dotted path, ``close`` the nearest allowed keys
    (best first), ``allowed`` every key of its section."""

    def __init__(
        self, message: str, *, key: str, close: tuple[str, ...], allowed: tuple[str, ...]
    ) -> None:
        super().__init__(message)
        self.key, self.close, self.allowed = key, close, allowed


def _override_error(err: UnknownKeyError, overrides: tuple[str, ...]) -> ConfigError | None:
    """The error naming the ``--set`` item that brought in an unknown key (None when no
    override sets it or a key below it: then the file is to blame)."""
    for item in reversed(overrides):  # the last one given wins, as when applied
        key = item.partition("=")[0].strip()
        if key == err.key or key.startswith(err.key + "."):
            names = ", ".join(err.close) if err.close else "none"
            section = err.key.rpartition(".")[0]
            keys = ", ".join(a.rpartition(".")[2] for a in err.allowed)
            return ConfigError(
                f"--set {shown(item)}: unknown override key {err.key}; close names: {names} "
                f"({section or 'the config'} has: {keys})"
            )
    return None


def _override_value_error(
    message: str, where: str, overrides: tuple[str, ...]
) -> ConfigError | None:
    """``where: key ...`` about a key that a ``--set`` item gave, as ``--set item: key ...``."""
    for item in reversed(overrides):
        key = item.partition("=")[0].strip()
        for head in (f"{where}: {key} ", f"{where}: {key}=", f"{where}: {key}: "):
            if message.startswith(head):
                return ConfigError(f"--set {shown(item)}: {message[len(where) + 2 :]}")
    return None


def _from_mapping(cls: type[T], data: Mapping[str, Any], where: str, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.name not in _HIDDEN]  # type: ignore[arg-type]
    section = prefix[:-1]
    entry = _chosen_entry(cls, data, section, where) if section in _ENTRY_SECTIONS else None
    entries = _wrapped(entry, data, section, where)
    own = list(dict.fromkeys(n for e in entries for n in e.setting_names() if n not in names))
    allowed = names + own
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key)[:100], allowed, n=3)
            hint = f"did you mean {prefix}{close[0]}? " if close else ""
            raise UnknownKeyError(
                f"{where}: unknown key {prefix}{str(key)[:MAX_SHOWN]}; {hint}allowed: "
                f"{', '.join(allowed)}",
                key=f"{prefix}{str(key)[:MAX_SHOWN]}",
                close=tuple(prefix + c for c in close),
                allowed=tuple(prefix + a for a in allowed),
            )
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in data or f.name in _HIDDEN:
            continue
        key = f"{prefix}{f.name}"
        try:
            value = _convert(data[f.name], hints[f.name], key, where)
            _check_positive(key, f.name, value, where)
        except ConfigError as err:
            if key not in _FIXES:
                raise
            raise ConfigError(f"{err}; {_FIXES[key]}") from None
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(
                f"{where}: {key} is {shown(value)}; choose one of {', '.join(_CHOICES[key])}"
            )
        if key in _REGISTERED_NAMES:
            _registered(key, value, where)
        if f.name in _RANGES and isinstance(value, float):
            _check_range(key, value, where)
        values[f.name] = value
    if own:
        entry_hints = {k: v for e in reversed(entries) if e.settings is not None
                       for k, v in typing.get_type_hints(e.settings).items()}  # fmt: skip
        extra = {}
        for name in own:
            if name in data:
                extra[name] = _convert(data[name], entry_hints[name], f"{prefix}{name}", where)
                _check_positive(f"{prefix}{name}", name, extra[name], where)
        values["extra"] = extra
    defaults = all(f.default is not MISSING or f.default_factory is not MISSING
                   for f in fields(cls))  # type: ignore[arg-type]  # fmt: skip
    try:  # a settings dataclass may check itself (an objective's direction, ...)
        result = replace(cls(), **values) if defaults and not values else cls(**values)  # type: ignore[type-var]
    except BnnNasError as err:
        raise ConfigError(f"{where}: {prefix[:-1] or 'config'}: {err}") from None
    for chosen in entries:
        try:  # the entry's dataclass checks its own settings
            entry_settings(result, chosen)
        except BnnNasError as err:
            raise ConfigError(f"{where}: {err}") from None
    return result


def _wrapped(entry: Any, data: Mapping[str, Any], section: str, where: str) -> list[Any]:
    """The chosen entry, and the controller it wraps when its settings name a ``base``
    (successive halving around any controller): the base's settings are written in the
    same ``search`` section."""
    if entry is None or entry.settings is None:
        return [] if entry is None else [entry]
    if section != "search" or "base" not in entry.setting_names():
        return [entry]
    default = next(f.default for f in fields(entry.settings) if f.name == "base")
    name = _convert(data.get("base", default), str, "search.base", where)
    registry = _REGISTERED_NAMES["search.controller"][0]
    if name not in registry:
        raise ConfigError(f"{where}: search.base: {registry.unknown(name)}")
    base = registry.get(name)
    return [entry] if base.name == entry.name else [entry, base]


def config_from_dict(
    data: Mapping[str, Any], where: str = "<config>", overrides: tuple[str, ...] = ()
) -> Config:
    """A :class:`Config` from its mapping form; ``where`` names the source in errors.

    ``overrides``: the ``--set`` items already applied to ``data``; an unknown key one of
    them brought in is reported as an unknown override key, not blamed on ``where``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a config must be a mapping of sections")
    try:
        config = _from_mapping(Config, data, where)
    except UnknownKeyError as err:
        raise (_override_error(err, overrides) or err) from None
    except ConfigError as err:  # a bad value that a --set gave: name the --set
        raise (_override_value_error(str(err), where, overrides) or err) from None
    try:
        check_objectives(config.search.objectives)
    except ConfigError as err:  # the --set that gave the objectives, else the file
        message = f"{where}: {err}"
        raise (_override_value_error(message, where, overrides) or ConfigError(message)) from None
    for section in ("train", "final"):
        settings = getattr(config, section)
        cycle = settings.momentum_cycle
        if cycle is not None and (len(cycle) != 2 or not all(0 <= b < 1 for b in cycle)):
            raise ConfigError(
                f"{where}: {section}.momentum_cycle={list(cycle)} must be two Adam beta1 "
                f"values in [0, 1): [at the lr peak, at both ends], e.g. [0.85, 0.95]"
            )
        if cycle is not None and settings.optimizer != "adam":
            raise ConfigError(
                f"{where}: {section}.momentum_cycle cycles Adam's beta1; set "
                f"{section}.optimizer=adam or drop momentum_cycle"
            )
        _check_recipe(settings, section, where)
        _check_cutout(settings, section, where)
        _check_mix(settings, section, where)
        if settings.compile_scope not in COMPILE_SCOPES:
            raise ConfigError(
                f"{where}: {section}.compile_scope={settings.compile_scope!r} is not one of "
                f"{', '.join(COMPILE_SCOPES)}; set --set {section}.compile_scope=network"
            )
        if settings.warmup_epochs > settings.epochs:  # the rise would never end
            raise ConfigError(
                f"{where}: {section}.warmup_epochs={settings.warmup_epochs:g} is longer than "
                f"{section}.epochs={settings.epochs}; lower it "
                f"(--set {section}.warmup_epochs=N, N <= {settings.epochs})"
            )
    return replace(config, source=where)


_DISTILL_LOSSES = ("kl", "ce_kl")
COMPILE_SCOPES = ("network", "ops")


def _check_cutout(settings: TrainConfig, section: str, where: str) -> None:
    """A Cutout side that can apply: >= 0, and only where crop/flip augmentation is on (its
    size against the images: :func:`check_cutout_fits`, once the data is known)."""
    if settings.cutout < 0:
        raise ConfigError(
            f"{where}: {section}.cutout={settings.cutout} must be >= 0 (the patch side in "
            f"pixels; 0: off); set --set {section}.cutout=16 for CIFAR-10 or 0"
        )
    if settings.cutout and not settings.augment:
        raise ConfigError(
            f"{where}: {section}.cutout={settings.cutout} applies with augmentation only but "
            f"{section}.augment is false; set {section}.augment=true or {section}.cutout=0"
        )


def _check_mix(settings: TrainConfig, section: str, where: str) -> None:
    """A mixing augmentation that can apply: a known kind, Beta(alpha, alpha) with alpha >
    0, a probability in [0, 1], and only where crop/flip augmentation is on."""
    from bnn_nas.data.mix import MIX_KINDS

    mix = settings.mix
    if mix is None:
        return
    if mix.kind not in MIX_KINDS:
        raise ConfigError(
            f"{where}: {section}.mix.kind={shown(mix.kind)} is not a mixing augmentation; "
            f"set {section}.mix.kind={' or '.join(MIX_KINDS)} (or {section}.mix=null: off)"
        )
    if not (math.isfinite(mix.alpha) and mix.alpha > 0):
        raise ConfigError(
            f"{where}: {section}.mix.alpha={mix.alpha:g} must be > 0 (lambda ~ Beta(alpha, "
            f"alpha)); set --set {section}.mix.alpha=1 (mixup's and CutMix's CIFAR-10 value)"
        )
    if not 0 <= mix.prob <= 1:
        raise ConfigError(
            f"{where}: {section}.mix.prob={mix.prob:g} must be in [0, 1] (the share of "
            f"batches mixed; 1: every batch); set --set {section}.mix.prob=0.5 (CutMix's "
            "CIFAR value) or 1"
        )
    if not settings.augment:
        raise ConfigError(
            f"{where}: {section}.mix applies with augmentation only but {section}.augment is "
            f"false; set {section}.augment=true or {section}.mix=null"
        )


def _check_recipe(settings: TrainConfig, section: str, where: str) -> None:
    """Distillation, stages and per-group weight decay: values that can work together."""
    from bnn_nas.binary.quantizers import ACTIVATION_BINARIZERS, WEIGHT_BINARIZERS

    for name in ("weight_decay", "binary_weight_decay", "bn_weight_decay", "auxiliary_weight"):
        value = getattr(settings, name)
        if value is not None and value < 0:
            raise ConfigError(f"{where}: {section}.{name}={value:g} must be >= 0")
    for i, stage in enumerate(settings.stages):
        for name in ("binary_weight_decay", "bn_weight_decay"):
            value = getattr(stage, name)
            if value is not None and value < 0:
                raise ConfigError(f"{where}: {section}.stages[{i}].{name}={value:g} must be >= 0")
    uses_sgd = settings.optimizer == "sgd" or any(s.optimizer == "sgd" for s in settings.stages)
    if uses_sgd and settings.nesterov and settings.momentum == 0:
        raise ConfigError(
            f"{where}: {section}.momentum=0 with {section}.nesterov=true: Nesterov SGD needs "
            f"momentum > 0; set {section}.nesterov=false for plain SGD, or a momentum"
        )
    kd = settings.distill
    if kd is not None:
        if not kd.teacher:
            raise ConfigError(
                f"{where}: {section}.distill.teacher is empty; give a run directory of "
                "`bnn-nas train` (e.g. of --model resnet18 --family float) or its checkpoint.pt"
            )
        if isinstance(kd.teacher, TeacherSpec):
            _check_teacher_spec(kd.teacher, f"{section}.distill.teacher", where)
        if kd.loss not in _DISTILL_LOSSES:
            raise ConfigError(
                f"{where}: {section}.distill.loss is {kd.loss!r}; choose one of "
                f"{', '.join(_DISTILL_LOSSES)}"
            )
        if not kd.temperature > 0:
            raise ConfigError(f"{where}: {section}.distill.temperature must be > 0")
        if not 0 <= kd.weight <= (1 if kd.loss == "ce_kl" else float("inf")):
            raise ConfigError(
                f"{where}: {section}.distill.weight={kd.weight:g} must be in [0, 1] for "
                "ce_kl (the share of the KD term) and >= 0 for kl"
            )
    if not settings.stages:
        return
    if section != "final":
        raise ConfigError(f"{where}: {section}.stages: stages apply to final training only")
    total = sum(stage.epochs for stage in settings.stages)
    if total != settings.epochs:
        raise ConfigError(
            f"{where}: {section}.stages last {total} epochs in all but {section}.epochs="
            f"{settings.epochs}; set {section}.epochs={total}"
        )
    for i, stage in enumerate(settings.stages):
        key = f"{section}.stages[{i}]"
        if stage.epochs < 1:
            raise ConfigError(f"{where}: {key}.epochs must be at least 1, not {stage.epochs}")
        for name, table in (("act", ACTIVATION_BINARIZERS), ("weight", WEIGHT_BINARIZERS)):
            value = getattr(stage, name)
            if value is not None and value not in table:
                raise ConfigError(
                    f"{where}: {key}.{name} is {value!r}; choose one of {', '.join(table)}"
                )
        if stage.optimizer is not None and stage.optimizer not in _CHOICES["final.optimizer"]:
            raise ConfigError(
                f"{where}: {key}.optimizer is {stage.optimizer!r}; choose one of "
                f"{', '.join(_CHOICES['final.optimizer'])}"
            )
        warmup = settings.warmup_epochs if stage.warmup_epochs is None else stage.warmup_epochs
        if warmup > stage.epochs:
            raise ConfigError(
                f"{where}: {key} warms up {warmup:g} epochs but lasts {stage.epochs}; set "
                f"{key}.warmup_epochs"
            )
        optimizer = stage.optimizer or settings.optimizer
        if settings.momentum_cycle is not None and optimizer != "adam":
            raise ConfigError(
                f"{where}: {key}: momentum_cycle cycles Adam's beta1; use adam or drop it"
            )
    # export, a teacher's loading and profile rebuild a run's network with the binarizers
    # it was built with: the last stage must train that network, not another one
    last = len(settings.stages) - 1
    for name in ("act", "weight"):
        if getattr(settings.stages[last], name) is not None:
            raise ConfigError(
                f"{where}: {section}.stages[{last}].{name}: the last stage trains the network "
                f"with its own binarizers (the saved network is rebuilt so); drop {name} there "
                "and set the network's binarizers in model.options or the genotype"
            )


def _check_teacher_spec(spec: TeacherSpec, key: str, where: str) -> None:
    """A teacher to train first: a run directory, and one network (a baseline or a
    genotype), as `bnn-nas train` takes them."""
    example = "{model: resnet18, family: float, run_dir: runs/teacher-r18-float}"
    if not spec.run_dir:
        raise ConfigError(
            f"{where}: {key}.run_dir is missing; give the directory the teacher is trained in "
            f"(or was): {key}={example}"
        )
    if (spec.model is None) == (spec.genotype is None):
        given = (
            "both model and genotype" if spec.model is not None else "neither model nor genotype"
        )
        raise ConfigError(
            f"{where}: {key} gives {given}; give one network to train: model (a baseline, "
            f"with family) or genotype, e.g. {key}={example}"
        )
    if spec.model is not None and (spec.model == "cells" or spec.model not in BASELINES):
        raise ConfigError(f"{where}: {key}.model: {BASELINES.unknown(spec.model)}")
    if spec.family is not None:
        if spec.genotype is not None:
            raise ConfigError(
                f"{where}: {key}.family applies to a baseline model, not to a genotype (its "
                "cells name their primitives); drop family or give model"
            )
        if spec.family != "float" and spec.family not in FAMILIES:
            raise ConfigError(f"{where}: {key}.family: {FAMILIES.unknown(spec.family)}")
    if not spec.config:
        raise ConfigError(
            f"{where}: {key}.config is empty; give the config whose final section trains the "
            f"teacher (default {DEFAULT_TEACHER_CONFIG})"
        )


def teacher_config_path(spec: str, base: Path) -> str:
    """A teacher spec's ``config`` as stored: a relative path made absolute against the
    folder ``base`` of the config file that names it, else against the working directory
    where only that has it (as :func:`plugin_path` does); one found in neither stays as
    given (its error names it as written)."""
    given = Path(spec).expanduser()
    if given.is_absolute():
        return str(given)
    beside = (base / given).resolve()
    if beside.is_file():
        return str(beside)
    return str(given.resolve()) if given.is_file() else spec


def _teacher_config_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """``data`` with the ``config`` of each teacher spec (train/final.distill.teacher as a
    mapping) resolved by :func:`teacher_config_path` (the default filled in when unset):
    the run's stored config then names the file from any directory."""
    for section in ("train", "final"):
        distill = data.get(section, {}).get("distill") if isinstance(
            data.get(section), Mapping) else None  # fmt: skip
        teacher = distill.get("teacher") if isinstance(distill, Mapping) else None
        if not isinstance(teacher, Mapping):
            continue
        spec = teacher.get("config", DEFAULT_TEACHER_CONFIG)
        if isinstance(spec, str) and spec:
            data[section] = {**data[section], "distill": {**distill, "teacher": {
                **teacher, "config": teacher_config_path(spec, base)}}}  # fmt: skip
    return data


def read_config_mapping(path: str | Path, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """A YAML config file as a mapping, ``--set`` overrides applied, not yet checked."""
    from bnn_nas.io import load_yaml, read_text_file

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; pass --config path/to/config.yaml")
    try:
        data = load_yaml(read_text_file(path, "config")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        why = "" if mark is not None or not str(err) else f" ({str(err)[:100]})"
        raise ConfigError(f"{path}: not valid YAML{at}{why}; fix the file") from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{path}: a config must be a mapping of sections, not a {type(data).__name__}"
        )
    data = dict(data)
    if isinstance(data.get("plugins"), list | tuple):  # the file's own, before any --set
        data["plugins"] = [plugin_path(p, path.parent) for p in data["plugins"]]
    data = _teacher_config_paths(data, path.parent)  # before --set: theirs are from the cwd
    if overrides:
        data = apply_overrides(data, overrides, str(path))
    return data


def plugin_path(spec: Any, base: Path) -> Any:
    """A config's plugin entry as it is stored: a ``.py`` path (or one with a ``/``)
    made absolute against the config file's folder ``base``, so the run's stored config
    and the commands derive prints work from any directory; a module name as it is. A
    relative path found only from the current directory (as older run configs stored
    them) is kept working from there."""
    if not isinstance(spec, str) or not (spec.endswith(".py") or "/" in spec):
        return spec
    given = Path(spec).expanduser()
    if given.is_absolute():
        return str(given)
    beside = (base / given).resolve()
    if not beside.exists() and given.exists():
        return str(given.resolve())
    return str(beside)


def declared_plugins(
    data: Mapping[str, Any], where: str, overrides: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """The ``plugins`` a config mapping lists: loaded before it is checked, since they may
    register the controller, executor or dataset it names (a bad value a ``--set`` gave is
    that --set's error)."""
    try:
        return _convert(data.get("plugins", ()), tuple[str, ...], "plugins", where)
    except ConfigError as err:
        raise (_override_value_error(str(err), where, overrides) or err) from None


def load_config(path: str | Path, overrides: tuple[str, ...] = ()) -> Config:
    """Read and check a YAML config, with ``--set key=value`` overrides applied.

    Relative ``plugins`` paths are relative to the config file (stored absolute); other
    relative paths inside stay relative to the working directory.
    """
    return config_from_dict(read_config_mapping(path, overrides), str(Path(path)), overrides)


def apply_overrides(data: dict[str, Any], overrides: tuple[str, ...], where: str) -> dict[str, Any]:
    """``key.sub=value`` strings (values read as YAML scalars) applied to a config mapping.

    ``plugins=[...]`` paths are made absolute against the current directory (where the
    command runs), as a config file's are against its folder: a resumed run finds them
    from any directory."""
    result = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {shown(item)} must look like section.key=value")
        try:
            from bnn_nas.io import load_yaml

            value = load_yaml(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {shown(item)}: not a valid YAML value") from None
        target = result
        parts = key.strip().split(".")
        if parts == ["plugins"] and isinstance(value, list):  # the user's own paths: from
            value = [plugin_path(p, Path.cwd()) for p in value]  # the command's directory
        for part in parts[:-1]:
            child = target.get(part)
            target[part] = dict(child) if isinstance(child, Mapping) else {}
            target = target[part]
        target[parts[-1]] = value
    return _teacher_config_paths(result, Path.cwd())  # a teacher spec's config a --set gave


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain mapping of a config (for run metadata), the inverse of config_from_dict."""

    def plain(value: Any) -> Any:
        if is_dataclass(value):
            out = {
                f.name: plain(getattr(value, f.name))
                for f in fields(value)
                if f.name not in _HIDDEN
            }
            out.update(plain(getattr(value, "extra", None) or {}))  # a plugin entry's settings
            return out
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def check_cutout_fits(
    settings: TrainConfig, image_shape: tuple[int, ...], section: str
) -> None:
    """A Cutout patch no larger than the images (``image_shape``: H, W, C as
    ``ImageSet.image_shape``): a larger one would blank whole images."""
    side = min(image_shape[0], image_shape[1])
    if settings.cutout > side:
        raise ConfigError(
            f"{section}.cutout={settings.cutout} is larger than the {image_shape[0]}x"
            f"{image_shape[1]} training images; lower it (--set {section}.cutout=N, N <= {side})"
        )


def check_batch_fits(settings: TrainConfig, examples: int, section: str) -> None:
    """A training batch no larger than its data: training drops the last partial batch,
    so a larger batch would leave every epoch empty (and every trial failed)."""
    if settings.batch_size > examples:
        raise ConfigError(
            f"{section}.batch_size={settings.batch_size} is larger than the {examples} "
            f"training images; lower it (--set {section}.batch_size=N, N <= {examples})"
        )
