"""Load a ``.bnn`` file into a runnable packed network.

The loader rebuilds the network from the file's description with bnn-nas's builders,
rewrites it exactly as the exporter did (so every packed slot exists), checks that the
rewrite matches the file's list of packed layers, and fills the slots with the file's
tensors. Float parts stay ordinary torch modules; binary convs run on the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bnn_nas.errors import BnnNasError, CheckpointError
from bnn_nas.export.architecture import Architecture, InputSpec
from bnn_nas.export.convert import pack_model
from bnn_nas.export.exporter import FORMAT_NAME
from bnn_nas.export.fileformat import read_bnn
from bnn_nas.export.kernels import Backend, select_backend
from bnn_nas.export.modules import PackedConv2d, set_backend


@dataclass
class PackedNetwork:
    """An exported network ready for inference on the CPU."""

    module: nn.Module
    architecture: Architecture
    input: InputSpec
    backend: Backend
    header: dict[str, Any]
    path: Path

    @torch.no_grad()
    def logits(self, x: Tensor) -> Tensor:
        """Logits of a normalised float NCHW batch (run in channels_last memory, the packed
        kernels' layout, so no layer converts its input)."""
        return self.module(x.float().contiguous(memory_format=torch.channels_last))

    def normalize(self, images: np.ndarray) -> Tensor:
        """uint8 NHWC images -> the normalised float32 NCHW input the network was trained on."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.input.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.input.std).view(1, -1, 1, 1)
        return (x - mean) / std

    def predict(self, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
        """Logits (float32 [N, classes]) of uint8 NHWC images, in batches."""
        out = [
            self.logits(self.normalize(images[i : i + batch_size])).numpy()
            for i in range(0, len(images), batch_size)
        ]
        classes = len(self.input.classes)
        return np.concatenate(out) if out else np.zeros((0, classes), np.float32)

    def describe(self) -> str:
        layers = len(self.header.get("packed_layers", []))
        return f"{self.path}: {layers} packed binary convs on {self.backend.describe()}"


def _state(tensors: dict[str, np.ndarray]) -> dict[str, Tensor]:
    state = {}
    for name, array in tensors.items():
        if array.dtype == np.uint64:
            array = array.view(np.int64)
        state[name] = torch.from_numpy(array)
    return state


def load_packed(
    path: Path,
    *,
    native: bool = True,
    threads: int = 1,
    backend: Backend | None = None,
) -> PackedNetwork:
    """Read ``path`` and build its network on the native kernels (or the torch fallback).

    ``threads``: threads of the packed kernels (torch's own float ops follow
    ``torch.set_num_threads``). Primitives from plugins must be loaded beforehand.
    """
    path = Path(path)
    header, tensors = read_bnn(path)
    if header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a packed bnn-nas model; export it again")
    try:
        architecture = Architecture.from_dict(header["architecture"], str(path))
        spec = InputSpec.from_dict(header["input"])
        module = architecture.build()
    except BnnNasError as err:
        raise CheckpointError(f"{path}: {str(err).splitlines()[0]}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has a malformed description ({err}); export again") from None
    conversion = pack_model(module)
    layers = [layer.to_dict() for layer in conversion.layers]
    if layers != header.get("packed_layers"):
        raise CheckpointError(
            f"{path} was packed by a bnn-nas whose network builders differ from this one; "
            "export it again with this version"
        )
    try:
        module.load_state_dict(_state(tensors), strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path} does not fit its network ({first}); export again") from None
    chosen = backend if backend is not None else select_backend(native, threads)
    for m in module.modules():
        if isinstance(m, PackedConv2d):
            m.prepare()
    set_backend(module, chosen)
    module.to(memory_format=torch.channels_last).eval()
    return PackedNetwork(module, architecture, spec, chosen, header, path)
