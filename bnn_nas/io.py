"""Small file helpers shared by every command that writes results."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import yaml


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` with what ``write`` writes, in one step and flushed to disk.

    The data goes to a temporary file beside ``path`` which is then renamed over it, so
    a crash or a reader sees the old file or the new one, never half of either.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, new_file_mode())  # mkstemp makes 0600; results are for others too
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def process_umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (0644 by default)."""
    return 0o666 & ~process_umask()


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (UTF-8)."""
    data = text.encode()
    write_atomic(path, lambda handle: handle.write(data))


def dump_yaml(data: Any) -> str:
    """YAML for people: keys in the given order, genotype text kept on one line."""
    return yaml.safe_dump(data, sort_keys=False, width=10**9, default_flow_style=None)


def write_csv_atomic(path: Path, fieldnames: Sequence[str], rows: Iterable[dict]) -> None:
    """A CSV with a header row, replaced atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


MAX_YAML_ALIASES = 100  # YAML anchors reused more than this: a config does not need it


class _LimitedLoader(yaml.SafeLoader):
    """The safe loader, refusing documents that reuse anchors more than
    :data:`MAX_YAML_ALIASES` times (an "alias bomb": a few lines that stand for billions of
    items, which would take all memory the moment anything walks them)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_YAML_ALIASES:
                mark = self.peek_event().start_mark
                raise yaml.YAMLError(
                    f"more than {MAX_YAML_ALIASES} aliases (*name) at line {mark.line + 1}; "
                    "write the values out"
                )
        return super().compose_node(parent, index)


def read_text_file(path: Path, what: str) -> str:
    """A text file's content as UTF-8; one-line errors for unreadable or binary files."""
    from bnn_nas.errors import ConfigError

    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.start}); save the {what} as UTF-8"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a {what} file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the {what} ({err.strerror})") from None


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with aliases capped (raises yaml.YAMLError past the cap); nesting
    deeper than Python's recursion limit also becomes a yaml.YAMLError."""
    try:
        loader = _LimitedLoader(text)  # what yaml.load does, with the safe, capped loader
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise yaml.YAMLError(f"a value cannot be read ({str(err)[:60]})") from None


def check_output_path(path: Path | str, option: str = "-o") -> Path:
    """``path`` can be written (its folder exists or can be made, and it is not a folder),
    or a one-line error now, before any work whose result it would hold."""
    from bnn_nas.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a directory; name a file")
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {path}: {parent} is a file, not a folder; choose another path")
    return path
