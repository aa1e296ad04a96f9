"""Run directories: what kind of run a folder holds, one process at a time, atomic birth.

- A run directory says what it is: ``.bnn-nas-run`` (JSON: kind ``search`` or ``train``),
  or, for folders made before that file existed, the files it holds. A command that needs
  one kind refuses a folder of the other before writing anything.
- A lock (``fcntl.flock`` on ``.lock``, holding the owner's pid) is held for the life of
  the process that runs the search or training; a second one is refused in one line that
  names the holder. The lock is the operating system's: it goes when the holder dies,
  whatever killed it, so a killed run never stays locked.
- A new run directory is made in a hidden sibling (``.NAME.XXXX.new``) and renamed into
  place once its first files are written: a kill at any moment leaves no directory or a
  complete one. Siblings left by a kill are removed at the next start, and so are the
  temporary files of writes a kill cut off inside it.
- Plugins named by a config inside a run directory are code someone else may have
  written: they are imported only when the user passes them (``--plugin``) or says
  ``--trust-run-plugins``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bnn_nas import __version__
from bnn_nas.errors import BnnNasError, ConfigError, PluginError
from bnn_nas.io import process_umask

MARKER = ".bnn-nas-run"
LOCK = ".lock"
KINDS = ("search", "train")
# files that mark a run directory written before the marker existed
_LEGACY = {"search": ("trials.sqlite",), "train": ("checkpoint.pt", "report.json", "metrics.csv")}
_STAGING_SUFFIX = ".new"


class RunDirBusyError(BnnNasError):
    """Another process holds the run directory's lock."""


def run_kind(run_dir: Path) -> str | None:
    """``search``, ``train`` or None (not a run directory, or none yet)."""
    run_dir = Path(run_dir)
    marker = run_dir / MARKER
    if marker.is_file():
        try:
            kind = json.loads(marker.read_text()).get("kind")
        except (OSError, ValueError, AttributeError, UnicodeDecodeError):
            kind = None
        if kind in KINDS:
            return kind
        raise ConfigError(f"{marker} is damaged; it is not a run directory bnn-nas can use")
    for kind, names in _LEGACY.items():
        if any((run_dir / name).exists() for name in names):
            return kind
    return None


def check_run_dir(run_dir: Path, kind: str, command: str) -> bool:
    """Refuse a path that cannot become or continue a ``kind`` run; True when it exists."""
    run_dir = Path(run_dir)
    try:
        exists = run_dir.exists()
        if exists and not run_dir.is_dir():
            raise ConfigError(f"--run-dir {run_dir} is a file, not a directory; choose another")
        for parent in run_dir.absolute().parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ConfigError(f"--run-dir {run_dir}: {parent} is a file; choose another")
                break
        found = run_kind(run_dir) if exists else None
    except OSError as err:
        raise ConfigError(f"--run-dir {run_dir} cannot be used ({os_reason(err)})") from None
    if found is not None and found != kind:
        other = "search" if found == "search" else "training"
        raise ConfigError(
            f"{run_dir} holds a {other} run, not a {'search' if kind == 'search' else 'training'};"
            f" `bnn-nas {command}` would overwrite it: choose another --run-dir"
        )
    return exists


def os_reason(err: OSError) -> str:
    """``[Errno 28] No space left on device: 'x'`` -> ``No space left on device``."""
    return err.strerror or type(err).__name__


# (st_dev, st_ino) of a held lock file -> its descriptor: this process already owns it
_HELD: dict[tuple[int, int], int] = {}


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode(errors="replace").split()
    except OSError:
        text = []
    return text[0] if text else "unknown"


