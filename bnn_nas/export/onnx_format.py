"""ONNX export: a trained binary network as a standard graph that Netron opens and
onnxruntime runs.

ONNX has no 1-bit convolution, so the binary convs are float-simulated: each becomes
``Where(x >= 0, 1, -1)`` (``Sub`` of the threshold first for RSign) feeding a ``Conv``
whose weights are the trained binary weights, ``sign(W) * alpha``, stored as constants.
The graph therefore computes what the PyTorch network computes in eval mode, in float32.
Batch norms stay ``BatchNormalization`` nodes (onnxruntime folds the ones that follow a
float conv). The input is the raw image batch, uint8 NHWC (as images decode and as
bnn-nas stores data sets); the layout change and the normalisation of training are the
graph's first steps. The bit-packed ``.bnn`` file stays the fast CPU path.

Needs the ``[onnx]`` extra (onnx and onnxscript, which torch's exporter uses).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnn_nas.binary.layers import BinaryConv2d, BinaryLinear
from bnn_nas.errors import BnnNasError
from bnn_nas.export.architecture import InputSpec
from bnn_nas.io import new_file_mode
from bnn_nas.units import size

OPSET = 18


class _FrozenBinaryConv(nn.Module):
    """A trained BinaryConv2d in eval mode: its binarized weight kept as a constant."""

    def __init__(self, conv: BinaryConv2d) -> None:
        super().__init__()
        self.act = conv.act
        self.register_buffer("weight", conv.weight_binarizer(conv.weight).detach().clone())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.stride, self.padding = conv.stride, conv.padding
        self.dilation, self.groups = conv.dilation, conv.groups

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            self.act(x), self.weight, self.bias, self.stride, self.padding, self.dilation,
            self.groups,
        )  # fmt: skip


class _FrozenBinaryLinear(nn.Module):
    def __init__(self, linear: BinaryLinear) -> None:
        super().__init__()
        self.act = linear.act
        self.register_buffer("weight", linear.weight_binarizer(linear.weight).detach().clone())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.act(x), self.weight, self.bias)


class _Normalised(nn.Module):
    """uint8 NHWC images -> NCHW ``(x / 255 - mean) / std`` -> the network's logits."""

    def __init__(self, net: nn.Module, spec: InputSpec) -> None:
        super().__init__()
        self.net = net
        shape = (1, len(spec.mean), 1, 1)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(shape))

    def forward(self, images: Tensor) -> Tensor:
        x = images.permute(0, 3, 1, 2).float()
        return self.net((x / 255.0 - self.mean) / self.std)


def onnx_ready(model: nn.Module) -> nn.Module:
    """An eval-mode copy whose binary layers hold their binarized weights as constants."""
    net = copy.deepcopy(model).cpu().float().eval()
    for name, module in list(net.named_modules()):
        if isinstance(module, BinaryConv2d):
            frozen: nn.Module = _FrozenBinaryConv(module)
        elif isinstance(module, BinaryLinear):
            frozen = _FrozenBinaryLinear(module)
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, child, frozen)
    return net


@dataclass(frozen=True)
class OnnxSummary:
    path: Path
    file_bytes: int
    nodes: dict[str, int]  # ONNX op type -> count

    def describe(self) -> str:
        top = ", ".join(f"{n} {op}" for op, n in sorted(self.nodes.items(), key=lambda i: -i[1]))
        return (
            f"wrote {self.path}: {size(self.file_bytes)} ONNX (opset {OPSET}, input "
            f"uint8 NHWC images, binary convs float-simulated); nodes: {top}"
        )


def export_onnx(model: nn.Module, spec: InputSpec, output: Path) -> OnnxSummary:
    """Write ``model`` (trained, with ``spec``'s normalisation in front) as an ONNX file."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise BnnNasError(
            "ONNX export needs the onnx extra: pip install 'bnn-nas[onnx]'"
        ) from None
    height, width = _input_size(model, spec)
    wrapped = _Normalised(onnx_ready(model), spec).eval()
    example = torch.zeros(2, height, width, len(spec.mean), dtype=torch.uint8)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    # the exporter narrates each stage on stdout and logs warnings about optional packages
    # (torchvision); bnn-nas prints one summary line instead
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        program = _export(wrapped, example)
    finally:
        quiet.setLevel(level)
    if program is None:
        raise BnnNasError("torch.onnx.export returned no program; update torch to >= 2.5")
    # written beside the target and renamed once checked: a failed export leaves no
    # half-written .onnx where an old one was
    partial = output.with_name(f".{output.name}.part")
    try:
        program.save(str(partial))
        graph = onnx.load(str(partial))
        onnx.checker.check_model(graph)
        partial.chmod(new_file_mode())
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    nodes: dict[str, int] = {}
    for node in graph.graph.node:
        nodes[node.op_type] = nodes.get(node.op_type, 0) + 1
    return OnnxSummary(output, output.stat().st_size, nodes)


def _input_size(model: nn.Module, spec: InputSpec) -> tuple[int, int]:
    """The traced input's size (the graph's, but for the batch): the training images' when
    ``spec`` knows it, else the size the network's layout is made for (ImageNet: 224)."""
    if spec.height is not None and spec.width is not None:
        return spec.height, spec.width
    stem = getattr(model, "stem", None)
    first = stem[0] if isinstance(stem, nn.Sequential) and len(stem) else None
    imagenet = getattr(model, "two_stems", False) or (  # cell networks; baselines' 7x7 stem
        isinstance(first, nn.Conv2d) and first.kernel_size == (7, 7)
    )
    return (224, 224) if imagenet else (32, 32)


def _export(wrapped: nn.Module, example: Tensor):
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore", FutureWarning)  # torch-internal deprecations
        return torch.onnx.export(
            wrapped,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=["images"],
            output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
