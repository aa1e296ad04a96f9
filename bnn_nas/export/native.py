"""Build and load the native XNOR-popcount kernels (``bitconv.c``) with the system compiler.

Why not ``torch.utils.cpp_extension``: it needs ninja and the torch headers, and a build
takes a minute. The kernels are plain C11 with no torch dependency, so one ``cc`` call
(about a second) makes a shared library that ctypes loads; it operates on the memory of
torch tensors directly.

The library is cached per user (``$XDG_CACHE_HOME/bnn-nas/native`` or
``~/.cache/bnn-nas/native``) under a key made of the source, the compiler's version, the
flags and the CPU's feature flags, so an upgrade of any of them rebuilds it and a cache
shared between machines never hands one CPU code built for another. Builds write to a
temporary file and rename it, so concurrent processes never load half a library.

The cache is code that gets loaded, so it is trusted only as far as it is private: the
folder must belong to the user and be writable by no one else (else a private folder is
used for the process), and a library is loaded only when its bytes match the SHA-256
recorded beside it at build time (else it is rebuilt): a planted file is never loaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("bitconv.c")
ABI_VERSION = 10
COMPILERS = ("cc", "gcc", "clang")
# Tried in order: the first that compiles wins. -mprefer-vector-width=512 lets GCC use
# 512-bit vectors on CPUs where it defaults to 256 (it matters for VPOPCNTQ).
FLAG_SETS: tuple[tuple[str, ...], ...] = (
    ("-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp"),
    ("-O3", "-march=native", "-fopenmp"),
    ("-O3", "-march=native"),
    ("-O3",),
)
COMMON_FLAGS = ("-std=c11", "-shared", "-fPIC")
FEATURE_NAMES = {1: "AVX-512 packing", 2: "AVX-512 VPOPCNTDQ", 4: "AVX2"}


class NativeBuildError(RuntimeError):
    """No compiler, or none of the flag sets compiled and loaded the kernels."""


@dataclass(frozen=True)
class NativeLibrary:
    """The loaded kernels and how they were built."""

    lib: ctypes.CDLL
    path: Path
    compiler: str
    flags: tuple[str, ...]
    openmp: bool
    features: int

    def describe(self) -> str:
        """One line for logs: compiler, flags, vector features, threading."""
        feats = [name for bit, name in FEATURE_NAMES.items() if self.features & bit]
        vector = ", ".join(feats) if feats else "scalar popcount"
        threads = "OpenMP" if self.openmp else "no OpenMP (one thread)"
        return f"native C kernels ({self.compiler} {' '.join(self.flags)}; {vector}; {threads})"


def default_cache_dir() -> Path:
    """Per-user cache folder of built kernels."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bnn-nas" / "native"


def find_compiler(name: str | None = None) -> str | None:
    """``name`` (a command or path) when given, else the first of cc, gcc, clang on PATH."""
    for candidate in (name,) if name else COMPILERS:
        path = shutil.which(candidate)
        if path:
            return path
    return None


def _cpu_signature() -> str:
    """The CPU model and feature flags: code built with -march=native is only valid there."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    wanted = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    lines = []
    for key in wanted:
        for line in text.splitlines():
            if line.startswith(key):
                lines.append(line.strip())
                break
    return "\n".join(lines) or platform.machine()


def _compiler_version(compiler: str) -> str:
    try:
        done = subprocess.run(
            [compiler, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


class LayerStruct(ctypes.Structure):
    """``bnn_layer_t`` of bitconv.c: one layer's shapes and operand pointers."""

    _fields_ = [
        *[
            (name, ctypes.c_int32)
            for name in (
                "N", "H", "W", "C", "O", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw",
                "Ho", "Wo", "shift", "threads", "groups",
            )
        ],
        *[(name, ctypes.c_void_p) for name in ("thr", "flip", "scale", "bias", "weights")],
        ("corr", ctypes.c_void_p),
        ("mask", ctypes.c_void_p),
    ]  # fmt: skip


def _declare(lib: ctypes.CDLL) -> None:
    p, i32 = ctypes.c_void_p, ctypes.c_int32
    lib.bnn_abi_version.restype = ctypes.c_int
    lib.bnn_has_openmp.restype = ctypes.c_int
    lib.bnn_features.restype = ctypes.c_int
    lib.bnn_layer.argtypes = [ctypes.POINTER(LayerStruct), p, p, p, p, p]
    lib.bnn_layer.restype = ctypes.c_int
    lib.bnn_pack.argtypes = [p, i32, i32, i32, i32, i32, p, p, i32, i32, i32, p, i32]
    lib.bnn_pack.restype = None


def _open(path: Path, compiler: str, flags: tuple[str, ...]) -> NativeLibrary:
    lib = ctypes.CDLL(str(path))
    _declare(lib)
    if lib.bnn_abi_version() != ABI_VERSION:
        raise NativeBuildError(f"{path} has ABI {lib.bnn_abi_version()}, expected {ABI_VERSION}")
    return NativeLibrary(
        lib=lib,
        path=path,
        compiler=Path(compiler).name,
        flags=flags,
        openmp=bool(lib.bnn_has_openmp()),
        features=int(lib.bnn_features()),
    )


