"""The one door to subprocesses: run-and-wait with a result, or spawn a detached process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, NoReturn

from devup.errors import CommandFailed, DevupError, Interrupted
from devup.paths import ensure_dir

_TAIL_LINES = 20
_TAIL_WIDTH = 2000
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
        """The last lines, each cut to a readable length: a 10 MB line is no error message."""
        return "\n".join(
            line
            if len(line) <= _TAIL_WIDTH
            else line[:_TAIL_WIDTH] + f" [... {len(line) - _TAIL_WIDTH} more characters]"
            for line in deque(self.output.splitlines(), maxlen=lines)
        )

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
        proc = _start(
            list(args),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        )
    except OSError as exc:
        result = Result(tuple(args), 127, f"cannot run {args[0]}: {exc.strerror}")
        return result.raise_for_status(what=what, shown=shown) if check else result
    try:
        out, err = proc.communicate(stdin.encode() if stdin is not None else None, timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    except BaseException:
        _settle(proc)
        raise
    finally:
        with _active_lock:
            _active.discard(proc)
    result = Result(tuple(args), code, out.decode(errors="replace"), (err or b"").decode(errors="replace"))
    return result.raise_for_status(what=what, shown=shown) if check else result


def _settle(proc: subprocess.Popen[bytes]) -> None:
    """An interrupt left the wait for `proc` (terminate_all() signalled it): wait until it has
    really exited (SIGKILL after 10 s) before the rollback starts, so that no inverse races a
    command still finishing (a `git worktree add` that writes its branch after the undo looked
    for it left the branch behind)."""
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    except BaseException:  # a second interrupt: stop waiting, and let it stop the rollback
        _kill_group(proc.pid, signal.SIGKILL)
        raise


def run_through_files(
    args: Sequence[str], *, cwd: Path, timeout: float, env: Mapping[str, str] | None = None
) -> Result:
    """Run to completion with stdout and stderr in anonymous temporary files, not pipes:
    `output` is stdout, `errors` stderr, as with run(merge_stderr=False).

    For git, whose hooks (a post-checkout that starts `sleep 15 &`, or a setsid'd daemon) leave
    children holding git's output descriptors: on a pipe, waiting for its end of file waits for
    them too (a daemon: forever; hostile-input new-M4). A file has no end to wait for, so the
    wait is for git alone, and `timeout` bounds it."""
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = _start(
                list(args),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        except OSError as exc:
            return Result(tuple(args), 127, f"cannot run {args[0]}: {exc.strerror}")
        code: int | None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        except BaseException:
            _settle(proc)
            raise
        finally:
            with _active_lock:
                _active.discard(proc)
        out.seek(0)
        err.seek(0)
        return Result(
            tuple(args), code, out.read().decode(errors="replace"), err.read().decode(errors="replace")
        )


class _Deferral:
    """A signal that arrives while the main thread starts a child is held back until the child
    is registered: otherwise Interrupted, raised between Popen and the registration, would leave
    a child that terminate_all() never sees."""

    starting = False
    pending: int | None = None


def defer_signal(signum: int) -> bool:
    """For the SIGINT/SIGTERM handler: True when the signal is held back (see _Deferral)."""
    if _Deferral.starting and threading.current_thread() is threading.main_thread():
        _Deferral.pending = signum
        return True
    return False


def _start(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen in a new session, registered for terminate_all() before any signal is handled."""
    main = threading.current_thread() is threading.main_thread()
    if main:
        _Deferral.starting = True
    try:
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)
        with _active_lock:
            _active.add(proc)
        # Termination was asked for before we registered: a worker thread's child (the main
        # thread's signal is deferred above, a worker's start is not), or one started after
        # terminate_all(). Missed, a `compose up --wait` would hold the rollback for minutes.
        if _stopping.is_set():
            _kill_group(proc.pid, signal.SIGTERM)
        return proc
    finally:
        if main:
            _Deferral.starting = False
            signum, _Deferral.pending = _Deferral.pending, None
            if signum is not None:
                from devup.errors import Interrupted

                terminate_all()
                raise Interrupted(signum)


