"""`bnn-nas search` under its supervisor (Linux): a candidate that kills the search
process (a signal nobody sent) is counted, failed at the limit, and the search goes on;
the user's stop (SIGINT, SIGTERM to the supervisor, SIGKILL of it) counts nothing.

The fast part forks this test process: the child runs a stand-in search on a real store
(each pending trial started in process, as the local executor does) that kills itself
where told; the slow part runs real ``bnn-nas search`` processes.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bnn_nas.cli import _Main, main
from bnn_nas.search import supervisor
from bnn_nas.search.store import SQLiteStore
from bnn_nas.search.trials import Proposal, TrialStatus
from bnn_nas.space.search_space import load_search_space
from tests.test_faults import CONFIG, fake_result, rows, search_cmd, wait_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the supervisor is Linux's")

TRIALS = 4
RESUME = "bnn-nas search --config c.yaml --run-dir run"


def stand_in(run: Path, kills: dict[int, signal.Signals] | None = None,
             before: Callable[[], None] | None = None, limit: int | None = None,
             during: Callable[[int], None] | None = None) -> Callable[[], int]:  # fmt: skip
    """A search's life in a supervised child, on the store in ``run``: reclaim, report,
    run each pending trial in process; ``kills[id]``: that trial's candidate kills the
    process with that signal; ``before``/``during(id)``: what else happens, before the
    report, while a trial trains. Each start is logged in ``run/starts``."""
    kills = kills or {}

    def search() -> int:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a SIGSEGV leaves no core file
        faulthandler.disable()  # nor pytest's traceback of it
        with (run / "starts").open("a") as log:
            log.write("start\n")
        if before is not None:
            before()
        store = SQLiteStore(run / "trials.sqlite")
        if not store.trials():
            space = load_search_space({"steps": 1, "ops": ["skip_connect", "max_pool_3x3"]})
            rng = random.Random(0)
            store.add([Proposal(space.random_sample(rng), {"kind": "random"})
                       for _ in range(TRIALS)])  # fmt: skip
        store.reclaim()
        supervisor.report(run, RESUME, limit)
        try:
            for record in store.trials():
                if record.status is not TrialStatus.PENDING:
                    continue
                store.start(record.id, in_process=True)
                if during is not None:
                    during(record.id)
                if record.id in kills:
                    os.kill(os.getpid(), kills[record.id])
                store.finish(record.id, fake_result(record))
        except KeyboardInterrupt:
            store.release(record.id, count_attempt=False)
            return 130
        finally:
            store.close()
        return 0

    return search


def states(run: Path) -> list[tuple]:
    store = SQLiteStore(run / "trials.sqlite", read_only=True)
    try:
        return [(r.id, r.status.value, r.attempts, r.process_deaths) for r in store.trials()]
    finally:
        store.close()


def starts(run: Path) -> int:
    return len((run / "starts").read_text().splitlines())


def said(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("bnn-nas:")]


def died(n: int, limit: int, cause: str) -> str:
    return (f"the search process died while training this trial {n} time{'s' * (n > 1)}, "
            f"the last killed by {cause}; recorded as failed at {limit} (executor."
            "max_process_deaths)")  # fmt: skip


@pytest.mark.parametrize(("limit", "deaths"), [(None, 2), (1, 1), (3, 3)])
def test_a_candidate_that_segfaults_is_failed_at_the_limit_and_the_search_goes_on(
        tmp_path, capsys, limit, deaths):  # fmt: skip
    """Trial 2 segfaults the search each time: each death is counted and said, the search
    starts again, and at the limit (executor.max_process_deaths, unset: 2) trial 2 is
    failed and the other trials finish; no death used an attempt."""
    code = supervisor.run_supervised(stand_in(tmp_path, {2: signal.SIGSEGV}, limit=limit))
    assert code == 0
    assert states(tmp_path) == [(1, "done", 1, 0), (2, "failed", 1, deaths), (3, "done", 1, 0),
                                (4, "done", 1, 0)]  # fmt: skip
    assert starts(tmp_path) == deaths + 1
    lines = [f"bnn-nas: the search process was killed by SIGSEGV while training trial 2 "
             f"(death {n} of {deaths}: {'recorded as failed' if n == deaths else 'it runs again'}"
             "); starting the search again" for n in range(1, deaths + 1)]  # fmt: skip
    assert said(capsys) == lines
    assert (tmp_path / "search.log").read_text().splitlines() == lines
    store = SQLiteStore(tmp_path / "trials.sqlite", read_only=True)
    assert store.get(2).error == died(deaths, deaths, "SIGSEGV")
    store.close()
    assert not supervisor._report_fd  # this process is no child


def test_a_death_with_no_trial_training_is_not_a_candidates(tmp_path, capsys):
    """The search dies between trials (no candidate was training): nothing to count or to
    fail, so it is not started again: exit 128 + signal and how to continue."""

    def between(trial_id: int) -> None:
        if trial_id == 3:
            store = SQLiteStore(tmp_path / "trials.sqlite")
            store.release(3, count_attempt=False)
            os.kill(os.getpid(), signal.SIGBUS)

    code = supervisor.run_supervised(stand_in(tmp_path, during=between))
    assert code == 128 + signal.SIGBUS and starts(tmp_path) == 1
    assert said(capsys) == [f"bnn-nas: the search process was killed by SIGBUS with no trial "
                            f"training in it; continue with: {RESUME}"]  # fmt: skip
    assert states(tmp_path) == [(1, "done", 1, 0), (2, "done", 1, 0), (3, "pending", 0, 0),
                                (4, "pending", 0, 0)]  # fmt: skip


def test_a_death_before_the_run_directory_is_ready(tmp_path, capsys):
    code = supervisor.run_supervised(
        stand_in(tmp_path, before=lambda: os.kill(os.getpid(), signal.SIGABRT)))
    assert code == 128 + signal.SIGABRT and starts(tmp_path) == 1
    assert said(capsys) == ["bnn-nas: the search process was killed by SIGABRT"]
    assert not (tmp_path / "trials.sqlite").exists()


def test_deaths_in_a_row_with_no_trial_done_stop(tmp_path, capsys):
    """Every candidate kills the search (the machine's fault, not theirs): the supervisor
    stops after more than 2 x limit deaths in a row with no trial done, each counted."""
    code = supervisor.run_supervised(
        stand_in(tmp_path, dict.fromkeys(range(1, TRIALS + 1), signal.SIGKILL)))
    assert code == 128 + signal.SIGKILL and starts(tmp_path) == 5
    assert states(tmp_path) == [(1, "failed", 1, 2), (2, "failed", 1, 2), (3, "pending", 0, 1),
                                (4, "pending", 0, 0)]  # fmt: skip
    lines = said(capsys)
    assert len(lines) == 5 and lines[-1] == (
        "bnn-nas: the search process was killed by SIGKILL while training trial 3 (death 1 of "
        f"2: it runs again); 5 deaths in a row with no trial done: not starting it again; "
        f"continue with: {RESUME}")


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt here, as in a shell's foreground job (a background
    one starts with it ignored), for the child forked from this process too."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_sent_to_the_supervisor_reaches_the_search_and_counts_nothing(
        tmp_path, capsys, sigint_raises, stop):  # fmt: skip
    """SIGINT or SIGTERM sent to the supervisor (the process the user started) while trial
    2 trains goes on to the search: SIGINT ends it as Ctrl-C does (its trial back to
    pending, exit 130), SIGTERM kills it (exit 143); either way nothing is counted and the
    search is not started again."""

    def stopped(trial_id: int) -> None:
        if trial_id == 2:
            os.kill(os.getppid(), stop)
            time.sleep(30)  # the stop comes back from the supervisor first

    code = supervisor.run_supervised(stand_in(tmp_path, during=stopped))
    assert starts(tmp_path) == 1
    if stop is signal.SIGINT:
        assert code == 130 and said(capsys) == []
        assert states(tmp_path)[1] == (2, "pending", 0, 0)
    else:
        assert code == 128 + signal.SIGTERM
        assert said(capsys) == [f"bnn-nas: the search process was killed by SIGTERM; "
                                f"continue with: {RESUME}"]  # fmt: skip
        assert states(tmp_path)[1] == (2, "running", 1, 0)  # a resume reruns it


def test_a_death_after_the_users_stop_is_not_a_candidates(tmp_path, capsys, sigint_raises):
    """Ctrl-C, then the search dies by SIGKILL before it could stop: the user's doing,
    nothing counted, not started again."""

    def stopped(trial_id: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # it never stops itself
        os.kill(os.getppid(), signal.SIGINT)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)

    code = supervisor.run_supervised(stand_in(tmp_path, during=stopped))
    assert code == 128 + signal.SIGKILL and starts(tmp_path) == 1
    assert said(capsys) == [f"bnn-nas: the search process was killed by SIGKILL; continue "
                            f"with: {RESUME}"]  # fmt: skip
    assert states(tmp_path)[0] == (1, "running", 1, 0)


def real_stdio(monkeypatch, tmp_path: Path) -> None:
    """stdin, stdout and stderr that are OS files (pytest's are not)."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        path = tmp_path / name
        path.touch()
        stream = path.open(mode)
        monkeypatch.setattr(sys, name, stream)


def one_thread(monkeypatch) -> None:
    """The thread count of a fresh `bnn-nas` process: a test process keeps threads of
    earlier tests (tqdm's monitor, say) that a command line never has at the fork."""
    monkeypatch.setattr(threading, "active_count", lambda: 1)


def test_supervised_only_where_a_fork_is_safe(monkeypatch, tmp_path):
    real_stdio(monkeypatch, tmp_path)
    with monkeypatch.context() as patch:
        one_thread(patch)
        assert supervisor.supported()
    with monkeypatch.context() as patch:
        one_thread(patch)
        patch.setattr(sys, "platform", "darwin")
        assert not supervisor.supported()
    with monkeypatch.context() as patch:  # click's test runner: streams of no OS file
        one_thread(patch)
        patch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO()))
        assert not supervisor.supported()
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert not supervisor.supported()  # a fork would copy this thread only
    finally:
        release.set()
        thread.join()


