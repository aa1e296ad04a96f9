"""What a network costs to run and to store, counted from declared precision.

BOPs are binary multiply-accumulates, FLOPs full-precision ones, and
OPs = BOPs / 64 + FLOPs (XNOR-Net, Rastegari et al. 2016; Bi-Real Net, Liu et al.
2018), per image. Only the multiply-accumulates of convolutions and linear maps
count, as in those papers: BN, pooling, activations and elementwise adds are free.

Precision comes from what a layer declares (its ``is_binary`` property: both
operands 1-bit), like larq's model summary, never from module names. A conv or
linear map that is not binary, including a binary layer built with an
``identity`` binarizer, costs FLOPs and stores its weight in float.

Params: a binary layer's weight is 1 bit per entry; every other parameter (biases,
BN affine, PReLU slopes, float weights) is 32 bits. Each parameter counts once,
however often its module runs. Buffers (BN running statistics) are left out: at
deployment they fold into the per-channel affine that is already counted. Modules that
declare ``training_only = True`` (DARTS's auxiliary head) are not deployed and not counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from bnn_nas.units import count, size

__all__ = ["LayerCost", "ModelCost", "count_cost"]

OPS_PER_BOP = 1 / 64  # a 64-bit word does 64 XNOR-popcount MACs per instruction


class _Totals:
    """OPs, params and deployed bytes, derived from the four counts every cost holds."""

    bops: int
    flops: int
    binary_params: int
    float_params: int

    @property
    def ops(self) -> float:
        """BOPs / 64 + FLOPs: the one number papers compare binary networks by."""
        return self.bops * OPS_PER_BOP + self.flops

    @property
    def params(self) -> int:
        return self.binary_params + self.float_params

    @property
    def bytes(self) -> float:
        """Deployed size: 1 bit per binary weight, 32 bits per float parameter."""
        return self.binary_params / 8 + 4 * self.float_params


@dataclass(frozen=True)
class LayerCost(_Totals):
    """One call of one module: its MACs by precision and the parameters it owns.

    A module called twice appears twice; its parameters sit on the first call only,
    so summing the layers gives the model's totals.
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    bops: int
    flops: int
    binary_params: int
    float_params: int


