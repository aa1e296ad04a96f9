"""`bnn-nas search` under a supervisor (Linux): a candidate that kills the search process
is counted, failed at its second such death, and the search goes on by itself.

The ``local`` and ``streams`` executors train candidates inside the search process, so a
candidate that segfaults or meets the OOM killer takes the search down, and a resume alone
cannot tell that death from the user's own kill (``TrialStore.reclaim``). So the command
forks before it imports torch or touches a device: the child runs the search, the parent
only waits. The parent forwards SIGINT and SIGTERM (the user's stop) to the child, and the
child dies with the parent (PR_SET_PDEATHSIG) when that is killed: every kill of the
user's ends as before, and nothing is counted for it. A child killed by a signal nobody
sent through the parent and that a candidate raises (:data:`CANDIDATE_SIGNALS`: SIGKILL
from the OOM killer, SIGSEGV, SIGBUS, SIGABRT, ...) while trials trained in it is their
death: the parent counts it for them (``TrialStore.count_death``), fails the ones at the
limit (``executor.max_process_deaths``, default :data:`DEFAULT_LIMIT`), says so in one
line (stderr and search.log) and starts the search again; after more than
2 x limit deaths in a row with no trial done between them it stops, exit 128 + signal.

The child inherits the parent's stdin, stdout and stderr (a terminal stays a terminal for
the progress bar). Where that or a safe fork cannot be had (not Linux, streams that are
not OS files, as click's test runner gives, more than one thread, CUDA already started),
the search runs in this process, as it always did.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import signal
import sqlite3
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bnn_nas.search.trials import TrialRecord

# Signals that end a process from within (a fault in a kernel, an abort) or that the
# kernel's OOM killer sends; any other (SIGHUP, SIGQUIT, SIGPIPE, ...) comes from outside.
# By name: elsewhere some are missing, and this module is imported everywhere (report)
CANDIDATE_SIGNALS = frozenset(getattr(signal, name) for name in (
    "SIGKILL", "SIGSEGV", "SIGBUS", "SIGABRT", "SIGFPE", "SIGILL", "SIGSYS")
    if hasattr(signal, name))  # fmt: skip
# A trial fails at its second death: one death may be bad luck that is not its own (the OOM
# killer choosing this process while another job grew, a driver fault, a trial beside it
# in the streams executor); training is seeded, so the same candidate dying again is it
DEFAULT_LIMIT = 2
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_SI_KERNEL = 0x80  # siginfo si_code of a signal the kernel sent: a terminal's Ctrl-C
_report_fd: int | None = None  # in a supervised child: the pipe to its parent


@dataclass(frozen=True)
class Report:
    """What a child tells its parent once it holds its run directory."""

    run_dir: str
    resume: str  # the command line that continues the search
    max_process_deaths: int | None  # executor.max_process_deaths (None: unset)

    @property
    def limit(self) -> int:
        return DEFAULT_LIMIT if self.max_process_deaths is None else self.max_process_deaths


def supported() -> bool:
    """Whether `bnn-nas search` can run its search in a supervised child: Linux (prctl),
    stdio that are OS files (the child inherits them), one thread (a fork copies only the
    caller's) and no CUDA started (a forked child cannot use it)."""
    if sys.platform != "linux" or threading.active_count() != 1:
        return False
    try:
        for stream in (sys.stdout, sys.stderr, *([sys.stdin] if sys.stdin else [])):
            stream.fileno()  # (no stdin at all is fine: nothing to inherit)
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return False
    torch = sys.modules.get("torch")
    return torch is None or not torch.cuda.is_initialized()


def report(run_dir: Path, resume: str, max_process_deaths: int | None) -> None:
    """In a supervised child (else nothing): tell the parent the run directory it locked,
    and name the parent in the lock (the process to signal to stop the search)."""
    if _report_fd is None:
        return
    from bnn_nas.rundir import name_lock_holder

    name_lock_holder(run_dir, os.getppid())
    text = json.dumps({"run_dir": str(run_dir), "resume": resume,
                       "max_process_deaths": max_process_deaths})  # fmt: skip
    with contextlib.suppress(OSError):
        os.write(_report_fd, (text + "\n").encode())


def run_supervised(run: Callable[[], int]) -> int:
    """Run ``run`` (the search command, returning its exit code) in a child process, again
    after each candidate's death; returns the exit code: the child's, 128 + signal for a
    child killed by one. The child never returns from here."""
    watched = {s for s in (signal.SIGINT, signal.SIGTERM)
               if signal.getsignal(s) is not signal.SIG_IGN}  # fmt: skip
    # an ignored SIGCHLD (inherited through exec) makes the kernel reap the child unseen and
    # send no SIGCHLD: waited for here as by default; the child gets it back as it was
    chld = signal.getsignal(signal.SIGCHLD)
    if chld is signal.SIG_IGN:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched | {signal.SIGCHLD})
    in_a_row, done_before = 0, -1
    locked: list[Path] = []  # the run directory, once this process holds its lock
    try:
        while True:
            pid, reader = _start(run, mask, chld)
            status, stopped = _wait(pid, watched)
            facts = _read_report(reader)
            if not os.WIFSIGNALED(status):
                return os.waitstatus_to_exitcode(status)
            sig = signal.Signals(os.WTERMSIG(status))
            code = 128 + sig
            said = f"the search process was killed by {sig.name}"
            if stopped or sig not in CANDIDATE_SIGNALS or facts is None:
                _say(facts, f"{said}; continue with: {facts.resume}" if facts else said)
                return code
            counted, done = _count(facts, sig.name, locked)
            if counted is None:
                return code
            if not counted:
                _say(facts, f"{said} with no trial training in it; continue with: "
                     f"{facts.resume}")  # fmt: skip
                return code
            in_a_row = in_a_row + 1 if done == done_before else 1
            done_before = done
            line = f"{said} while training {_which(counted, facts.limit)}"
            if in_a_row > 2 * facts.limit:
                _say(facts, f"{line}; {in_a_row} deaths in a row with no trial done: not "
                     f"starting it again; continue with: {facts.resume}")  # fmt: skip
                return code
            if signal.sigpending() & watched:  # the user's stop came meanwhile: obey it
                _say(facts, f"{line}; stopped before the search started again; continue "
                     f"with: {facts.resume}")  # fmt: skip
                return code
            _say(facts, f"{line}; starting the search again")
    finally:
        if locked:
            from bnn_nas.rundir import release_run_dir

            release_run_dir(locked[0])
        while signal.sigtimedwait(watched, 0) is not None:
            pass  # a stop that came after the child ended: this process ends anyway
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if chld is signal.SIG_IGN:
            signal.signal(signal.SIGCHLD, chld)


