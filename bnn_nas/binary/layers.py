"""Binary layers: convolution and linear maps over binarized inputs and weights.

Both subclass their float ``nn`` counterparts, so shape tools, ``channels_last``
and the cost model see ordinary convs; the latent float weight is the trained
parameter and the binarizers are fixed at construction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnn_nas.binary.quantizers import Binarizer, activation_binarizer, weight_binarizer


class _BinarySettings:
    """Read-only ``act`` / ``weight_binarizer`` settings shared by the binary layers."""

    act: Binarizer
    weight_binarizer: Binarizer

    def _init_binarizers(
        self, act: str | Binarizer, weight: str | Binarizer, channels: int
    ) -> None:
        nn.Module.__setattr__(self, "act", activation_binarizer(act, channels))
        nn.Module.__setattr__(self, "weight_binarizer", weight_binarizer(weight))
        object.__setattr__(self, "_settings_frozen", True)

    def __setattr__(self, key: str, value: object) -> None:
        if key in ("act", "weight_binarizer") and getattr(self, "_settings_frozen", False):
            raise AttributeError(f"{type(self).__name__}.{key} is fixed at construction")
        super().__setattr__(key, value)  # type: ignore[misc]

    @property
    def is_binary(self) -> bool:
        """True when both operands are 1-bit (the layer costs BOPs, not FLOPs)."""
        return self.act.bits == 1 and self.weight_binarizer.bits == 1


class BinaryConv2d(_BinarySettings, nn.Conv2d):
    """conv(act(x), weight_binarizer(W)) with zero padding (ternary borders, as the peers).

    Defaults follow XNOR-Net: clipped-STE activations, per-channel scaled weights.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        *,
        act: str | Binarizer = "clipped_ste",
        weight: str | Binarizer = "xnor",
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        )
        self._init_binarizers(act, weight, in_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self.act(x), self.weight_binarizer(self.weight), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, act={self.act.name}, weight={self.weight_binarizer.name}"


class BinaryLinear(_BinarySettings, nn.Linear):
    """linear(act(x), weight_binarizer(W)); the per-row scale plays the role of alpha."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        *,
        act: str | Binarizer = "clipped_ste",
        weight: str | Binarizer = "xnor",
    ) -> None:
        super().__init__(in_features, out_features, bias)
        self._init_binarizers(act, weight, in_features)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.act(x), self.weight_binarizer(self.weight), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, act={self.act.name}, weight={self.weight_binarizer.name}"


class RPReLU(nn.Module):
    """ReActNet's RPReLU: PReLU between learnable per-channel shifts.

    ``y = x - gamma + zeta`` where ``x >= gamma``, else ``beta * (x - gamma) + zeta``;
    gamma and zeta start at 0 and the slopes beta at 0.25 (PReLU's), so it starts as PReLU.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.shift_in = nn.Parameter(torch.zeros(channels))  # gamma
        self.prelu = nn.PReLU(channels, init=0.25)  # beta
        self.shift_out = nn.Parameter(torch.zeros(channels))  # zeta

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1, *([1] * (x.dim() - 2)))
        gamma, zeta = self.shift_in.view(shape), self.shift_out.view(shape)
        return self.prelu(x - gamma.to(x.dtype)) + zeta.to(x.dtype)
