"""The ``.bnn`` file: a versioned, checksummed container of a header and raw tensors.

Layout (integers little-endian)::

    offset  size  field
    0       8     magic  b"\\x89BNN\\r\\n\\x1a\\n"  (PNG-style: catches text-mode mangling)
    8       4     format version (uint32)
    12      4     flags (uint32, 0)
    16      8     header length H (uint64), a multiple of 64 minus 32 so the payload aligns
    24      8     payload length P (uint64)
    32      H     header: UTF-8 JSON, padded with spaces
    32+H    P     payload: the tensors, each starting at a multiple of 64 bytes
    32+H+P  32    SHA-256 of every byte before it

The header holds what the loader needs (model description, input normalisation, class
names, packed layers) and the tensor table: name, dtype, shape, offset into the payload
and byte count of each tensor. Nothing is pickled and nothing is evaluated: JSON and raw
little-endian arrays only. A file that is truncated, foreign, corrupt or of another
version fails with a one-line :class:`CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from bnn_nas.errors import CheckpointError
from bnn_nas.io import write_atomic

MAGIC = b"\x89BNN\r\n\x1a\n"
FORMAT_VERSION = 1
PRELUDE = struct.Struct("<8sIIQQ")
DIGEST_BYTES = 32
ALIGN = 64
DTYPES = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "uint64": np.dtype("<u8"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def encode(header: dict[str, Any], tensors: dict[str, np.ndarray]) -> bytes:
    """The whole file as bytes; ``header`` gets the tensor table under ``tensors``."""
    table, chunks, offset = [], [], 0
    for name, array in tensors.items():
        dtype = next((k for k, v in DTYPES.items() if v == array.dtype.newbyteorder("<")), None)
        if dtype is None:
            raise TypeError(f"tensor {name}: dtype {array.dtype} cannot be stored")
        data = np.ascontiguousarray(array, dtype=DTYPES[dtype]).tobytes()
        start = _aligned(offset)
        chunks.append(b"\0" * (start - offset) + data)
        table.append(
            {"name": name, "dtype": dtype, "shape": list(array.shape), "offset": start,
             "nbytes": len(data)}
        )  # fmt: skip
        offset = start + len(data)
    payload = b"".join(chunks)
    text = json.dumps({**header, "tensors": table}, separators=(",", ":")).encode()
    length = _aligned(PRELUDE.size + len(text)) - PRELUDE.size
    text += b" " * (length - len(text))
    body = PRELUDE.pack(MAGIC, FORMAT_VERSION, 0, length, len(payload)) + text + payload
    return body + hashlib.sha256(body).digest()


def write_bnn(path: Path, header: dict[str, Any], tensors: dict[str, np.ndarray]) -> int:
    """Write the file atomically (a reader never sees half of it); returns its size."""
    path = Path(path)
    data = encode(header, tensors)
    write_atomic(path, lambda handle: handle.write(data))
    return len(data)


def decode(data: bytes, where: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Check and split a file's bytes; every failure is a one-line CheckpointError."""
    again = "export the model again with `bnn-nas export`"
    if not data:
        raise CheckpointError(f"{where} is empty (truncated); {again}")
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise CheckpointError(f"{where} is not a bnn-nas model file (bad magic); {again}")
    if len(data) < PRELUDE.size + DIGEST_BYTES:
        raise CheckpointError(f"{where} is truncated ({len(data)} bytes); {again}")
    _, version, _, hlen, plen = PRELUDE.unpack_from(data)
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{where} has format version {version}, this bnn-nas reads {FORMAT_VERSION}; "
            "use the bnn-nas version that wrote it or export again"
        )
    expected = PRELUDE.size + hlen + plen + DIGEST_BYTES
    if len(data) < expected:
        raise CheckpointError(f"{where} is truncated ({len(data)} of {expected} bytes); {again}")
    if len(data) > expected:
        extra = len(data) - expected
        raise CheckpointError(f"{where} is corrupt ({extra} bytes past its end); {again}")
    body, digest = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"{where} is corrupt (checksum mismatch); {again}")
    try:
        header = json.loads(data[PRELUDE.size : PRELUDE.size + hlen].decode())
        table = header.pop("tensors")
        payload = memoryview(data)[PRELUDE.size + hlen : PRELUDE.size + hlen + plen]
        tensors = {}
        for entry in table:
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(int(s) for s in entry["shape"])
            start, nbytes = int(entry["offset"]), int(entry["nbytes"])
            if any(s < 0 for s in shape) or len(shape) > 8:
                raise ValueError(f"tensor {str(entry['name'])[:40]} has a bad shape")
            if nbytes != math.prod(shape) * dtype.itemsize or start < 0:
                raise ValueError(f"tensor {entry['name']} has a bad size")
            if start + nbytes > plen:
                raise ValueError(f"tensor {entry['name']} lies past the payload")
            chunk = payload[start : start + nbytes]
            tensors[str(entry["name"])] = np.frombuffer(chunk, dtype=dtype).reshape(shape).copy()
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError,
            RecursionError, OverflowError) as err:  # fmt: skip
        reason = str(err)[:100] or type(err).__name__
        raise CheckpointError(f"{where} has a malformed header ({reason}); {again}") from None
    return header, tensors


def read_bnn(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and verify a ``.bnn`` file: (header without the table, tensors by name)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} not found; pass a file from `bnn-nas export`")
    return decode(path.read_bytes(), str(path))
