"""Session records and port leases: atomic writes under kernel-released file locks."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devup import paths
from devup.errors import BusyError, CorruptState, DevupError


@contextlib.contextmanager
def file_lock(
    path: Path, *, blocking: bool = True, busy_message: str = "", shared: bool = False
) -> Iterator[None]:
    """flock: the kernel releases it when the process dies, so a killed run never wedges us.
    `shared`: one of many readers, which only an exclusive holder keeps out."""
    paths.ensure_dir(path.parent)
    # Read-only is enough for flock, and keeps no file of the state folder open for writing (a
    # remount read-only, or a full disk, then meets no writer of ours).
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK, 0o600)  # a FIFO: no hang (new-L1)
    try:
        kind = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if blocking:
            fcntl.flock(fd, kind)
        elif not _try_lock(fd, kind):
            raise BusyError(busy_message or f"{path.name} is locked by another devup")
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


# Tries of a non-blocking lock: now, then after each pause (~100 ms in all). A devup before
# is_locked read /proc/locks probed by taking the lock for a moment; one try alone met that
# moment as "busy" (exit 4): 912 times in 20,000 against a probing loop.
_RETRY_PAUSES = (0.01, 0.02, 0.03, 0.04)


def _try_lock(fd: int, kind: int) -> bool:
    """Take the lock without waiting on a holder; False when it stays held for ~100 ms."""
    import time

    for pause in (*_RETRY_PAUSES, None):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        if pause is not None:
            time.sleep(pause)
    return False


def is_locked(path: Path) -> bool:
    """Whether some open file holds a flock on `path`. Read from /proc/locks, not by taking the
    lock to see: a probe that holds the lock even for a moment makes another command's
    non-blocking file_lock fail as busy (exit 4)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    try:
        table = Path("/proc/locks").read_text(encoding="utf-8", errors="replace")
    except OSError:
        table = None  # not Linux, or no /proc
    held = _flocked(st, table) if table is not None else None
    return _probe(path) if held is None else held


def _flocked(st: os.stat_result, table: str) -> bool | None:
    """Whether /proc/locks (`table`) lists a flock on the file `st` describes; None when it
    cannot tell: a flock on the same inode number under another device number (btrfs and
    overlayfs may show /proc/locks a device that stat does not).

    A line: "1: FLOCK  ADVISORY  WRITE 1234 08:01:123456 0 EOF", the device as major:minor in
    hex; a waiter's line has "->" before FLOCK and is not a holder. The kernel shows only the
    locks of processes in this PID namespace: a devup in another container that shares the
    state folder is not seen.
    """
    here = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    inode = f":{st.st_ino}"
    unsure = False
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        if fields[5] == here:
            return True
        unsure = unsure or fields[5].endswith(inode)
    return None if unsure else False


def _probe(path: Path) -> bool:
    """Whether the lock is held, by trying to take it (where /proc/locks cannot tell)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO there must not hang `ls`/`gc` (new-L1)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def write_atomic(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Temp file in the same folder, fsync, os.replace: a reader sees the old or the new file."""
    import tempfile

    paths.ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# Records are plain frozen dataclasses read with json: `ls` and `status` read them on every
# start, and importing pydantic there would cost more than the whole command may take.


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start_time: float
    stop_timeout: float = 10
    depends_on: list[str] = field(default_factory=list)  # as configured: groups and services

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ProcessRecord:
        return ProcessRecord(
            pid=int(data["pid"]),
            start_time=float(data["start_time"]),
            stop_timeout=float(data["stop_timeout"]),
            depends_on=[_str(d) for d in data.get("depends_on", [])],
        )

    def replace(self, **changes: Any) -> ProcessRecord:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class GroupRecord:
    name: str
    project: str
    files: list[str]
    services: list[str]
    depends_on: list[str] = field(default_factory=list)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> GroupRecord:
        return GroupRecord(
            name=_str(data["name"]),
            project=_str(data["project"]),
            files=[_str(f) for f in data["files"]],
            services=[_str(s) for s in data["services"]],
            depends_on=[_str(d) for d in data.get("depends_on", [])],
        )


