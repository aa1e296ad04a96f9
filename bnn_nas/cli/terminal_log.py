"""A command's terminal output, copied into a log file of its run directory (search.log).

While a :class:`TerminalLog` is entered, what the command writes to stdout and stderr
(click's lines, the progress bar, warnings) still goes to the terminal, and each line
also goes to the log as the terminal ends up showing it: a line redrawn with ``\\r`` (a
progress bar's ticks) lands once, as it stood when it ended, and ANSI control sequences
are dropped. An error that ends the command is written too: a user mistake as its
one-line message, anything else with its traceback (the terminal shows the traceback only
with ``--debug``). A resumed command appends, after a line naming the session.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from bnn_nas.errors import BnnNasError

_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # cursor moves, colours, erase-line


class _Tee:
    """A text stream that writes through to ``stream`` and hands complete lines to
    ``sink``; every other attribute is the stream's (isatty, encoding, fileno, ...).

    The line being written is kept as a terminal shows it (its text and the cursor's
    column: ``\r`` moves the cursor back, later text overwrites), so a progress bar
    redrawn for hours holds one line's worth, not every redraw."""

    def __init__(self, stream: TextIO, sink: TerminalLog) -> None:
        self._stream, self._sink = stream, sink
        self._text, self._col = "", 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # click probes streams with b"": a text stream refuses
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        written = self._stream.write(text)
        with self._sink.lock:
            *complete, rest = _CONTROL.sub("", text).split("\n")
            for part in complete:
                self._put(part)
                self._sink.line(self._text)
                self._text, self._col = "", 0
            self._put(rest)
        return written

    def _put(self, text: str) -> None:
        for i, part in enumerate(text.split("\r")):
            if i:
                self._col = 0
            self._text = self._text[: self._col] + part + self._text[self._col + len(part) :]
            self._col += len(part)

    def flush(self) -> None:
        self._stream.flush()

    def close_line(self) -> None:
        """At the end: a line left without its newline is logged as it stands."""
        with self._sink.lock:
            self._sink.line(self._text)
            self._text, self._col = "", 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


SEARCH_LOG = "search.log"


def search_log(run_dir: Path, title: str) -> TerminalLog:
    """RUN/search.log for a search (`bnn-nas search` and ``bnn_nas.run_search`` alike),
    entered once its run directory exists; ``title`` names the command or call."""
    return TerminalLog(Path(run_dir) / SEARCH_LOG, title)


class TerminalLog:
    """Copies stdout and stderr into ``path`` (appended) while entered."""

    def __init__(self, path: Path, title: str) -> None:
        self.path, self.title = Path(path), title
        self.lock = threading.Lock()
        self._file: TextIO | None = None
        self._tees: list[_Tee] = []
        self._saved: tuple[TextIO, TextIO] | None = None

    def line(self, text: str) -> None:
        """One terminal line, as it was shown, into the log (blank ones are left out)."""
        shown = text.rstrip()
        if self._file is not None and shown:
            self._file.write(shown + "\n")
            self._file.flush()  # `tail -f search.log` follows the search

    def __enter__(self) -> TerminalLog:
        self._file = self.path.open("a", encoding="utf-8")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self._file.write(f"=== {stamp} {self.title}\n")
        self._file.flush()
        self._saved = (sys.stdout, sys.stderr)
        self._tees = [_Tee(sys.stdout, self), _Tee(sys.stderr, self)]
        sys.stdout, sys.stderr = self._tees  # type: ignore[assignment]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        for tee in self._tees:
            tee.close_line()
        assert self._saved is not None and self._file is not None
        sys.stdout, sys.stderr = self._saved
        if err is not None and not isinstance(err, SystemExit | KeyboardInterrupt):
            if isinstance(err, BnnNasError):  # what the terminal will show, as one line
                self._file.write(f"bnn-nas: error: {err.line()}\n")
            else:  # the terminal shows one line (the traceback with --debug); keep it here
                self._file.write("bnn-nas: error: unexpected, traceback:\n")
                self._file.write("".join(traceback.format_exception(kind, err, tb)))
        self._file.close()
        self._file = None