def _digest_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(target: Path) -> Path:
    """Where the content hash of ``target``, written when it was built, is kept."""
    return target.with_name(target.name + ".sha256")


def _untrusted(path: Path) -> str | None:
    """Why ``path`` (the cache folder or a file in it) cannot be trusted, or None: it must
    belong to this user and be writable by no one else, or anyone could plant code."""
    st = path.lstat()
    if path.is_symlink():
        return f"{path} is a symbolic link"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{path} belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"{path} is writable by group or others (mode {st.st_mode & 0o777:o})"
    return None


def trusted_library(target: Path) -> bool:
    """A cached library is loaded only when it is this user's, writable by no one else, and
    its bytes hash to what the build recorded beside it; anything else is rebuilt."""
    record = _record(target)
    try:
        if _untrusted(target) or _untrusted(record):
            return False
        return record.read_text().strip() == _digest_file(target)
    except OSError:
        return False


def _compile(compiler: str, flags: tuple[str, ...], target: Path) -> str | None:
    """Compile to ``target`` atomically, recording its content hash beside it; returns the
    compiler's complaint on failure."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    os.close(fd)
    command = [compiler, *flags, *COMMON_FLAGS, "-o", tmp, str(SOURCE)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        Path(tmp).unlink(missing_ok=True)
        return str(err)
    if done.returncode != 0:
        Path(tmp).unlink(missing_ok=True)
        return (done.stderr.strip().splitlines() or ["failed"])[-1]
    try:
        Path(tmp).chmod(0o700)
        fd, record_tmp = tempfile.mkstemp(prefix=".build-", suffix=".sha256", dir=target.parent)
        with os.fdopen(fd, "w") as handle:
            handle.write(_digest_file(Path(tmp)) + "\n")
        Path(record_tmp).replace(_record(target))
        Path(tmp).replace(target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        return str(err)
    return None


def _private_cache(cache: Path) -> Path:
    """``cache`` when it is safe to load code from, else a fresh private folder for this
    process (said once on stderr): a cache someone else can write is never used."""
    try:
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        reason = _untrusted(cache)
        if reason is None:
            tempfile.TemporaryFile(dir=cache).close()
            return cache
        print(f"bnn-nas: not using the kernel cache: {reason}; building privately",
              file=sys.stderr)  # fmt: skip
    except OSError:  # read-only home: build for this process only
        pass
    return Path(tempfile.mkdtemp(prefix="bnn-nas-native-"))


def build_library(
    cache_dir: Path | None = None,
    compiler: str | None = None,
    flag_sets: tuple[tuple[str, ...], ...] = FLAG_SETS,
) -> NativeLibrary:
    """The kernels built (or found in the cache) and loaded; raises NativeBuildError.

    ``flag_sets`` are tried in order; the default asks for the host's vector units first.
    """
    found = find_compiler(compiler)
    if found is None:
        wanted = f"compiler {compiler!r} not found" if compiler else "no C compiler on PATH"
        raise NativeBuildError(f"{wanted} (cc, gcc or clang)")
    cache = _private_cache(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    source = SOURCE.read_bytes()
    identity = "\n".join([_compiler_version(found), _cpu_signature(), str(ABI_VERSION)])
    complaints = []
    for flags in flag_sets:
        key = hashlib.sha256(source + identity.encode() + " ".join(flags).encode()).hexdigest()
        target = cache / f"bitconv-{key[:20]}.so"
        if target.exists() and not trusted_library(target):  # planted or damaged: rebuild
            with contextlib.suppress(OSError):
                target.unlink()
        if not target.is_file():
            complaint = _compile(found, flags, target)
            if complaint is not None:
                complaints.append(f"{' '.join(flags)}: {complaint}")
                continue
        try:
            return _open(target, found, flags)
        except (OSError, NativeBuildError, AttributeError) as err:
            complaints.append(f"{' '.join(flags)}: {err}")
            target.unlink(missing_ok=True)
            _record(target).unlink(missing_ok=True)
    raise NativeBuildError(f"{Path(found).name} could not build the kernels ({complaints[-1]})")


_LOADED: dict[tuple[str, str | None], NativeLibrary | NativeBuildError] = {}


def load_library(cache_dir: Path | None = None, compiler: str | None = None) -> NativeLibrary:
    """:func:`build_library`, once per process and setting (failures are remembered too)."""
    key = (str(cache_dir), compiler)
    if key not in _LOADED:
        try:
            _LOADED[key] = build_library(cache_dir, compiler)
        except NativeBuildError as err:
            _LOADED[key] = err
    result = _LOADED[key]
    if isinstance(result, NativeBuildError):
        raise result
    return result
