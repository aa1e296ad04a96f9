"""CIFAR-10 canonical format: reading, download, MD5 check, safe extraction.

The tests build a tiny archive in the official layout and serve it from 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bnn_nas.data import CIFAR10_CLASSES, load_cifar10
from bnn_nas.errors import DataError

FOLDER = "cifar-10-batches-py"
BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_batches(folder: Path, seed: int = 0, per_batch: int = 3) -> dict[str, np.ndarray]:
    """A canonical folder with random rows; returns the raw rows and labels per file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    raw: dict[str, np.ndarray] = {}
    for name in BATCHES:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch)
        raw[name] = data
        raw[name + ":labels"] = labels
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in labels],
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return raw


def tar_gz(add: dict[str, Path] | None = None, raw_members: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for arcname, path in (add or {}).items():
            tar.add(path, arcname=arcname)
        for info in raw_members:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buffer.getvalue()


@pytest.fixture
def archive(tmp_path: Path) -> tuple[bytes, dict[str, np.ndarray]]:
    raw = write_batches(tmp_path / "src" / FOLDER)
    return tar_gz({FOLDER: tmp_path / "src" / FOLDER}), raw


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """An HTTP server on 127.0.0.1 serving the bytes put in the returned dict."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    finally:
        httpd.shutdown()
        httpd.server_close()


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def expected_image(row: np.ndarray, y: int, x: int) -> np.ndarray:
    """Pixel (y, x) of a CHW-planar row, read independently of any reshape."""
    return np.array([row[c * 1024 + y * 32 + x] for c in range(3)], dtype=np.uint8)


def test_download_verifies_extracts_and_loads(tmp_path, archive, server):
    data, raw = archive
    base, files = server
    files["/c.tar.gz"] = data
    root = tmp_path / "data"
    ds = load_cifar10(root, download=True, url=base + "/c.tar.gz", md5=md5(data))
    assert listing(root) == [FOLDER]  # no temp file or staging folder left
    assert ds.name == "cifar10" and ds.classes == CIFAR10_CLASSES
    assert ds.train.images.shape == (15, 32, 32, 3) and ds.test.images.shape == (3, 32, 32, 3)
    assert ds.train.images.dtype == np.uint8 and ds.train.labels.dtype == np.int64
    rows = np.concatenate([raw[f"data_batch_{i}"] for i in range(1, 6)])
    labels = np.concatenate([raw[f"data_batch_{i}:labels"] for i in range(1, 6)])
    np.testing.assert_array_equal(ds.train.labels, labels)
    np.testing.assert_array_equal(ds.test.labels, raw["test_batch:labels"])
    for n, (y, x) in enumerate([(0, 0), (0, 1), (5, 31), (31, 7)]):
        np.testing.assert_array_equal(ds.train.images[n, y, x], expected_image(rows[n], y, x))
        np.testing.assert_array_equal(
            ds.test.images[n % 3, y, x], expected_image(raw["test_batch"][n % 3], y, x)
        )
    # Later loads need no network, whether root is the parent or the folder itself.
    files.clear()
    again = load_cifar10(root, download=True, url=base + "/gone", md5=md5(data))
    np.testing.assert_array_equal(again.train.images, ds.train.images)
    direct = load_cifar10(root / FOLDER)
    np.testing.assert_array_equal(direct.test.images, ds.test.images)


def test_md5_mismatch_leaves_nothing_loadable(tmp_path, archive, server):
    data, _ = archive
    base, files = server
    files["/c.tar.gz"] = data
    root = tmp_path / "data"
    with pytest.raises(DataError, match="MD5") as err:
        load_cifar10(root, download=True, url=base + "/c.tar.gz", md5="0" * 32)
    assert "\n" not in str(err.value)
    assert not root.exists()  # the folder the download made is gone with it
    with pytest.raises(DataError, match="not found"):
        load_cifar10(root)


@pytest.mark.parametrize("path", ["/missing.tar.gz", None])
def test_unreachable_url_is_a_data_error(tmp_path, server, path):
    base, _ = server
    if path is None:  # a port nobody listens on
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = f"http://127.0.0.1:{port}/c.tar.gz"
    else:
        url = base + path
    with pytest.raises(DataError, match="could not download") as err:
        load_cifar10(tmp_path / "d", download=True, url=url, md5="0" * 32, timeout=5)
    assert "\n" not in str(err.value) and str(tmp_path / "d") in str(err.value)
    assert not (tmp_path / "d").exists()  # nor an empty folder left behind


def test_missing_folder_without_download_names_path_and_fix(tmp_path):
    with pytest.raises(DataError, match="download: true") as err:
        load_cifar10(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere" / FOLDER) in str(err.value)


def test_incomplete_folder_is_reported(tmp_path):
    write_batches(tmp_path / FOLDER)
    (tmp_path / FOLDER / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"incomplete.*data_batch_3"):
        load_cifar10(tmp_path, download=True, url="http://127.0.0.1:9/never")


def test_archive_without_the_folder_is_rejected(tmp_path, server):
    write_batches(tmp_path / "src" / "other-name")
    data = tar_gz({"other-name": tmp_path / "src" / "other-name"})
    base, files = server
    files["/c.tar.gz"] = data
    root = tmp_path / "data"
    with pytest.raises(DataError, match="no complete"):
        load_cifar10(root, download=True, url=base + "/c.tar.gz", md5=md5(data))
    assert not root.exists()  # nothing left, not even the folder


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_path_traversal_in_archive_is_refused(tmp_path, server, kind):
    write_batches(tmp_path / "src" / FOLDER)
    info = tarfile.TarInfo(
        {"dotdot": f"{FOLDER}/../../escaped.txt", "absolute": "/tmp/escaped.txt"}.get(
            kind, f"{FOLDER}/link"
        )
    )
    if kind == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    else:
        info.size = 4
    data = tar_gz({FOLDER: tmp_path / "src" / FOLDER}, [info])
    base, files = server
    files["/c.tar.gz"] = data
    root = tmp_path / "a" / "data"
    with pytest.raises(DataError, match="unsafe"):
        load_cifar10(root, download=True, url=base + "/c.tar.gz", md5=md5(data))
    assert not root.exists()  # nothing left, not even the folder
    assert not (tmp_path / "a" / "escaped.txt").exists()


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_pickle_with_foreign_globals_is_refused(tmp_path):
    write_batches(tmp_path / FOLDER)
    target = tmp_path / "payload-ran"
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Payload(target)}
    (tmp_path / FOLDER / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_2.*not allowed"):
        load_cifar10(tmp_path)
    assert not target.exists()


def test_corrupt_batch_is_a_data_error(tmp_path):
    write_batches(tmp_path / FOLDER)
    (tmp_path / FOLDER / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="test_batch"):
        load_cifar10(tmp_path)


def test_numpy1_module_names_still_load(tmp_path):
    """The official files were pickled by numpy 1 (``numpy.core.multiarray``)."""
    raw = write_batches(tmp_path / FOLDER)
    path = tmp_path / FOLDER / "data_batch_1"
    blob = path.read_bytes().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in blob and b"numpy._core" not in blob
    path.write_bytes(blob)
    ds = load_cifar10(tmp_path)
    np.testing.assert_array_equal(ds.train.images[0, 0, 0], raw["data_batch_1"][0, [0, 1024, 2048]])