class _Tail:
    """The last `keep` bytes of a stream, read by a thread that drains it to its end."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._lock = threading.Lock()
        self.dropped = False

    def drain(self, stream: IO[bytes]) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(stream.fileno(), 65536):
                with self._lock:
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                    while self._size - len(self._chunks[0]) >= self.keep:
                        self._size -= len(self._chunks.popleft())
                        self.dropped = True

    def text(self) -> str:
        with self._lock:
            data = b"".join(self._chunks)[-self.keep :]
        return data.decode(errors="replace")


# Output a bounded run waits for once its command has exited: what the command itself wrote is
# already in the pipe; only a background child can hold the pipe open longer.
_DRAIN_GRACE = 0.5


def run_bounded(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float, keep: int = 64 * 1024
) -> Result:
    """Run a hook (or a readiness command): `timeout` bounds the whole run, a background child
    that keeps the output pipe open never holds us past the command's own exit, and only the
    last `keep` bytes of output are kept (a hook printing 300 MB must not cost 300 MB)."""
    try:
        proc = _start(
            list(args),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        return Result(tuple(args), 127, f"cannot run {args[0]}: {exc.strerror}")
    tail = _Tail(keep)
    assert proc.stdout is not None
    reader = threading.Thread(target=tail.drain, args=(proc.stdout,), daemon=True, name="devup-output")
    reader.start()
    code: int | None
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    finally:
        with _active_lock:
            _active.discard(proc)
    # The reader goes on draining a pipe a background child still holds (a daemon thread, so
    # it never keeps devup alive); we take what has come so far.
    reader.join(timeout=_DRAIN_GRACE)
    output = tail.text()
    if tail.dropped:
        output = f"[... earlier output dropped: only the last {keep // 1024} KiB is kept]\n" + output
    return Result(tuple(args), code, output)


def spawn(args: Sequence[str], *, cwd: Path, env: Mapping[str, str], log_path: Path) -> int:
    """Start a process that outlives devup, in its own process group, output to `log_path`."""
    ensure_dir(log_path.parent)
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


def resume() -> None:
    """The interrupted work is over (its worker threads joined): the commands of the rollback
    that follows must run, not be stopped as they start. A second interrupt stops them again."""
    _stopping.clear()


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stream(
    args: Sequence[str], *, on_line: Callable[[str], None], env: Mapping[str, str] | None = None
) -> int | None:
    """Run, handing each output line to `on_line` as it comes; terminate_all() ends it."""
    proc = _start(
        list(args),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
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


def replace_process(args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> NoReturn:
    """Become `args` (execvpe) in `cwd`: its exit code and its signals are then the caller's
    own, with no process in between. A command that cannot be run is exit 127 (126 when it is
    found but not executable), as a shell reports it."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise DevupError(f"cannot enter {cwd}: {exc.strerror}") from None
    try:
        os.execvpe(args[0], list(args), dict(env))
    except OSError as exc:
        error = DevupError(f"cannot run {args[0]}: {exc.strerror}", hint="check the command and PATH")
        error.exit_code = 126 if isinstance(exc, PermissionError) else 127
        raise error from None


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT/SIGTERM raise Interrupted in the main thread (the children started through here
    are terminated first): in a run (`up`, the data commands) the first starts the rollback; a
    second, raised inside the unwind, stops it and leaves the journal for `recover`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if defer_signal(signum):
            return  # a child is being started: raised once it is registered
        terminate_all()
        raise Interrupted(signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if not _committed.is_set():
            for sig, previous in old.items():
                signal.signal(sig, previous)


_committed = threading.Event()


def committed() -> None:
    """The command's run is committed: what is left is saying so. A signal from now on would
    only turn a success into a false "interrupted" (130 with everything up): ignored until the
    process exits."""
    if threading.current_thread() is not threading.main_thread():
        return
    _committed.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
