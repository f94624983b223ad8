"""Session records: what a committed `up` leaves behind, read and written atomically."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devup.errors import CorruptState
from devup.locks import write_atomic

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
    # Data volumes of the project its config no longer names: kept (a reconcile never removes
    # data, SPEC §5.12), listed by `status`, removed by `down`.
    kept_volumes: list[str] = field(default_factory=list)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> GroupRecord:
        return GroupRecord(
            name=_str(data["name"]),
            project=_str(data["project"]),
            files=[_str(f) for f in data["files"]],
            services=[_str(s) for s in data["services"]],
            depends_on=[_str(d) for d in data.get("depends_on", [])],
            kept_volumes=[_str(v) for v in data.get("kept_volumes", [])],
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
    # Why the last `up` left hostnames it wanted off (the router could not start): the next
    # `up` tries again instead of being a no-op (SPEC §9).
    hostnames_off: str = ""

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
            hostnames_off=_str(data.get("hostnames_off", "")),
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
