"""Native services: spawned in their own process group, identity recorded, readiness probed."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devup import processes, runner
from devup.envvars import port_key
from devup.errors import DevupError, PortConflict
from devup.leases import port_is_free
from devup.model import Identity
from devup.records import ProcessRecord, SessionRecord
from devup.undo import UndoRecord, UndoStack, inverse

if TYPE_CHECKING:
    from devup.remote import Engine

if TYPE_CHECKING:  # pydantic loads only when devup.toml is read
    from devup.config import ReadyCfg, ServiceCfg


def start(
    *,
    stack: UndoStack,
    ident: Identity,
    name: str,
    cfg: ServiceCfg,
    cwd: Path,
    env: Mapping[str, str],
    port: int | None,
    log_path: Path,
) -> ProcessRecord:
    """Spawn the service and wait until it is ready; its stop is on the stack before it runs."""
    unit = f"service:{name}"
    args: dict[str, Any] = {
        "repo_id": ident.repo.repo_id,
        "session": ident.session,
        "unit": unit,
        "pid": None,
        "start_time": None,
        "stop_timeout": cfg.stop_timeout,
    }
    ident_no = stack.push(UndoRecord("process_stop", args, f"service {name}"))
    child_env = {**env, **ident.tags(unit)}
    if port is not None:
        child_env["PORT"] = str(port)
    # The log is appended across runs: probes and error tails read only this run's part.
    offset = log_path.stat().st_size if log_path.exists() else 0
    pid = runner.spawn(["sh", "-c", cfg.run], cwd=cwd, env=child_env, log_path=log_path)
    started = processes.start_time(pid) or 0.0
    stack.update(
        ident_no,
        UndoRecord(
            "process_stop",
            {**args, "pid": pid, "start_time": started},
            f"service {name} (pid {pid})",
        ),
    )
    record = ProcessRecord(
        pid=pid, start_time=started, stop_timeout=cfg.stop_timeout, depends_on=list(cfg.depends_on)
    )
    wait_ready(
        name=name, cfg=cfg, record=record, port=port, cwd=cwd, env=child_env, log_path=log_path, offset=offset
    )
    return record


_PORT_ATTEMPTS = 3


def start_on_a_free_port(
    *,
    stack: UndoStack,
    ident: Identity,
    name: str,
    cfg: ServiceCfg,
    cwd: Path,
    env: Callable[[], Mapping[str, str]],
    port: int | None,
    move: Callable[[int], int],
    log_path: Path,
) -> ProcessRecord:
    """`start`, with its port checked free right before use (a foreign listener would answer our
    readiness probe) and moved (`move(old) -> new`, the lease and env file following) when it is
    taken, or lost between the check and the bind: a transient fault, retried up to 3 times.
    `env` is read at each attempt: a move rewrites the session's variables."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt

    moved = False  # the last attempt's port was taken at the bind: move before the next

    def bind_lost(exc: BaseException) -> bool:
        nonlocal moved
        moved = isinstance(exc, PortConflict) and port is not None
        return moved

    for attempt in Retrying(
        retry=retry_if_exception(bind_lost), stop=stop_after_attempt(_PORT_ATTEMPTS), reraise=True
    ):
        with attempt:
            if port is not None and (moved or not port_is_free(port)):
                port = move(port)
            return start(
                stack=stack, ident=ident, name=name, cfg=cfg, cwd=cwd, env=env(), port=port, log_path=log_path
            )
    raise AssertionError("tenacity reraises the last failure")


def wait_ready(
    *,
    name: str,
    cfg: ServiceCfg,
    record: ProcessRecord,
    port: int | None,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    offset: int = 0,
) -> None:
    """Poll fast at first, backing off to 0.5 s; fail at once if the process exits."""
    deadline = time.monotonic() + cfg.ready_timeout
    delay = 0.02
    settled = time.monotonic() + 0.1
    while True:
        if runner.stopping():
            # Interrupted: the main thread waits for this worker before it rolls back.
            raise DevupError(f"service {name}: readiness wait interrupted")
        if not processes.is_alive(record.pid, record.start_time):
            tail = _tail(log_path, offset)
            if port is not None and re.search(r"address already in use|EADDRINUSE", tail, re.IGNORECASE):
                raise PortConflict(f"service {name} could not bind port {port}:\n{tail}")
            raise DevupError(
                f"service {name} (`{cfg.run}`) exited before it was ready; "
                f"last lines of {log_path}:\n{_tail(log_path, offset)}"
            )
        if cfg.ready is None:
            if time.monotonic() >= settled:
                return
        elif _probe(cfg.ready, port=port, cwd=cwd, env=env, log_path=log_path, offset=offset):
            return
        elif time.monotonic() > deadline:
            raise DevupError(
                f"service {name} (`{cfg.run}`) not ready after {cfg.ready_timeout:g}s ({_describe(cfg.ready)}); "
                f"last lines of {log_path}:\n{_tail(log_path, offset)}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _probe(
    ready: ReadyCfg, *, port: int | None, cwd: Path, env: Mapping[str, str], log_path: Path, offset: int
) -> bool:
    if ready.http is not None and port is not None:
        import http.client  # with ssl, ~20 ms: only a run that probes http pays for it

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", ready.http)
            return conn.getresponse().status < 400
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
    if ready.tcp and port is not None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    if ready.cmd is not None:
        return runner.run_bounded(["sh", "-c", ready.cmd], cwd=cwd, env=env, timeout=30).ok
    if ready.log is not None:
        try:
            return re.search(ready.log, _read_from(log_path, offset), re.MULTILINE) is not None
        except FileNotFoundError:
            return False
    return False