@dataclass(frozen=True)
class SessionRecord:
    """What a committed `up` leaves behind, enough for `down` without the config."""

    session: str
    project: str
    repo: str
    repo_id: str
    branch: str
    worktree: str
    mode: str
    status: str  # up | stopped | failed
    created_worktree: bool
    ports: dict[str, int]
    groups: list[GroupRecord]
    services: dict[str, ProcessRecord]
    env_file: str
    env: dict[str, str]
    created_at: float
    updated_at: float
    config_digest: str = ""  # of the devup.toml this session was last brought up with
    attached: bool = False  # the worktree was made by another tool (SPEC §8): never removed
    # {"context", "host"} of the engine its groups run on (remote.Engine); {} in older records.
    engine: dict[str, str | None] = field(default_factory=dict)
    # {"kind": "session"|"snapshot", "name"} when its data was cloned (`up --from`, SPEC §7)
    source: dict[str, str] = field(default_factory=dict)
    ttl: float | None = None  # `up --ttl`: expires this many seconds after its last use (§5.13)
    # What it came up from (drift.py): {"files", "vars", "env", "groups": {g: {svc: digest}},
    # "services": {s: {"digest", "run"}}}; {} in older records (then devup.toml alone decides)
    inputs: dict[str, Any] = field(default_factory=dict)
    # Compose projects of groups a reconcile took down: their data volumes stay until `down`
    retired: list[str] = field(default_factory=list)
    # Hostname URLs (SPEC §9), target (compose service or native service) -> URL, in the order
    # `devup url` picks its default from; {} when hostnames are off.
    urls: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    def replace(self, **changes: Any) -> SessionRecord:
        return dataclasses.replace(self, **changes)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> SessionRecord:
        text_fields = (
            "session",
            "project",
            "repo",
            "repo_id",
            "branch",
            "worktree",
            "mode",
            "status",
            "env_file",
        )
        return SessionRecord(
            **{k: _str(data[k]) for k in text_fields},
            created_worktree=bool(data["created_worktree"]),
            ports={_str(k): int(v) for k, v in data["ports"].items()},
            groups=[GroupRecord.from_dict(g) for g in data["groups"]],
            services={_str(k): ProcessRecord.from_dict(v) for k, v in data["services"].items()},
            env={_str(k): _str(v) for k, v in data["env"].items()},
            created_at=float(data["created_at"]),
            updated_at=float(data["updated_at"]),
            config_digest=_str(data.get("config_digest", "")),
            attached=bool(data.get("attached", False)),
            engine=_engine(data.get("engine")),
            source={_str(k): _str(v) for k, v in (data.get("source") or {}).items()},
            ttl=None if data.get("ttl") is None else float(data["ttl"]),
            inputs=_object(data.get("inputs")),
            retired=[_str(p) for p in data.get("retired") or []],
            urls={_str(k): _str(v) for k, v in (data.get("urls") or {}).items()},
        )


def _engine(value: Any) -> dict[str, str | None]:
    if not value:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"engine: expected an object, found {type(value).__name__}")
    context = value.get("context")
    return {"context": None if context is None else _str(context), "host": _str(value["host"])}


def _object(value: Any) -> dict[str, Any]:
    if not value:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"inputs: expected an object, found {type(value).__name__}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return value


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file; anything else (a FIFO, which a plain read would wait on
    forever, new-L1) is a ValueError, read as corrupt."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def read_record(path: Path) -> SessionRecord | None:
    try:
        text = _read_regular(path).decode("utf-8")
        return SessionRecord.from_dict(json.loads(text))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:  # UTF-8 errors are ValueErrors
        problem = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
        raise CorruptState(
            f"session file {path} is corrupt: {problem}",
            hint=f"move it aside (or delete it) and run `devup gc`: {path}",
        ) from None


def write_record(path: Path, record: SessionRecord) -> None:
    write_atomic(path, record.to_json())


# --- port leases -------------------------------------------------------------------------


def _read_leases(path: Path) -> dict[str, dict[str, Any]]:
    """The lease file; a damaged one is moved aside and rebuilt from the session records
    (SPEC §5.11): emptying it would hand other sessions' ports out again. Caller holds the lock."""
    try:
        return _valid_leases(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, KeyError, AttributeError, OSError):
        return _rebuild_leases(path)


def _valid_leases(data: Any) -> dict[str, dict[str, Any]]:
    leases = data["leases"]
    if not isinstance(leases, dict):
        raise TypeError("leases is not an object")
    for port, lease in leases.items():
        int(port)
        if not all(isinstance(lease.get(k), str) for k in ("repo", "session", "key")):
            raise TypeError(f"lease of port {port} is malformed")
    return leases


