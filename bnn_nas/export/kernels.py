"""The two backends of the packed engine: native C kernels, and a portable torch fallback.

Both run the same packed operands to the same integers: the fallback unpacks the bits to
+-1 floats and runs a float convolution (exact: the sums are small integers), so it is a
correct engine everywhere, only without the speed. ``select_backend`` picks the native
one unless asked not to, and says once per process when it had to fall back.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from bnn_nas.errors import BnnNasError
from bnn_nas.export.bits import ones_words, pack_last, unpack_last, words_for
from bnn_nas.export.native import LayerStruct, NativeBuildError, NativeLibrary, load_library


@dataclass(frozen=True)
class ConvGeometry:
    """Shape of one binary convolution (groups = 1)."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        sizes = []
        for size, k, s, p, d in zip(
            (height, width), self.kernel, self.stride, self.padding, self.dilation, strict=True
        ):
            sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
        return sizes[0], sizes[1]


@dataclass(eq=False)
class PackedParams:
    """One packed conv's operands in the kernels' layouts, plus per-input-size caches.

    ``weights``: int64 [T, K, Opad]; ``tap_sums``: int64 [T, O] (sum of the +-1 weights of
    each tap, for the padding correction); the rest float32 per channel. ``shift``: read
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
    cache: dict[Any, Any] = field(default_factory=dict)

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
    """Runs a packed conv: float NHWC in, NHWC out (float32 affine, or int32 dot)."""

    native: bool
    threads: int

    def describe(self) -> str: ...

    def run(self, params: PackedParams, x: Tensor, integer: bool = False) -> Tensor: ...


class NativeBackend:
    """The C kernels through ctypes: one call per layer on the memory of torch tensors."""

    native = True

    def __init__(self, library: NativeLibrary, threads: int = 1) -> None:
        self.library = library
        self.threads = _check_threads(threads)

    def describe(self) -> str:
        return f"{self.library.describe()}, {self.threads} thread(s)"

    def _layer(self, p: PackedParams, n: int, h: int, w: int) -> tuple[Any, tuple[int, int]]:
        """The C struct of this layer and input size (built once; it keeps its tensors)."""
        key = ("native", n, h, w, self.threads)
        if key not in p.cache:
            g = p.geometry
            ho, wo = g.output_size(h, w)
            (ph, pw), k = g.padding, words_for(g.in_channels)
            scratch = torch.empty((n, h + 2 * ph, w + 2 * pw, k), dtype=torch.int64)
            corr = p.correction(h, w)
            keep = (scratch, corr, p.weights, p.mul, p.thr, p.scale, p.bias)
            struct = LayerStruct(
                n, h, w, g.in_channels, g.out_channels, *g.kernel, *g.stride, ph, pw,
                *g.dilation, ho, wo, int(p.shift), self.threads,
                p.mul.data_ptr(), p.thr.data_ptr(), p.scale.data_ptr(), p.bias.data_ptr(),
                p.weights.data_ptr(), None if corr is None else corr.data_ptr(),
                scratch.data_ptr(),
            )  # fmt: skip
            p.cache[key] = (ctypes.byref(struct), (ho, wo), struct, keep)
        ref, shape, _, _ = p.cache[key]
        return ref, shape

    def run(self, params: PackedParams, x: Tensor, integer: bool = False) -> Tensor:
        x = x.contiguous()
        n, h, w, _ = x.shape
        ref, (ho, wo) = self._layer(params, n, h, w)
        dtype = torch.int32 if integer else torch.float32
        out = torch.empty((n, ho, wo, params.geometry.out_channels), dtype=dtype)
        ptr = out.data_ptr()
        status = self.library.lib.bnn_layer(
            ref, x.data_ptr(), None if integer else ptr, ptr if integer else None
        )
        if status != 0:
            raise MemoryError(f"bnn_layer failed with status {status}")
        return out


class TorchBackend:
    """Portable fallback: unpack to +-1 floats and convolve (exact, not fast)."""

    native = False

    def __init__(self, threads: int = 1, reason: str = "asked for") -> None:
        self.threads = _check_threads(threads)
        self.reason = reason

    def describe(self) -> str:
        return f"portable torch fallback, not bit-packed at run time ({self.reason})"

    @staticmethod
    def pack(p: PackedParams, x: Tensor) -> Tensor:
        """float32 NHWC -> int64 words [N, H + 2ph, W + 2pw, K] with a +1 border."""
        n, h, w, c = x.shape
        (ph, pw), s = p.geometry.padding, int(p.shift)
        words = pack_last(x.float() * p.mul >= p.thr)
        out = ones_words(c).expand(n, h + 2 * ph, w + 2 * pw, -1).clone()
        out[:, ph : ph + h - s, pw : pw + w - s] = words[:, s:, s:]
        return out

    def run(self, params: PackedParams, x: Tensor, integer: bool = False) -> Tensor:
        g = params.geometry
        bits = self.pack(params, x)
        signs = unpack_last(bits, g.in_channels).permute(0, 3, 1, 2)
        pm1 = signs.to(torch.float32) * 2 - 1
        wbits = params.weights[:, :, : g.out_channels].permute(0, 2, 1)
        w = unpack_last(wbits, g.in_channels).to(torch.float32) * 2 - 1
        w = w.reshape(*g.kernel, g.out_channels, g.in_channels).permute(2, 3, 0, 1)
        dot = F.conv2d(pm1, w, stride=g.stride, dilation=g.dilation)
        dot = dot.round().to(torch.int32).permute(0, 2, 3, 1)
        corr = params.correction(x.shape[1], x.shape[2])
        if corr is not None:
            dot = dot - corr
        if integer:
            return dot.contiguous()
        return (params.scale * dot.to(torch.float32) + params.bias).contiguous()


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