def _describe(ready: ReadyCfg) -> str:
    for key in ("http", "tcp", "cmd", "log"):
        value = getattr(ready, key)
        if value not in (None, False):
            return f"{key} probe {value!r}" if key != "tcp" else "tcp probe"
    return "probe"


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _tail(path: Path, offset: int = 0, lines: int = 20) -> str:
    try:
        return "\n".join(_read_from(path, offset).splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def stop(*, record: ProcessRecord) -> None:
    """Stop a recorded service: SIGTERM its group, SIGKILL after its stop_timeout. What its
    children left in other groups is the caller's session-wide sweep (one /proc scan for all)."""
    processes.stop(record.pid, record.start_time, timeout=record.stop_timeout)


def stop_restorable(
    *,
    stack: UndoStack,
    ident: Identity,
    name: str,
    record: ProcessRecord,
    run: str | None,
    cwd: Path,
    env: Mapping[str, str],
    port: int | None,
    log_path: Path,
    session_record: Path,
) -> None:
    """Stop a running service that a reconcile restarts or removes (SPEC §5.12); the inverse
    starts it again with its previous command and variables and points the session record
    at it. Without its command (a session brought up by an older devup) it cannot come back:
    then the inverse reports it."""
    stack.push(
        UndoRecord(
            "process_respawn",
            {
                "name": name,
                "run": run,
                "cwd": str(cwd),
                "env": {**env, **ident.tags(f"service:{name}"), **({"PORT": str(port)} if port else {})},
                "log": str(log_path),
                "record": str(session_record),
                "stop_timeout": record.stop_timeout,
                "depends_on": list(record.depends_on),
            },
            f"service {name} as it ran",
        )
    )
    stop(record=record)


def stop_previous(
    *,
    stack: UndoStack,
    ident: Identity,
    name: str,
    previous: SessionRecord,
    cwd: Path,
    log_path: Path,
    session_record: Path,
) -> None:
    """`stop_restorable` for service `name` of the session as it ran (`previous`): its command,
    variables and port as recorded then."""
    was = (previous.inputs.get("services") or {}).get(name) or {}
    stop_restorable(
        stack=stack,
        ident=ident,
        name=name,
        record=previous.services[name],
        run=was.get("run"),
        cwd=cwd,
        env=previous.env,
        port=previous.ports.get(port_key(name)),
        log_path=log_path,
        session_record=session_record,
    )


@inverse("process_respawn")
def undo_respawn(args: dict[str, Any], _engine: Engine) -> None:
    """Start the service again as it ran before this run, and record its new pid."""
    import os

    from devup.records import read_record, write_record

    if not args.get("run"):
        raise DevupError(
            f"service {args['name']}: its previous command is unknown; `devup up` starts it again"
        )
    path = Path(args["record"])
    record = read_record(path)
    if record is None:
        return  # the session is gone (a new one's rollback): nothing to bring back
    cwd = Path(args["cwd"])
    if not cwd.is_dir():
        raise DevupError(f"service {args['name']}: its folder {cwd} is gone")
    pid = runner.spawn(
        ["sh", "-c", args["run"]], cwd=cwd, env={**os.environ, **args["env"]}, log_path=Path(args["log"])
    )
    again = ProcessRecord(
        pid=pid,
        start_time=processes.start_time(pid) or 0.0,
        stop_timeout=float(args["stop_timeout"]),
        depends_on=list(args["depends_on"]),
    )
    write_record(path, record.replace(services={**record.services, args["name"]: again}))


@inverse("process_stop")
def undo(args: dict[str, Any], _engine: Engine) -> None:
    """SIGTERM the group (if it is still the very process started), SIGKILL after the timeout;
    then sweep any process still carrying the service's tags (started before its pid was journaled)."""
    if args.get("pid"):
        processes.stop(args["pid"], args["start_time"], timeout=args["stop_timeout"])
    processes.kill_tagged(
        repo_id=args["repo_id"],
        session=args["session"],
        unit=args["unit"],
        timeout=args["stop_timeout"],
    )
