"""Native processes: identity (pid + start time), staged stops, and tagged-process sweeps.

psutil is imported by the functions that use it (~10 ms): a command that never looks at a
process (`--dry-run`, `ls`, a reconcile of compose groups) does not pay for it."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

# Every process devup starts carries these in its environment, inherited by its children,
# so processes a killed run left behind can be found from /proc alone.
TAG_SESSION = "DEVUP_SESSION"
TAG_REPO_ID = "DEVUP_REPO_ID"
TAG_UNIT = "DEVUP_UNIT"  # "service:web" or "hook:post_up"


def start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_alive(pid: int, started: float) -> bool:
    """True only for the very process recorded: a recycled pid has another start time."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop(pid: int, started: float, *, timeout: float) -> None:
    """SIGTERM the process group, SIGKILL after `timeout`; a process already gone is success."""
    if not is_alive(pid, started):
        return
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return  # it exited between the check and now: stopped, as asked
    members = _group(pgid)
    _signal_group(pgid, signal.SIGTERM)
    alive = _wait_exited(members, timeout=timeout)
    if alive:
        _signal_group(pgid, signal.SIGKILL)
        _wait_exited(alive, timeout=5)


def tagged(*, repo_id: str, session: str, unit: str | None = None) -> list[psutil.Process]:
    """Live processes whose environment carries this session's (and unit's) tags."""
    import psutil

    found = []
    for proc in tagged_all(repo_id=repo_id):
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            if env.get(TAG_SESSION) == session and (unit is None or env.get(TAG_UNIT) == unit):
                found.append(proc)
    return found


def kill_tagged(*, repo_id: str, session: str, unit: str | None = None, timeout: float = 5) -> None:
    """Stop every tagged process: SIGTERM, then SIGKILL what is left after `timeout`."""
    _terminate(tagged(repo_id=repo_id, session=session, unit=unit), timeout=timeout)


def _terminate(procs: list[psutil.Process], *, timeout: float) -> None:
    """SIGTERM each process, SIGKILL what is still running after `timeout`."""
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    alive = _wait_exited(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _wait_exited(alive, timeout=5)


def _wait_exited(procs: list[psutil.Process], *, timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; returns those still running after `timeout`.

    A zombie counts as exited: psutil.wait_procs waits for a non-child to be reaped, and an
    init that reaps late (or never, as in many containers) made every stop last seconds.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        alive = [p for p in procs if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _running(proc: psutil.Process) -> bool:
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group(pgid: int) -> list[psutil.Process]:
    import psutil

    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _ourselves() -> set[int]:
    """This process and its ancestors: `devup down` run from a shell that inherited the
    session's tags (a hook, `devup exec`, a service's terminal) must not kill itself or that
    shell halfway through."""
    import psutil

    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}


def tagged_all(*, repo_id: str) -> list[psutil.Process]:
    """Live processes carrying this repository's tag, whatever their session (never devup
    itself nor the processes it runs under)."""
    import psutil

    found = []
    spared = _ourselves()
    for proc in psutil.process_iter():
        if proc.pid in spared:
            continue
        try:
            if proc.environ().get(TAG_REPO_ID) == repo_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def kill_pid(pid: int, timeout: float = 5, *, started: float | None = None) -> None:
    """SIGTERM one process, SIGKILL after `timeout`; already gone is success. With `started`
    (its start time when it was found), a process that took over a recycled pid is not it:
    the one found is gone, and the other is left alone."""
    import psutil

    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    if started is not None and abs(proc.create_time() - started) >= 0.01:
        return
    # `proc` keeps its own start time: psutil refuses to signal a pid recycled after this.
    _terminate([proc], timeout=timeout)


def strays(worktree: str) -> list[psutil.Process]:
    """Daemons left in a session's worktree that shed its tags: working folder inside it, adopted
    by init (or a subreaper: the parent is not in the worktree's tree), no terminal. A hook's
    `setsid env -i cmd &` ends up so; a person's shell (a terminal) or editor (a parent) does not."""
    import psutil

    root = os.path.realpath(worktree)
    found = []
    mine = _ourselves()
    for proc in psutil.process_iter(["pid", "ppid", "cwd", "terminal"]):
        info = proc.info
        cwd = info.get("cwd")
        if proc.pid in mine or not cwd or info.get("terminal"):
            continue
        if cwd != root and not cwd.startswith(root + os.sep):
            continue
        with contextlib.suppress(psutil.Error):
            parent = proc.parent()
            if parent is None or parent.pid == 1:
                found.append(proc)
                continue
            there = parent.cwd()  # pid 1's may not be readable: asked only of another parent
            if there != root and not there.startswith(root + os.sep):
                found.append(proc)
    return found


def kill_strays(worktree: str, *, timeout: float = 5) -> None:
    _terminate(strays(worktree), timeout=timeout)


def port_owner(port: int) -> tuple[int, str] | None:
    """(pid, program) of the process listening on TCP `port` here; None when nothing (or nothing
    this user may see) listens."""
    import psutil

    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return conn.pid, psutil.Process(conn.pid).name()
                return conn.pid, "?"
    return None


def owns_port(pid: int, owner: int) -> bool:
    """The listener `owner` is process `pid` or of its process group (a service's own child)."""
    if owner == pid:
        return True
    with contextlib.suppress(OSError):
        return os.getpgid(owner) == os.getpgid(pid)
    return False
