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


MAX_CELLS = 1000  # far above any published cell network (DARTS: 20)


def check_size(architecture: Architecture, stored_bytes: int, path: Path) -> None:
    """Refuse a description larger than the tensors the file holds, before building it.

    Every weight takes at least one bit in the file, so a network with more than
    ``8 * stored_bytes`` values cannot be the one stored (a crafted header asking for a
    billion channels would otherwise take all memory). The check builds the network on
    torch's ``meta`` device, which allocates nothing, after a cap on its cell count.
    """
    model, space = architecture.model, architecture.space
    cells = model.cells or (space.network.cells if space is not None else None) or 0
    channels = model.channels or (space.network.channels if space is not None else None) or 0
    if cells > MAX_CELLS or cells * channels * channels > 8 * stored_bytes + 2**20:
        raise CheckpointError(
            f"{path} describes a network ({cells} cells of {channels} channels) far larger "
            f"than the {stored_bytes} bytes of weights it holds; the file is corrupt or "
            "crafted, export it again"
        )
    with torch.device("meta"):
        module = architecture.build()
    values = sum(t.numel() for t in (*module.parameters(), *module.buffers()))
    if values > 8 * stored_bytes + 2**16:
        raise CheckpointError(
            f"{path} describes a network of {values} values but holds {stored_bytes} bytes "
            "of weights; the file is corrupt or crafted, export it again"
        )


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
        check_size(architecture, sum(t.nbytes for t in tensors.values()), path)
        module = architecture.build()
    except BnnNasError as err:
        first = err.line()
        # errors of Architecture.from_dict name the file already: not twice
        named = first.startswith(f"{path}:")
        raise CheckpointError(first if named else f"{path}: {first}") from None
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has a malformed description ({err}); export again") from None
    skipped = header.get("skipped")
    entries = skipped if isinstance(skipped, list) else []
    keep = [str(e[0]) for e in entries if isinstance(e, list) and e]
    conversion = pack_model(module, keep)  # what the file left in torch stays there
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