def _start(run: Callable[[], int], mask: set[signal.Signals], chld: object) -> tuple[int, int]:
    """Fork a child that runs ``run`` and exits with its code; returns its pid and the
    reading end of its report pipe."""
    parent = os.getpid()
    reader, writer = os.pipe()
    for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
        stream.flush()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        _child(run, writer, mask, parent, chld)
    os.close(writer)
    os.set_blocking(reader, False)  # read once the child is gone: never wait on a grandchild
    return pid, reader


def _child(run: Callable[[], int], writer: int, mask: set[signal.Signals], parent: int,
           chld: object) -> None:  # fmt: skip
    """The child's whole life: die with the parent, run, exit (never return to the caller)."""
    global _report_fd
    code = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent was killed before the prctl
            os._exit(128 + signal.SIGKILL)
        if chld is signal.SIG_IGN:
            signal.signal(signal.SIGCHLD, chld)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _report_fd = writer
        code = run()
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
        if err.code is not None and not isinstance(err.code, int):
            print(err.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        # as the program's end: what the search registered runs (ray.init's ray.shutdown,
        # without which Ray's agents outlived it); os._exit alone skips atexit
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _wait(pid: int, watched: set[signal.Signals]) -> tuple[int, bool]:
    """Wait for the child, forwarding SIGINT/SIGTERM sent to this process; returns its
    wait status and whether such a stop came. A terminal's Ctrl-C already reached the
    child (one process group): it is not sent twice."""
    stopped = False
    while True:
        info = signal.sigwaitinfo(watched | {signal.SIGCHLD})
        if info.si_signo == signal.SIGCHLD:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return status, stopped
            continue
        stopped = True
        if info.si_code != _SI_KERNEL:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, info.si_signo)


def _read_report(reader: int) -> Report | None:
    """The child's report, if it got that far."""
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(reader, 65536):
            chunks.append(chunk)
    os.close(reader)
    lines = b"".join(chunks).decode(errors="replace").splitlines()
    if not lines:
        return None
    try:
        return Report(**json.loads(lines[-1]))
    except (ValueError, TypeError):
        return None


def _count(facts: Report, cause: str, locked: list[Path]) -> tuple[list[TrialRecord] | None, int]:
    """Count the death in the store (its lock held from now on, ``locked``, and by the next
    child: it inherits the lock); returns the trials counted, or None where the store could
    not be had, and how many trials are done."""
    from bnn_nas.errors import BnnNasError
    from bnn_nas.rundir import lock_run_dir
    from bnn_nas.search.store import STORE_FILE, SQLiteStore
    from bnn_nas.search.trials import TrialStatus

    run_dir = Path(facts.run_dir)
    try:
        lock_run_dir(run_dir)
        locked[:] = [run_dir]
        store = SQLiteStore(run_dir / STORE_FILE)
    except (BnnNasError, sqlite3.Error) as err:
        _say(None, f"the search process was killed by {cause}; its death could not be "
             f"counted ({str(err).splitlines()[0]}); continue with: {facts.resume}")
        return None, 0
    try:
        counted = store.count_death(cause, limit=facts.limit)
        done = sum(r.status is TrialStatus.DONE for r in store.trials())
    finally:
        store.close()
    return counted, done


def _which(counted: list[TrialRecord], limit: int) -> str:
    """``trial 3 (death 1 of 2: it runs again)``, one part per trial counted."""
    parts = []
    for record in counted:
        fate = "recorded as failed" if record.status.value == "failed" else "it runs again"
        parts.append(f"trial {record.id} (death {record.process_deaths} of {limit}: {fate})")
    return ", ".join(parts)


def _say(facts: Report | None, line: str) -> None:
    """One line on stderr and in RUN/search.log."""
    text = f"bnn-nas: {line}"
    # not after a progress bar the child left drawn: over it on a terminal, else below it
    prefix = "\r\x1b[2K" if sys.stderr.isatty() else "\n"
    print(prefix + text, file=sys.stderr, flush=True)
    if facts is not None:
        from bnn_nas.cli.terminal_log import SEARCH_LOG

        log_path = Path(facts.run_dir) / SEARCH_LOG
        with contextlib.suppress(OSError), log_path.open("a", encoding="utf-8") as log:
            log.write(text + "\n")
