"""Staged training (final.stages): per-stage settings and binarizers.

Real-to-Binary (Martinez et al. 2020) and ReActNet (Liu et al. 2020) train in two steps:
binary activations with real-valued weights first, then both binary, the second step
starting from the first's latent weights with a fresh optimiser and schedule. A binary
layer's binarizers are fixed when it is built, so a stage does not flip a switch inside
the layers: :func:`with_binarizers` builds new binary layers with the stage's binarizers
around the same weight tensors, in place of the old ones. Nothing global changes, and
the network's parameters (and so its state dict) stay the same objects across stages.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from bnn_nas.binary import BinaryConv2d, BinaryLinear
from bnn_nas.binary.quantizers import Binarizer
from bnn_nas.config import TrainConfig, shown
from bnn_nas.data.arrays import ImageSet
from bnn_nas.errors import CheckpointError, ConfigError
from bnn_nas.train.callbacks import Callback, Checkpoint, OnStart
from bnn_nas.train.checkpoint import load_checkpoint
from bnn_nas.train.metrics import EpochMetrics
from bnn_nas.train.trainer import StageStart, fit


@dataclass(frozen=True)
class Stage:
    """One stage as it trains: its full settings, and the binarizers it sets (None: keep)."""

    index: int
    settings: TrainConfig
    act: str | None = None
    weight: str | None = None


_STAGE_OVERRIDES = (
    "optimizer", "lr", "warmup_epochs", "weight_decay", "binary_weight_decay", "bn_weight_decay",
)  # fmt: skip


def resolve_stages(final: TrainConfig) -> list[Stage]:
    """The stages of a final training; one stage (no binarizer change) without ``stages``."""
    if not final.stages:
        return [Stage(0, final)]
    resolved = []
    for i, stage in enumerate(final.stages):
        overrides = {
            key: getattr(stage, key)
            for key in _STAGE_OVERRIDES
            if getattr(stage, key) is not None
        }
        settings = replace(final, epochs=stage.epochs, stages=(), **overrides)
        resolved.append(Stage(i, settings, stage.act, stage.weight))
    return resolved


Binarizers = dict[str, tuple[Binarizer, Binarizer]]


def built_binarizers(model: nn.Module) -> Binarizers:
    """Each binary layer's (act, weight) binarizers by qualified name, as it was built:
    what a stage that leaves ``act`` or ``weight`` unset trains with."""
    return {
        name: (m.act, m.weight_binarizer)
        for name, m in model.named_modules()
        if isinstance(m, BinaryConv2d | BinaryLinear)
    }


def with_binarizers(
    model: nn.Module, act: str | None, weight: str | None, built: Binarizers
) -> nn.Module:
    """``model`` with every binary layer rebuilt with ``act`` / ``weight`` binarizers (None:
    the ones it was ``built`` with, :func:`built_binarizers`), sharing its weight and bias
    tensors; returns ``model``.

    Only :class:`BinaryConv2d` and :class:`BinaryLinear` themselves are rebuilt: a
    subclass may take other constructor arguments, so it is refused in one line.
    """
    for qualified, child in list(model.named_modules()):
        if not isinstance(child, BinaryConv2d | BinaryLinear):
            continue
        if type(child) not in (BinaryConv2d, BinaryLinear):
            raise ConfigError(
                f"final.stages cannot change the binarizers of {type(child).__name__} "
                f"({qualified}); stage only networks of BinaryConv2d / BinaryLinear layers"
            )
        own_act, own_weight = built[qualified]
        binarizers = {  # a binarizer the layer has already goes on, learned state and all
            "act": _kept(own_act if act is None else act, child.act),
            "weight": _kept(own_weight if weight is None else weight, child.weight_binarizer),
        }
        if isinstance(child, BinaryConv2d):
            if child.padding_mode != "zeros" or isinstance(child.padding, str):
                raise ConfigError(f"final.stages: {qualified} pads in a way stages cannot copy")
            fresh: nn.Module = BinaryConv2d(
                child.in_channels, child.out_channels, child.kernel_size, child.stride,
                child.padding, child.dilation, child.groups, child.bias is not None,
                **binarizers,
            )  # fmt: skip
        else:
            fresh = BinaryLinear(
                child.in_features, child.out_features, child.bias is not None, **binarizers
            )
        fresh.weight = child.weight  # the latent weights carry over, as the same tensor
        if child.bias is not None:
            fresh.bias = child.bias
        fresh.train(child.training)
        parent_name, _, attribute = qualified.rpartition(".")
        setattr(model.get_submodule(parent_name), attribute, fresh)
    return model


def _kept(wanted: str | Binarizer, current: Binarizer) -> str | Binarizer:
    """``current`` when ``wanted`` names it (stages 0 and 1 both on ``rsign`` share stage
    0's learned thresholds), else ``wanted``."""
    return current if isinstance(wanted, str) and wanted == current.name else wanted


def ending_network(model: nn.Module, final: TrainConfig) -> nn.Module:
    """``model`` as the last stage trains it (a copy with that stage's binarizers; ``model``
    itself without stages): what the cost model should count."""
    if not final.stages:
        return model
    last = resolve_stages(final)[-1]
    return with_binarizers(copy.deepcopy(model), last.act, last.weight, built_binarizers(model))


def fit_stages(
    model: nn.Module,
    train_set: ImageSet,
    final: TrainConfig,
    *,
    checkpoint: Path | None = None,
    resume: bool = False,
    on_start: Callable[[], None] | None = None,
    callbacks: Sequence[Callback] = (),
    **fit_options: Any,
) -> list[EpochMetrics]:
    """:func:`fit` once per stage of ``final`` (once without stages), the binarizers of
    each stage set before it starts; returns the metrics of every epoch of every stage.

    One checkpoint file serves all stages: it records its stage, so ``resume`` goes on in
    the stage it was written in (the stages before are done; their metrics are in it).
    ``on_start`` is called once, when the first stage to run starts its first epoch;
    ``callbacks`` serve every stage's fit, after the checkpoint's.
    """
    stages = resolve_stages(final)
    first = 0
    state = None  # read (and hashed) once here; the resumed stage's fit takes it
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, map_location=fit_options.get("device", "cpu"))
        saved = state.get("stage", 0)
        if isinstance(saved, bool) or not isinstance(saved, int) or not 0 <= saved < len(stages):
            raise CheckpointError(
                f"{checkpoint} is of stage {shown(saved)} but the config has {len(stages)} "
                f"stage(s) (0 to {len(stages) - 1}); resume it with its own config"
            )
        first = saved
    built = built_binarizers(model)
    history: list[EpochMetrics] = []
    offset = sum(stage.settings.epochs for stage in stages[:first])
    for stage in stages[first:]:
        if final.stages:
            with_binarizers(model, stage.act, stage.weight, built)
        resumed = stage.index == first
        hooks: list[Callback] = []
        if checkpoint is not None:
            hooks.append(Checkpoint(
                checkpoint, resume=resume and resumed, state=state if resumed else None
            ))  # fmt: skip
        if on_start is not None and resumed:
            hooks.append(OnStart(on_start))
        history = fit(
            model, train_set, stage.settings, callbacks=[*hooks, *callbacks],
            start=StageStart(stage.index, offset, tuple(history)), **fit_options,
        )  # fmt: skip
        state = None
        offset += stage.settings.epochs
    return history