def _rebuild_leases(path: Path) -> dict[str, dict[str, Any]]:
    import sys
    import time

    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    with contextlib.suppress(OSError):
        os.replace(path, aside)
    leases: dict[str, dict[str, Any]] = {}
    for record_path in sorted(paths.state_root().glob("repos/*/sessions/*.json")):
        try:
            record = read_record(record_path)
        except CorruptState:
            continue  # that session's own problem; its ports are re-checked free before use
        if record is None:
            continue
        # The longest key of a port is its full key (STORE_8080 over its alias STORE).
        for key, port in sorted(record.ports.items(), key=lambda kv: len(kv[0])):
            leases[str(port)] = {"repo": record.repo_id, "session": record.session, "key": key}
    write_atomic(path, json.dumps({"leases": leases}, indent=1, sort_keys=True))
    print(
        f"warning: the port lease file {path} was damaged; moved it to {aside} and rebuilt it "
        f"from the session records ({len(leases)} leases)",
        file=sys.stderr,
    )
    return leases


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def lease_ports(
    *,
    repo_id: str,
    session: str,
    keys: list[str],
    prefer: dict[str, int],
    port_range: tuple[int, int],
    avoid: frozenset[int] = frozenset(),
    held: frozenset[str] = frozenset(),
    is_free: Callable[[str, int], bool] | None = None,
) -> dict[str, int]:
    """Lease one port per key, preferring `prefer`; returns only the ports newly leased.

    A key this session already leases keeps its port if the port is free, or if `held`
    says one of the session's own running units is what binds it; otherwise it moves.
    `is_free(key, port)` says where a key's port must be free (a remote engine's host for its
    containers' ports); by default, on this machine.
    """

    def free(key: str, port: int) -> bool:
        return is_free(key, port) if is_free is not None else port_is_free(port)

    path = paths.ports_file()
    with file_lock(path.with_suffix(".lock")):
        leases = _read_leases(path)
        mine = {
            int(p): lease["key"]
            for p, lease in leases.items()
            if lease.get("repo") == repo_id and lease.get("session") == session
        }
        taken = {int(p) for p in leases}
        granted: dict[str, int] = {}
        candidates = iter(range(port_range[0], port_range[1] + 1))
        for key in keys:
            want = prefer.get(key)
            if want is not None and want not in avoid:
                if mine.get(want) == key:
                    if key in held or free(key, want):
                        continue  # still ours: nothing new to lease
                    del leases[str(want)]  # ours, but someone else binds it now: move
                elif want not in taken and free(key, want):
                    granted[key] = want
                    taken.add(want)
                    continue
            for port in candidates:
                if port not in taken and port not in avoid and free(key, port):
                    granted[key] = port
                    taken.add(port)
                    break
            else:
                raise DevupError(
                    f"no free port left in {port_range[0]}-{port_range[1]}",
                    hint="widen [ports].range in devup.toml or run `devup gc`",
                )
        for key, port in granted.items():
            leases[str(port)] = {"repo": repo_id, "session": session, "key": key}
        write_atomic(path, json.dumps({"leases": leases}, indent=1, sort_keys=True))
    return granted


def release_ports(*, repo_id: str, session: str, ports: list[int] | None = None) -> None:
    """Release this session's leases (all, or just `ports`); already released is fine."""
    path = paths.ports_file()
    with file_lock(path.with_suffix(".lock")):
        leases = _read_leases(path)
        keep = {
            p: lease
            for p, lease in leases.items()
            if not (
                lease.get("repo") == repo_id
                and lease.get("session") == session
                and (ports is None or int(p) in ports)
            )
        }
        if keep != leases:
            write_atomic(path, json.dumps({"leases": keep}, indent=1, sort_keys=True))


def restore_leases(*, repo_id: str, session: str, leases: dict[str, int]) -> None:
    """Lease `leases` (key -> port) to the session again where no one else holds the port."""
    path = paths.ports_file()
    with file_lock(path.with_suffix(".lock")):
        current = _read_leases(path)
        changed = False
        for key, port in leases.items():
            if str(port) not in current:
                current[str(port)] = {"repo": repo_id, "session": session, "key": key}
                changed = True
        if changed:
            write_atomic(path, json.dumps({"leases": current}, indent=1, sort_keys=True))


def all_leases() -> dict[int, dict[str, Any]]:
    path = paths.ports_file()
    with file_lock(path.with_suffix(".lock")):
        return {int(p): lease for p, lease in _read_leases(path).items()}