def test_an_ignored_sigchld_inherited_from_the_launcher_does_not_hang_it():
    """SIGCHLD set to SIG_IGN survives exec (some launchers leave it so): the kernel then
    reaps the child itself and sends no SIGCHLD, and the supervisor waited forever. It
    waits as usual, and the child (the search) keeps the disposition it was given."""
    code = (
        "import signal, sys\n"
        "signal.signal(signal.SIGCHLD, signal.SIG_IGN)\n"
        "from bnn_nas.search import supervisor\n"
        "def run():\n"
        "    return 3 if signal.getsignal(signal.SIGCHLD) is signal.SIG_IGN else 4\n"
        "sys.exit(supervisor.run_supervised(run))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=30, capture_output=True)
    assert done.returncode == 3, done.stderr


def test_the_search_process_ends_as_a_program_does_its_exit_handlers_run(tmp_path):
    """What the search registered with atexit runs as it ends (ray.init's ray.shutdown:
    without it a supervised search with executor.type=ray left Ray's dashboard and
    runtime-env agents running, adopted by init), and only there: not in the supervisor."""
    code = (
        "import atexit, os, sys\n"
        "from pathlib import Path\n"
        "from bnn_nas.search import supervisor\n"
        f"log = Path({str(tmp_path / 'ran')!r})\n"
        "def run():\n"
        "    child = os.getpid()\n"
        "    atexit.register(lambda: log.open('a').write(f'{os.getpid() == child}\\n'))\n"
        "    return 3\n"
        "sys.exit(supervisor.run_supervised(run))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], timeout=30, capture_output=True)
    assert done.returncode == 3, done.stderr
    assert (tmp_path / "ran").read_text() == "True\n"


def test_the_module_imports_where_signals_are_few(monkeypatch):
    """`bnn-nas search` imports it on every platform (its report is a no-op there)."""
    import importlib

    for name in ("SIGKILL", "SIGBUS", "SIGSYS", "SIGCHLD", "SIGTERM"):  # not on Windows
        monkeypatch.delattr(signal, name)
    try:
        assert signal.SIGSEGV in importlib.reload(supervisor).CANDIDATE_SIGNALS
        supervisor.report(Path("run"), RESUME, None)  # no child: nothing
    finally:
        monkeypatch.undo()
        importlib.reload(supervisor)


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_only_search_on_linux_runs_under_the_supervisor(monkeypatch, tmp_path, platform):
    """`bnn-nas search` on Linux runs in a supervised child (the command's own code, its
    exit code passed on); elsewhere, and every other command, in this process as before."""
    real_stdio(monkeypatch, tmp_path)
    one_thread(monkeypatch)
    monkeypatch.setattr(sys, "platform", platform)
    calls = []
    monkeypatch.setattr(_Main, "_main", lambda self, args, *rest, **kw: calls.append(
        (args, rest)) or 5)  # fmt: skip

    def supervised(run):
        calls.append("supervised")
        return run() + 1

    monkeypatch.setattr(supervisor, "run_supervised", supervised)
    got = main.main(["--debug", "search", "--config", "c.yaml"], standalone_mode=False)
    args = ["--debug", "search", "--config", "c.yaml"]
    if platform == "linux":  # the child runs the command as a program would (standalone)
        assert got == 6 and calls == ["supervised", (args, (None, None, True))]
    else:
        assert got == 5 and calls == [(args, (None, None, False))]
    calls.clear()
    assert main.main(["status", "run"], standalone_mode=False) == 5
    assert calls == [(["status", "run"], (None, None, False))]


# --- real `bnn-nas search` processes (slow) --------------------------------------------


def children(pid: int) -> list[int]:
    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def gone(pid: int) -> bool:
    """The process has ended (a zombie not yet reaped by whoever adopted it counts)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("supervised")
    config = tmp / "c.yaml"
    config.write_text(CONFIG)
    done = subprocess.run(search_cmd(config, tmp / "straight"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return config, rows(tmp / "straight")


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_the_users_kill_of_bnn_nas_search_counts_nothing(tmp_path, straight, stop):
    """SIGKILL or SIGINT of `bnn-nas search` (the supervisor) while a trial trains: the
    search process goes with it (SIGKILL: by PR_SET_PDEATHSIG), nothing is counted as a
    candidate's death, and the resumed search ends as the uninterrupted one."""
    config, expected = straight
    run = tmp_path / "run"
    proc = subprocess.Popen(search_cmd(config, run), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert wait_for(lambda: any(r[2] == "running" for r in rows(run)))
        (child,) = children(proc.pid)
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == (-9 if stop is signal.SIGKILL else 130), err
    assert wait_for(lambda: gone(child), timeout=10)
    db = sqlite3.connect(run / "trials.sqlite")
    counted = db.execute("SELECT sum(process_deaths), sum(status = 'failed') FROM trials")
    assert counted.fetchone() == (0, 0)
    db.close()
    assert "killed by" not in err
    resumed = subprocess.run([*search_cmd(config, run), "--resume"], capture_output=True,
                             text=True)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert [r[:4] for r in rows(run)] == [r[:4] for r in expected]
    assert all(r[4] == 1 for r in rows(run))


@pytest.mark.slow
def test_ctrl_c_at_a_terminal_ends_the_supervised_search_once(tmp_path, straight):
    """`bnn-nas search` on a terminal (a pty), Ctrl-C typed while a trial trains: the
    terminal sends SIGINT to both processes, the supervisor does not send it again, and
    the search ends as Ctrl-C always did: one line, exit 130, no traceback; the progress
    bar was drawn; the lock named the process the terminal started."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    config, _ = straight
    run = tmp_path / "run"
    pid, fd = pty.fork()
    if pid == 0:  # the terminal's job: SIGINT as a foreground job has it
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        command = search_cmd(config, run)
        os.execv(command[0], command)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    out = b""
    try:
        assert wait_for(lambda: any(r[2] == "running" for r in rows(run)))
        assert (run / ".lock").read_text() == f"{pid}\n"
        os.write(fd, b"\x03")
        deadline = time.time() + 120
        while time.time() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out += os.read(fd, 65536)
                except OSError:  # the terminal's other end is gone: the search ended
                    break
        _, status = os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.close(fd)
    text = out.decode(errors="replace").replace("\r", "\n")
    assert os.waitstatus_to_exitcode(status) == 130, text
    lines = [line for line in text.splitlines() if line.startswith("bnn-nas:")]
    assert len(lines) == 1 and lines[0].startswith("bnn-nas: interrupted; trials in flight"), text
    assert "Traceback" not in text and "killed by" not in text
    assert "%|" in text  # the progress bar, drawn on the terminal the search inherited
    assert not any(r[2] == "running" for r in rows(run))