def _flock_exclusive(fd: int, tries: int = 10, pause: float = 0.05) -> None:
    """The exclusive lock, asked ``tries`` times ``pause`` seconds apart: a reader's
    look (:func:`run_dir_in_use` holds a shared lock for microseconds) is waited out,
    a search holding it is not."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or attempt == tries - 1:
                raise
            time.sleep(pause)


def lock_run_dir(run_dir: Path) -> None:
    """Hold ``run_dir``'s lock until this process ends (or :func:`release_run_dir`)."""
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ConfigError(
            f"cannot lock {run_dir} ({os_reason(err)}); check its permissions"
        ) from None
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino)
    if key in _HELD:
        os.close(fd)
        return
    try:
        _flock_exclusive(fd)
    except OSError as err:
        pid = _holder(fd)
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RunDirBusyError(
                f"{run_dir} is in use by bnn-nas process {pid}; wait for it to finish (or stop "
                "it) or choose another --run-dir"
            ) from None
        raise ConfigError(f"cannot lock {run_dir} ({os_reason(err)})") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the lock is what counts; the pid is for the message
    _HELD[key] = fd


def name_lock_holder(run_dir: Path, pid: int) -> None:
    """Name ``pid`` in the lock this process holds on ``run_dir`` (no-op when not held):
    a supervised search names its parent, the process a user should signal."""
    try:
        st = (Path(run_dir) / LOCK).stat()
    except OSError:
        return
    fd = _HELD.get((st.st_dev, st.st_ino))
    if fd is not None:
        with contextlib.suppress(OSError):  # the lock is what counts; the pid is for the message
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{pid}\n".encode(), 0)


def run_dir_in_use(run_dir: Path) -> bool:
    """Whether a bnn-nas process holds ``run_dir``'s lock (a search running in it now).

    Asks for a shared lock without waiting and gives it back at once; the file is opened
    read-only and never created, so a reader (``status``) changes nothing. This process's
    own lock counts as in use."""
    path = Path(run_dir) / LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False  # no lock file: no search has ever held it
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in _HELD:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def remove_stale_parts(run_dir: Path, older_than: float = 60.0) -> list[Path]:
    """Delete the temporary files (``.NAME.*.part``) that writes cut off by a kill left in
    ``run_dir``; called with the lock held. Ones younger than ``older_than`` seconds are
    kept: a `derive` or `plot` may be writing beside the run right now."""
    removed = []
    now = time.time()
    try:
        candidates = list(Path(run_dir).glob(".*.part"))
    except OSError:
        return removed
    for path in candidates:
        try:
            if now - path.lstat().st_mtime >= older_than and not path.is_dir():
                path.unlink()
                removed.append(path)
        except OSError:
            continue
    return removed


def release_run_dir(run_dir: Path) -> None:
    """Give up this process's lock on ``run_dir`` (no-op when not held)."""
    try:
        st = (Path(run_dir) / LOCK).stat()
    except OSError:
        return
    fd = _HELD.pop((st.st_dev, st.st_ino), None)
    if fd is not None:
        os.close(fd)


