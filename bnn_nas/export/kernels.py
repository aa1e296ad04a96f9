"""The two backends of the packed engine: native C kernels, and a portable torch fallback.

Both run the same packed operands to the same integers: the fallback applies the same
thresholds, unpacks the weight bits to +-1 floats once and runs a float convolution (exact:
the sums are small integers), so it is a correct engine everywhere, only without the speed.
``select_backend`` picks the native one unless asked not to, and says once per process
when it had to fall back.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bnn_nas.errors import BnnNasError
from bnn_nas.export.bits import group_words, unpack_last, words_for
from bnn_nas.export.native import LayerStruct, NativeBuildError, NativeLibrary, load_library
from bnn_nas.units import plural


@dataclass(frozen=True)
class ConvGeometry:
    """Shape of one binary convolution; ``groups`` as torch's (weights [O, C / groups, kh, kw],
    output channel o reads the input channels of group o // (O / groups))."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int = 1

    def __post_init__(self) -> None:
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"groups={self.groups} must divide {self.in_channels} and {self.out_channels}"
            )

    @property
    def group_in(self) -> int:
        """Input channels of one group (C / groups)."""
        return self.in_channels // self.groups

    @property
    def group_out(self) -> int:
        """Output channels of one group (O / groups)."""
        return self.out_channels // self.groups

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        sizes = []
        for size, k, s, p, d in zip(
            (height, width), self.kernel, self.stride, self.padding, self.dilation, strict=True
        ):
            sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return sizes[0], sizes[1]