@dataclass(frozen=True)
class ModelCost(_Totals):
    """Per-layer costs and their totals, per image."""

    layers: tuple[LayerCost, ...]
    bops: int
    flops: int
    binary_params: int
    float_params: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (shapes as lists), derived totals included."""
        layers = [
            {**asdict(layer), "output_shape": list(layer.output_shape)} for layer in self.layers
        ]
        return {
            "layers": layers,
            "bops": self.bops,
            "flops": self.flops,
            "ops": self.ops,
            "binary_params": self.binary_params,
            "float_params": self.float_params,
            "params": self.params,
            "bytes": self.bytes,
        }

    def table(self) -> str:
        """A per-layer text table and a totals line, for logs and the CLI.

        Per layer: BOPs, FLOPs, OPs, params (binary + float) and deployed bytes; the
        totals line splits the params into binary and float.
        """
        header = ("layer", "kind", "output", "BOPs", "FLOPs", "OPs", "params", "bytes")
        rows = [
            (
                layer.name or "(model)",
                layer.kind,
                "x".join(map(str, layer.output_shape)) or "-",
                count(layer.bops),
                count(layer.flops),
                count(layer.ops),
                count(layer.params),
                size(layer.bytes),
            )
            for layer in self.layers
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(row: tuple[str, ...]) -> str:
            cells = zip(row, widths, strict=True)  # text left-aligned, numbers right
            return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(cells))

        rule = "-" * len(line(tuple("-" * w for w in widths)))
        totals = (
            f"total: BOPs {count(self.bops)}  FLOPs {count(self.flops)}  OPs {count(self.ops)}  "
            f"params {count(self.params)} (binary {count(self.binary_params)} / "
            f"float {count(self.float_params)})  bytes {size(self.bytes)}"
        )
        return "\n".join([line(header), rule, *map(line, rows), rule, totals])


def count_cost(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> ModelCost:
    """Cost of ``model`` on one input of ``input_shape`` (batch 1: counts are per image).

    Runs one forward pass in eval mode without gradients, hooking every module that
    owns parameters or does MACs; only modules that run are charged MACs. The
    model's training flags are restored and nothing else of it changes.
    """
    if len(input_shape) < 1 or input_shape[0] != 1:
        raise ValueError(
            f"input_shape must have batch size 1 (counts are per image), got {input_shape}"
        )
    modules = dict(model.named_modules())  # one name per module, even when shared
    # parts that run in training only (DARTS's auxiliary head) are not deployed: not counted
    skipped = [name for name, m in modules.items() if getattr(m, "training_only", False) is True]
    counted = {
        name: module
        for name, module in modules.items()
        if (_macs_kind(module) or any(True for _ in module.parameters(recurse=False)))
        and not any(name == s or name.startswith(f"{s}.") for s in skipped)
    }
    charged: set[int] = set()  # ids of parameters already on a layer
    layers: list[LayerCost] = []

    def record(name: str, module: nn.Module, output_shape: tuple[int, ...], macs: int) -> None:
        binary = _is_binary(module)
        binary_params = float_params = 0
        for pname, param in module.named_parameters(recurse=False):
            if id(param) in charged:
                continue
            charged.add(id(param))
            if binary and pname == "weight":
                binary_params += param.numel()
            else:
                float_params += param.numel()
        layers.append(
            LayerCost(
                name=name,
                kind=type(module).__name__,
                output_shape=output_shape,
                bops=macs if binary else 0,
                flops=0 if binary else macs,
                binary_params=binary_params,
                float_params=float_params,
            )
        )

    def hook_for(name: str) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            out = _first_tensor(output)
            shape = tuple(out.shape) if out is not None else ()
            record(name, module, shape, _macs(module, _first_tensor(args), out))

        return hook

    training = {module: module.training for module in modules.values()}
    handles = [module.register_forward_hook(hook_for(name)) for name, module in counted.items()]
    try:
        model.eval()
        example = next(model.parameters(), None)
        dtype = example.dtype if example is not None and example.is_floating_point() else None
        device = example.device if example is not None else None
        with torch.no_grad():
            model(torch.zeros(input_shape, dtype=dtype, device=device))
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training.items():
            module.training = flag

    for name, module in counted.items():  # parameters of modules that never ran
        if any(id(p) not in charged for p in module.parameters(recurse=False)):
            record(name, module, (), 0)

    return ModelCost(
        layers=tuple(layers),
        bops=sum(layer.bops for layer in layers),
        flops=sum(layer.flops for layer in layers),
        binary_params=sum(layer.binary_params for layer in layers),
        float_params=sum(layer.float_params for layer in layers),
    )


def _is_binary(module: nn.Module) -> bool:
    """The layer's own declaration (``BinaryConv2d`` / ``BinaryLinear`` and look-alikes)."""
    return _macs_kind(module) is not None and getattr(module, "is_binary", False) is True


def _macs_kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    return None


def _macs(module: nn.Module, inp: Tensor | None, out: Tensor | None) -> int:
    """Multiply-accumulates per image of one call (0 for modules that do none)."""
    kind = _macs_kind(module)
    if kind is None or out is None:
        return 0
    batch = out.shape[0] if out.dim() > 1 else 1
    if kind == "linear":
        return out.numel() // batch * module.in_features
    kernel = math.prod(module.kernel_size)
    if module.transposed:  # each input pixel scatters a kernel into every output group channel
        assert inp is not None
        return inp.numel() // batch * (module.out_channels // module.groups) * kernel
    return out.numel() // batch * (module.in_channels // module.groups) * kernel


def _first_tensor(value: Any) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None
