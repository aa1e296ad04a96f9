"""Optimiser, parameter groups and learning-rate schedule of a training run."""

from __future__ import annotations

import math

import torch
from torch import nn

from bnn_nas.binary import BinaryConv2d, BinaryLinear, RPReLU
from bnn_nas.binary.quantizers import Binarizer
from bnn_nas.config import TrainConfig
from bnn_nas.train.cycled_adam import CycledAdam
from bnn_nas.train.tensor_sgd import TensorLrSGD


def parameter_groups(
    model: nn.Module,
    weight_decay: float,
    decay_binary_and_bn: bool,
    binary_weight_decay: float | None = None,
    bn_weight_decay: float | None = None,
) -> list:
    """Parameters in groups by weight decay: binary latent weights, BN and biases, the rest.

    Decay pulls latent weights towards 0, where their sign flips at random: the usual
    choice for binary nets is none on them (and none on BN) unless asked for
    (``decay_binary_and_bn``: ``weight_decay`` on all). ``binary_weight_decay`` and
    ``bn_weight_decay`` set those two groups' decay explicitly. Groups with equal decay are
    merged, each keeping the model's parameter order.

    The BN group holds every per-channel affine or shift, as ReActNet treats them: the
    parameters of normalisation layers, of learnable binarizers (RSign's thresholds), of
    RPReLU (shifts and slopes) and PReLU (slopes), and every module's ``bias``. Decided by
    module type and parameter role, never by the parameter's dotted name.
    """
    binary: set[int] = set()
    bn: set[int] = set()
    for module in model.modules():
        if isinstance(module, BinaryConv2d | BinaryLinear) and module.is_binary:
            binary.add(id(module.weight))
        if isinstance(module, _NOT_WEIGHTS):
            bn.update(id(p) for p in module.parameters(recurse=False))
        for role, p in module.named_parameters(recurse=False):
            if role == "bias":
                bn.add(id(p))
    bn -= binary
    held = 0.0 if not decay_binary_and_bn else weight_decay
    decay_of = {
        "binary": held if binary_weight_decay is None else binary_weight_decay,
        "bn": held if bn_weight_decay is None else bn_weight_decay,
        "rest": weight_decay,
    }

    def kind(p: nn.Parameter) -> str:
        return "binary" if id(p) in binary else "bn" if id(p) in bn else "rest"

    params = [p for p in model.parameters() if p.requires_grad]
    groups: list[dict] = []
    for name in ("rest", "binary", "bn"):
        if not any(kind(p) == name for p in params):
            continue
        decay = decay_of[name]
        if any(g["weight_decay"] == decay for g in groups):
            continue  # already placed with an earlier group of the same decay
        kinds = {k for k, v in decay_of.items() if v == decay}
        groups.append({"params": [p for p in params if kind(p) in kinds], "weight_decay": decay})
    return groups


# modules whose own parameters are per-channel affines, shifts, thresholds or slopes
_NOT_WEIGHTS = (
    nn.modules.batchnorm._NormBase,  # batch and instance norm
    nn.GroupNorm,
    nn.LayerNorm,
    nn.PReLU,
    RPReLU,
    Binarizer,  # learnable binarizers: RSign's thresholds
)


def build_optimizer(
    model: nn.Module, settings: TrainConfig, *, capturable: bool = False
) -> torch.optim.Optimizer:
    """Adam (the usual choice for binary nets) or SGD with (Nesterov) momentum.

    ``capturable``: the learning rate is a device tensor and the update has no host sync,
    so the whole step can be captured in a CUDA graph. With ``momentum_cycle`` it is
    :class:`CycledAdam`, and SGD is :class:`TensorLrSGD`: both capturable always.
    """
    groups = parameter_groups(
        model, settings.weight_decay, settings.decay_binary_and_bn,
        settings.binary_weight_decay, settings.bn_weight_decay,
    )  # fmt: skip
    if settings.optimizer == "sgd":
        return TensorLrSGD(
            groups, lr=settings.lr, momentum=settings.momentum, nesterov=settings.nesterov
        )
    if settings.optimizer == "adam" and settings.momentum_cycle is not None:
        # beta1 moves every step: it must sit in a tensor for a graph to see it, which
        # torch's fused and foreach updates do not allow (see CycledAdam)
        betas = (settings.momentum_cycle[1], 0.999)
        return CycledAdam(groups, lr=settings.lr, betas=betas)
    lr: float | torch.Tensor = settings.lr
    device = next(model.parameters()).device
    if capturable:
        for group in groups:  # one lr tensor per group: the schedule updates it in place
            group["lr"] = torch.tensor(settings.lr, device=device)
    # on CUDA the fused update: a few kernels for all parameters instead of a
    # handful per parameter tensor (a candidate has hundreds of small ones)
    return torch.optim.Adam(
        groups, lr=lr, capturable=capturable, fused=device.type == "cuda" or None
    )


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def cycled_momentum(factor: float, at_peak: float, at_ends: float) -> float:
    """One-cycle's momentum: highest where the learning rate is lowest, and back.

    ``factor`` is the learning rate over its peak (:func:`lr_factor`).
    """
    return at_ends - (at_ends - at_peak) * factor


class CosineSchedule:
    """Per-step linear warm-up then cosine decay of every group's learning rate, and
    Adam's beta1 against it when ``momentum_cycle`` is set.

    Works for float values and for the device tensors of a capturable optimiser, which
    are updated in place (a captured CUDA graph reads them at replay).
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, settings: TrainConfig, steps_per_epoch: int
    ) -> None:
        self.optimizer = optimizer
        self.base_lr = settings.lr
        self.momentum_cycle = settings.momentum_cycle
        self.total = settings.epochs * steps_per_epoch
        self.warmup = round(settings.warmup_epochs * steps_per_epoch)
        self.step_count = 0
        self._apply()

    @property
    def lr(self) -> float:
        """The learning rate of the current step."""
        return self._values()[0]

    @property
    def beta1(self) -> float | None:
        """Adam's beta1 of the current step; None when it is not cycled."""
        return self._values()[1]

    def _values(self) -> tuple[float, float | None]:
        factor = lr_factor(self.step_count, self.total, self.warmup)
        cycle = self.momentum_cycle
        return self.base_lr * factor, None if cycle is None else cycled_momentum(factor, *cycle)

    def _apply(self) -> None:
        lr, beta1 = self._values()  # once per training step
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
            if beta1 is None:
                continue
            betas = group["betas"]
            if isinstance(betas[0], torch.Tensor):
                betas[0].fill_(beta1)
            else:
                group["betas"] = (beta1, betas[1])

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def state_dict(self) -> dict[str, int]:
        return {"step_count": self.step_count}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step_count = int(state["step_count"])
        self._apply()