def masked_is_cheaper(g: ConvGeometry) -> bool:
    """Whether a grouped conv runs faster as one dense conv with a mask per output (each
    output's word holds all channels, the other groups' masked off) than as ``groups``
    narrow convs: compares the 64-bit lanes per tap, K * Opad against G * Kg * Opad_g
    (BATS, 12 groups of 4 channels: 1 * 48 lanes against 12 * 1 * 8)."""
    lanes = lambda channels, outputs: words_for(channels) * (-(-outputs // 8) * 8)  # noqa: E731
    return g.groups > 1 and lanes(g.in_channels, g.out_channels) < g.groups * lanes(
        g.group_in, g.group_out
    )


def comparison_form(mul: Tensor, thr: Tensor, groups: int = 1) -> tuple[Tensor, Tensor]:
    """``mul * x >= thr`` as ``(x >= thr_ge) XOR flip``: one compare per channel, no multiply.

    For ``mul = -1``: ``-x >= thr`` is ``x <= -thr``, i.e. NOT ``x >= nextafter(-thr, +inf)``
    for every float32 x. ``flip`` is packed into int64 words like the activations (each of
    the ``groups`` groups of channels in words of its own).
    """
    negative = (mul < 0).numpy()
    values = thr.float().numpy().copy()
    values[negative] = np.nextafter(-values[negative], np.float32(np.inf))
    flip = group_words(torch.from_numpy(negative), groups)
    return torch.from_numpy(values).contiguous(), flip


@dataclass(eq=False)
class PackedParams:
    """One packed conv's operands in the kernels' layouts, plus per-input-size caches.

    ``weights``: int64 [G, T, K, Opad] (G = groups; K and Opad per group), or with a
    ``mask`` (int64 [K, Opad]: each output's channels) the groups as one dense conv:
    [1, T, K, Opad] over all channels, zero outside each output's group; ``tap_sums``:
    int64 [T, O] (sum of the +-1 weights of each tap over the input channels that output
    reads, for the padding correction); the rest float32 per channel. ``shift``: read
    the offset grid of a factorized reduce.
    """

    geometry: ConvGeometry
    weights: Tensor
    tap_sums: Tensor
    mul: Tensor
    thr: Tensor
    scale: Tensor
    bias: Tensor
    shift: bool = False
    mask: Tensor | None = None
    cache: dict[Any, Any] = field(default_factory=dict)
    thr_ge: Tensor = field(init=False)
    flip: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.thr_ge, self.flip = comparison_form(self.mul, self.thr, self.layout_groups)

    @property
    def layout_groups(self) -> int:
        """Groups of the kernels' layouts: 1 when masked (one dense conv), else groups."""
        return 1 if self.mask is not None else self.geometry.groups

    def correction(self, height: int, width: int) -> Tensor | None:
        """What a +1 border adds to each output: int32 [Ho, Wo, O] (None: no padding).

        Training pads with zeros, so padded taps must add 0; the kernels pad with +1 (one
        shape for every tap) and subtract this map, the weights that meet the border.
        """
        key = ("correction", height, width)
        if key not in self.cache:
            g = self.geometry
            ph, pw = g.padding
            if ph == 0 and pw == 0:
                self.cache[key] = None
            else:
                border = torch.ones(1, 1, height + 2 * ph, width + 2 * pw, dtype=torch.float64)
                border[:, :, ph : ph + height, pw : pw + width] = 0
                sums = self.tap_sums.t().reshape(g.out_channels, 1, *g.kernel).double()
                corr = F.conv2d(border, sums, stride=g.stride, dilation=g.dilation)
                self.cache[key] = corr[0].permute(1, 2, 0).round().to(torch.int32).contiguous()
        return self.cache[key]


class Backend(Protocol):
    """Runs a packed conv: float NCHW in (any memory layout), NCHW out in channels_last
    memory: float32 ``scale * dot + bias (+ residual)``, or the int32 dot products."""

    native: bool
    threads: int

    def describe(self) -> str: ...

    def run(
        self,
        params: PackedParams,
        x: Tensor,
        integer: bool = False,
        residual: Tensor | None = None,
    ) -> Tensor: ...


_FAILURES = {
    -2: "the packed kernels ran out of memory",
    -3: "a packed layer with C_in / groups * kh * kw >= 2^24 cannot be exact in float32",
    -4: "a packed layer's groups do not divide its channels",
}


class NativeBackend:
    """The C kernels through ctypes: one call per layer on the memory of torch tensors."""

    native = True

    def __init__(self, library: NativeLibrary, threads: int = 1) -> None:
        self.library = library
        self.threads = _check_threads(threads)

    def describe(self) -> str:
        return f"{self.library.describe()}, {plural(self.threads, 'thread')}"

    def _layer(self, p: PackedParams, n: int, h: int, w: int) -> tuple[Any, ...]:
        """The C struct of this layer and input size, built once and then only read."""
        g = p.geometry
        ho, wo = g.output_size(h, w)
        ph, pw = g.padding
        corr = p.correction(h, w)
        struct = LayerStruct(
            n, h, w, g.in_channels, g.out_channels, *g.kernel, *g.stride, ph, pw,
            *g.dilation, ho, wo, int(p.shift), self.threads, g.groups,
            p.thr_ge.data_ptr(), p.flip.data_ptr(), p.scale.data_ptr(), p.bias.data_ptr(),
            p.weights.data_ptr(), None if corr is None else corr.data_ptr(),
            None if p.mask is None else p.mask.data_ptr(),
        )  # fmt: skip
        lg = p.layout_groups
        scratch = (n, h + 2 * ph, w + 2 * pw, lg * words_for(g.in_channels // lg))
        entry = (ctypes.byref(struct), scratch, (n, g.out_channels, ho, wo), struct, corr)
        if len(p.cache) > 32:  # many input sizes: start over rather than grow
            p.cache.clear()
        p.cache[("native", n, h, w, self.threads)] = entry
        return entry

    def run(
        self,
        params: PackedParams,
        x: Tensor,
        integer: bool = False,
        residual: Tensor | None = None,
    ) -> Tensor:
        if x.dtype != torch.float32:
            x = x.float()
        if not x.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)  # NHWC memory
        n, _, h, w = x.shape
        entry = params.cache.get(("native", n, h, w, self.threads))
        ref, scratch_shape, out_shape = (entry or self._layer(params, n, h, w))[:3]
        if residual is not None and (
            integer or residual.shape != out_shape or residual.dtype != torch.float32
        ):
            return self.run(params, x, integer) + residual  # torch's rules, torch's errors
        if residual is not None and not residual.is_contiguous(memory_format=torch.channels_last):
            residual = residual.contiguous(memory_format=torch.channels_last)
        scratch = torch.empty(scratch_shape, dtype=torch.int64)
        dtype = torch.int32 if integer else torch.float32
        out = torch.empty(out_shape, dtype=dtype, memory_format=torch.channels_last)
        ptr = out.data_ptr()
        status = self.library.lib.bnn_layer(
            ref, x.data_ptr(), scratch.data_ptr(),
            None if residual is None else residual.data_ptr(),
            None if integer else ptr, ptr if integer else None,
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(_FAILURES.get(status, f"bnn_layer failed with status {status}"))
        return out


class TorchBackend:
    """Portable fallback: the same thresholds, +1 border, correction and affine, with the
    packed weights unpacked once to +-1 floats and a float conv (exact, not fast)."""

    native = False

    def __init__(self, threads: int = 1, reason: str = "asked for") -> None:
        self.threads = _check_threads(threads)
        self.reason = reason

    def describe(self) -> str:
        return f"portable torch fallback, not bit-packed at run time ({self.reason})"

    @staticmethod
    def _operands(p: PackedParams) -> tuple[Tensor, Tensor]:
        """The +-1 float weights [O, C / G, kh, kw] and the flip flags [C], unpacked once."""
        if "torch" not in p.cache:
            g, lg = p.geometry, p.layout_groups
            og, cg = g.out_channels // lg, g.in_channels // lg
            wbits = p.weights[:, :, :, :og].permute(0, 1, 3, 2)  # [G, T, Og, K]
            w = unpack_last(wbits, cg).to(torch.float32) * 2 - 1
            w = w.reshape(lg, *g.kernel, og, cg).permute(0, 3, 4, 1, 2)
            w = w.reshape(g.out_channels, cg, *g.kernel)
            if p.mask is not None:  # dense [O, C, ...]: each output's own group's block
                blocks = w.view(g.groups, g.group_out, g.groups, g.group_in, *g.kernel)
                w = torch.diagonal(blocks, dim1=0, dim2=2).permute(4, 0, 1, 2, 3)
                w = w.reshape(g.out_channels, g.group_in, *g.kernel)
            flip = unpack_last(p.flip.view(lg, -1), cg).reshape(1, -1, 1, 1)
            p.cache["torch"] = (w.contiguous(), flip)
        return p.cache["torch"]

    def run(
        self,
        params: PackedParams,
        x: Tensor,
        integer: bool = False,
        residual: Tensor | None = None,
    ) -> Tensor:
        g = params.geometry
        w, flip = self._operands(params)
        bits = (x.float() >= params.thr_ge.view(1, -1, 1, 1)) ^ flip
        if params.shift:  # the offset grid: up-left by one pixel, +1 moved in
            shifted = torch.ones_like(bits)
            shifted[:, :, :-1, :-1] = bits[:, :, 1:, 1:]
            bits = shifted
        ph, pw = g.padding
        pm1 = F.pad(bits.to(torch.float32) * 2 - 1, (pw, pw, ph, ph), value=1.0)
        dot = F.conv2d(pm1, w, stride=g.stride, dilation=g.dilation, groups=g.groups).round()
        corr = params.correction(x.shape[2], x.shape[3])
        if corr is not None:
            dot = dot - corr.permute(2, 0, 1).to(dot.dtype)
        if integer:
            out = dot.to(torch.int32)
        else:
            scale = params.scale.view(1, -1, 1, 1)
            out = torch.addcmul(params.bias.view(1, -1, 1, 1), scale, dot)
            if residual is not None:
                out = out + residual
        return out.contiguous(memory_format=torch.channels_last)


def _check_threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BnnNasError(f"threads must be a positive integer, got {threads!r}")
    return threads


_ANNOUNCED: set[str] = set()


def select_backend(
    native: bool = True,
    threads: int = 1,
    *,
    cache_dir: Path | None = None,
    compiler: str | None = None,
    announce: bool = True,
) -> NativeBackend | TorchBackend:
    """The native backend, or the torch fallback when ``native`` is False or no build works.

    A fallback forced by the platform is announced on stderr once per process and reason.
    """
    if not native:
        return TorchBackend(threads, "native kernels turned off")
    try:
        library = load_library(cache_dir, compiler)
    except NativeBuildError as err:
        backend = TorchBackend(threads, f"native kernels unavailable: {err}")
        if announce and str(err) not in _ANNOUNCED:
            _ANNOUNCED.add(str(err))
            print(f"bnn-nas: {backend.describe()}; inference will be slow", file=sys.stderr)
        return backend
    if threads > 1 and not library.openmp:
        print("bnn-nas: kernels built without OpenMP; running on one thread", file=sys.stderr)
    return NativeBackend(library, threads)