def _write_marker(run_dir: Path, kind: str) -> None:
    document = {"kind": kind, "bnn_nas": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    (run_dir / MARKER).write_text(json.dumps(document) + "\n")


def remove_stale_staging(run_dir: Path) -> None:
    """Delete hidden siblings ``.NAME.*.new`` that a killed creation left (lock not held)."""
    parent = Path(run_dir).parent
    try:
        stale = list(parent.glob(f".{Path(run_dir).name}.*{_STAGING_SUFFIX}"))
    except OSError:
        return
    for path in stale:
        try:
            fd = os.open(path / LOCK, os.O_RDWR)
        except OSError:
            fd = None
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # still being made: skip
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue
        finally:
            if fd is not None:
                os.close(fd)


@contextlib.contextmanager
def creating(run_dir: Path, kind: str) -> Iterator[Path]:
    """Make ``run_dir`` atomically: yields a locked staging folder to fill, then renames it
    into place (the lock moves with it). On any error the staging folder is removed and
    nothing is left. When another process made ``run_dir`` first, RunDirBusyError says so.

    A folder that exists and already holds other files (not a run) is kept: the run's
    files move into it one by one under its lock, the kind marker last, so a kill leaves
    it as it was or with a complete store."""
    run_dir = Path(run_dir)
    parent = run_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(run_dir)
        in_place = run_dir.is_dir() and any(run_dir.iterdir())
        staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", suffix=_STAGING_SUFFIX,
                                        dir=parent))  # fmt: skip
    except OSError as err:
        raise ConfigError(f"cannot create --run-dir {run_dir} ({os_reason(err)})") from None
    try:
        staging.chmod(0o777 & ~process_umask())  # what mkdir gives; mkdtemp makes 0700
        lock_run_dir(staging)
        _write_marker(staging, kind)
        yield staging
        if in_place:
            lock_run_dir(run_dir)
            if run_kind(run_dir) is not None:
                raise RunDirBusyError(
                    f"{run_dir} became a run of another bnn-nas process meanwhile; run the "
                    "command again to continue it, or choose another --run-dir"
                )
            entries = sorted((p for p in staging.iterdir() if p.name != LOCK),
                             key=lambda p: (p.name == MARKER, p.name))  # fmt: skip
            for entry in entries:
                entry.replace(run_dir / entry.name)
            release_run_dir(staging)
            shutil.rmtree(staging, ignore_errors=True)
            return
        try:
            staging.rename(run_dir)  # replaces an empty directory, never a full one
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise RunDirBusyError(
                    f"{run_dir} was created by another bnn-nas process at the same time; "
                    "run the command again to continue that run, or choose another --run-dir"
                ) from None
            raise ConfigError(f"cannot create --run-dir {run_dir} ({os_reason(err)})") from None
    except OSError as err:
        release_run_dir(staging)
        shutil.rmtree(staging, ignore_errors=True)
        raise ConfigError(f"cannot create --run-dir {run_dir} ({os_reason(err)})") from None
    except BaseException:
        release_run_dir(staging)
        shutil.rmtree(staging, ignore_errors=True)
        raise


def run_directory_of(config_file: Path) -> Path | None:
    """The run directory a config file lies in, or None when it is a user's own file."""
    folder = Path(config_file).absolute().parent
    try:
        return folder if run_kind(folder) is not None else None
    except ConfigError:
        return folder  # a damaged run directory is still someone else's


def _plugin_key(spec: str) -> str:
    path = Path(spec).expanduser()
    if spec.endswith(".py") or "/" in spec or path.exists():
        return str(path.resolve())
    return spec


def run_plugins(
    config_file: Path | str | None,
    named: tuple[str, ...],
    passed: tuple[str, ...],
    *,
    trust: bool,
) -> tuple[str, ...]:
    """The plugins to import for a config: all it names, unless it lies in a run directory
    (someone else's code, possibly) and the user neither passed them nor trusts it."""
    if not named or config_file is None:
        return named
    run_dir = run_directory_of(Path(config_file))
    if run_dir is None:
        return named
    if trust:
        print(
            f"bnn-nas: importing plugins named in {config_file} (--trust-run-plugins): "
            + ", ".join(named),
            file=sys.stderr,
        )
        return named
    given = {_plugin_key(p) for p in passed}
    missing = [p for p in named if _plugin_key(p) not in given]
    if missing:
        # a long path keeps its end, so the line still names the file to read
        shown = ", ".join(p if len(p) <= 80 else "..." + p[-77:] for p in missing[:3])
        shown += " ..." if len(missing) > 3 else ""
        raise PluginError(
            f"{config_file} is in run directory {run_dir} and names plugins ({shown}); "
            "bnn-nas imports no code from a run directory unless asked: read them, then pass "
            "--plugin PATH for each, or --trust-run-plugins"
        )
    return ()  # every one was passed with --plugin and is loaded from there


def report_input(run_dir: Path | str) -> tuple[tuple[int, int, int] | None, int | None]:
    """(image shape HWC, class count) that a training run's ``report.json`` records, each
    None where the folder has no report or the report does not say (older runs)."""
    try:
        report = json.loads((Path(run_dir) / "report.json").read_text())
    except (OSError, ValueError):
        return None, None
    if not isinstance(report, dict):
        return None, None

    def positive(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    shape = report.get("image_shape")
    hwc = None
    if isinstance(shape, list) and len(shape) == 3 and all(positive(v) for v in shape):
        hwc = (shape[0], shape[1], shape[2])
    classes = report.get("num_classes")
    return hwc, (classes if positive(classes) else None)
