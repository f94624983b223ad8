"""`devup logs`: compose and native services' output together, each line prefixed by its source."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devup import compose, remote, runner
from devup.errors import DevupError
from devup.records import SessionRecord
from devup.workspace import Workspace

Emit = Callable[[str, str], None]  # (source, line)


@dataclass(frozen=True)
class Source:
    name: str  # "db/postgres" for a compose service, "web" for a native one
    project: str | None = None
    service: str | None = None
    log: Path | None = None
    env: dict[str, str] | None = None  # a compose service's: its session's engine (guarantee 10)


def sources(ws: Workspace, record: SessionRecord, target: str | None) -> list[Source]:
    env = remote.engine_of(record).environ() if record.groups else None
    found = [Source(f"{g.name}/{s}", g.project, s, env=env) for g in record.groups for s in g.services]
    found += [Source(name, log=ws.repo.log(record.session, name)) for name in ws_services(ws, record)]
    if target is None:
        return found
    chosen = [s for s in found if target in (s.name, s.service, s.name.split("/")[0])]
    if not chosen:
        names = ", ".join(s.name for s in found) or "none"
        raise DevupError(f"session {record.session} has no log source {target!r}", hint=f"sources: {names}")
    return chosen


def ws_services(ws: Workspace, record: SessionRecord) -> list[str]:
    """Native services with a log file: running ones and those that ran before a stop."""
    folder = ws.repo.session_dir(record.session) / "logs"
    names = set(record.services)
    if folder.is_dir():
        names |= {p.stem for p in folder.glob("*.log")}
    return sorted(names)


def show(
    ws: Workspace, record: SessionRecord, target: str | None, *, follow: bool, lines: int | None, emit: Emit
) -> None:
    chosen = sources(ws, record, target)
    if not follow:
        for source in chosen:
            _read(source, lines=lines, follow=False, emit=emit)
        return
    threads = [
        threading.Thread(
            target=_read, args=(s,), kwargs={"lines": lines, "follow": True, "emit": emit}, daemon=True
        )
        for s in chosen
    ]
    try:
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
    finally:
        runner.terminate_all()


def _read(source: Source, *, lines: int | None, follow: bool, emit: Emit) -> None:
    if source.log is not None:
        _read_file(source, lines=lines, follow=follow, emit=emit)
        return
    args = [*compose.compose_command(), "-p", str(source.project), "logs", "--no-color", "--no-log-prefix"]
    if lines is not None:
        args += ["--tail", str(lines)]
    if follow:
        args.append("-f")
    runner.stream([*args, str(source.service)], on_line=lambda line: emit(source.name, line), env=source.env)


def _read_file(source: Source, *, lines: int | None, follow: bool, emit: Emit) -> None:
    path = source.log
    assert path is not None
    if not path.exists() and not follow:
        return
    while not path.exists():
        time.sleep(0.2)
    with open(path, errors="replace") as f:
        tail: deque[str] = deque(f, maxlen=lines) if lines is not None else deque(f)
        for line in tail:
            emit(source.name, line.rstrip("\n"))
        while follow:
            line = f.readline()
            if line:
                emit(source.name, line.rstrip("\n"))
            else:
                time.sleep(0.1)
