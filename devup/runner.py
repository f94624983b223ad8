"""The one door to subprocesses: run-and-wait with a result, or spawn a detached process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devup.errors import CommandFailed

_TAIL_LINES = 20
_active: set[subprocess.Popen[bytes]] = set()
_active_lock = threading.Lock()
# Set once devup is interrupted: waits that run no command (readiness polls) stop early.
_stopping = threading.Event()


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int | None  # None: killed after its timeout
    output: str  # stdout and stderr interleaved, as a person would have seen them
    errors: str = ""  # stderr, when asked to keep it apart (merge_stderr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = _TAIL_LINES) -> str:
        return "\n".join(deque(self.output.splitlines(), maxlen=lines))

    def raise_for_status(self, *, what: str = "command", shown: str | None = None) -> Result:
        if not self.ok:
            raise CommandFailed(
                command=shown or " ".join(self.args),
                returncode=self.returncode,
                output_tail=self.tail(),
                what=what,
            )
        return self


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = False,
    what: str = "command",
    shown: str | None = None,
    stdin: str | None = None,
    merge_stderr: bool = True,
) -> Result:
    """Run to completion in a new session (so a terminal's Ctrl-C reaches only devup).

    With `merge_stderr=False`, `output` is stdout alone (for parsing) and `errors` is stderr.
    """
    try:
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        result = Result(tuple(args), 127, f"cannot run {args[0]}: {exc.strerror}")
        return result.raise_for_status(what=what, shown=shown) if check else result
    with _active_lock:
        _active.add(proc)
    try:
        out, err = proc.communicate(stdin.encode() if stdin is not None else None, timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    finally:
        with _active_lock:
            _active.discard(proc)
    result = Result(tuple(args), code, out.decode(errors="replace"), (err or b"").decode(errors="replace"))
    return result.raise_for_status(what=what, shown=shown) if check else result


def spawn(args: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path) -> int:
    """Start a process that outlives devup, in its own process group, output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # The child is re-parented when devup exits; until then a thread reaps it so a
    # service that dies early does not linger as a zombie that looks alive.
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc.pid


def pipe(args: Sequence[str], *, stderr_path: Path) -> subprocess.Popen[bytes]:
    """Start a process to talk to through its stdin and stdout (a byte stream, e.g. an ssh
    channel); stderr goes to `stderr_path`. Not ended by terminate_all(): a rollback after an
    interrupt still needs the engine connections it carries."""
    with open(stderr_path, "ab") as err:
        return subprocess.Popen(
            list(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
            bufsize=0,
        )


def terminate_all() -> None:
    """Stop every command `run` is waiting on (used when devup is interrupted)."""
    _stopping.set()
    with _active_lock:
        procs = list(_active)
    for proc in procs:
        _kill_group(proc.pid, signal.SIGTERM)


def stopping() -> bool:
    """Whether devup was interrupted: a worker thread's long wait should give up now."""
    return _stopping.is_set()


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stream(
    args: Sequence[str], *, on_line: Callable[[str], None], env: Mapping[str, str] | None = None
) -> int | None:
    """Run, handing each output line to `on_line` as it comes; terminate_all() ends it."""
    proc = subprocess.Popen(
        list(args),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    with _active_lock:
        _active.add(proc)
    if _stopping.is_set():  # terminate_all() ran between the spawn and the line above
        _kill_group(proc.pid, signal.SIGTERM)
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            on_line(raw.decode(errors="replace").rstrip("\n"))
        return proc.wait()
    finally:
        with _active_lock:
            _active.discard(proc)
        if proc.poll() is None:
            _kill_group(proc.pid, signal.SIGTERM)
