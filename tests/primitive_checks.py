"""Behaviour every primitive must have; used for built-ins and plugin primitives alike."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnn_nas.binary import BinaryConv2d
from bnn_nas.primitives import PrimitiveSpec


def out_size(size: int, stride: int) -> int:
    return -(-size // stride)


def check_primitive(
    spec: PrimitiveSpec, C_in: int, C_out: int, stride: int, **options
) -> nn.Module:
    """Build, run forward and backward, and prove binary convs really see +-1 operands."""
    torch.manual_seed(0)
    module = spec.build(C_in, C_out, stride, **options)
    module.train()
    seen: list[str] = []
    operands: dict[int, torch.Tensor] = {}  # what each conv's binarizer really produced

    def record(binarizer: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        operands[id(binarizer)] = output

    def check_conv(conv: BinaryConv2d, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        operand = operands.pop(id(conv.act))
        if conv.act.bits == 1:
            values = set(operand.detach().unique().tolist())
            assert values <= {-1.0, 1.0}, f"{spec.name}: binary conv saw {sorted(values)[:5]}"
        w = conv.weight_binarizer(conv.weight)
        if conv.weight_binarizer.bits == 1:
            scale = w.detach().abs().amax(dim=(1, 2, 3), keepdim=True)
            assert set((w.detach() / scale).unique().tolist()) <= {-1.0, 1.0}
        # the module's output is exactly the conv of the binarized operands
        expected = F.conv2d(
            operand, w, None, conv.stride, conv.padding, conv.dilation, conv.groups
        )
        torch.testing.assert_close(output, expected, rtol=0, atol=1e-5)
        seen.append(conv.act.name)

    convs = [m for m in module.modules() if isinstance(m, BinaryConv2d)]
    hooks = [c.act.register_forward_hook(record) for c in convs]
    hooks += [c.register_forward_hook(check_conv) for c in convs]
    x = torch.randn(2, C_in, 7, 7, requires_grad=True)
    y = module(x)
    for h in hooks:
        h.remove()
    assert y.shape == (2, C_out, out_size(7, stride), out_size(7, stride)), (spec.name, y.shape)
    assert torch.isfinite(y).all()
    if y.requires_grad:
        (y * torch.randn_like(y)).sum().backward()
        for name, p in module.named_parameters():
            assert p.grad is not None, f"{spec.name}: parameter {name} got no gradient"
            assert torch.isfinite(p.grad).all()
    n_binary = sum(isinstance(m, BinaryConv2d) and m.is_binary for m in module.modules())
    acts_binary = options.get("act", "clipped_ste") != "identity"
    weights_binary = options.get("weight", "xnor") != "identity"
    if spec.precision == "binary" and acts_binary and weights_binary:
        assert n_binary >= 1, f"{spec.name} declares binary but has no binary conv"
        assert len(seen) == sum(isinstance(m, BinaryConv2d) for m in module.modules())
    if spec.precision == "float":
        assert n_binary == 0
    return module
