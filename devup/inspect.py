"""`ls`, `status` and `env`: read-only views that never wait for a running `up`."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

from devup import journal, remote
from devup.engine import queries
from devup.envvars import port_key
from devup.errors import DevupError, NoSuchSession
from devup.locks import is_locked
from devup.records import ProcessRecord, SessionRecord, read_record
from devup.report import Reporter
from devup.workspace import Workspace


def process_alive(record: ProcessRecord) -> bool:
    from devup import processes  # psutil: only when a session has native services

    return processes.is_alive(record.pid, record.start_time)


@dataclass(frozen=True)
class Unit:
    name: str
    kind: str  # "container" | "process"
    state: str
    healthy: bool
    url: str = ""


_WEB_TARGETS = frozenset({80, 443, 3000, 4000, 5000, 5173, 8000, 8025, 8080, 8081, 8443, 8888, 9000, 9001})


def urls(record: SessionRecord) -> dict[str, str]:
    """A URL per unit with a web port: containers at DEVUP_HOST (a remote engine's host), native
    services here, where they run."""
    there = remote.url_host(record.env.get("DEVUP_HOST", remote.LOCAL_ADDRESS))
    found: dict[str, str] = {}
    for g in record.groups:
        for svc in g.services:
            base = port_key(svc)
            for key in sorted(record.ports):
                target = key[len(base) + 1 :]
                # SERVICE_TARGET, or SERVICE_TARGET_N for the Nth publishing of one target
                if (
                    key.startswith(f"{base}_")
                    and target.replace("_", "").isdigit()
                    and int(target.split("_")[0]) in _WEB_TARGETS
                ):
                    found[f"{g.name}/{svc}"] = f"http://{there}:{record.ports[key]}/"
                    break
    for name in record.services:
        port = record.ports.get(port_key(name))
        if port:
            found[name] = f"http://{remote.LOCAL_ADDRESS}:{port}/"
    return found


def url_of(record: SessionRecord, target: str | None) -> str:
    """`devup url NAME [TARGET]`: the hostname URL of `target`, by default the first unit with
    a port (compose services in the order of their groups, then native services)."""
    from devup.errors import UsageError

    if not record.urls:
        raise UsageError(
            f"session {record.session} has no hostnames",
            hint="hostnames need caddy and a local engine; [routes].hostnames in devup.toml (SPEC §9), "
            f"then `devup up {record.session}`",
        )
    if target is None:
        return next(iter(record.urls.values()))
    if target not in record.urls:
        raise UsageError(
            f"session {record.session} has no hostname for {target!r}",
            hint=f"its targets: {', '.join(record.urls)}",
        )
    return record.urls[target]


@dataclass(frozen=True)
class SessionView:
    record: SessionRecord
    status: str
    units: list[Unit] = field(default_factory=list)
    last_used: float | None = None  # `ls` fills these in (SPEC §5.13, §5.12)
    expires: float | None = None
    changed: bool = False

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "session": r.session,
            "status": self.status,
            "mode": r.mode,
            "branch": r.branch,
            "worktree": r.worktree,
            "ports": r.ports,
            "engine": engine_json(r),
            "last_used": _iso(self.last_used),
            "expires": _iso(self.expires),
            "changed": self.changed,
            "urls": r.urls,  # hostname URLs, target -> URL (SPEC §9)
        }


def _iso(when: float | None) -> str | None:
    # Clamped to the last second of 9999 (a ttl recorded before durations had a limit): ISO
    # times have four-digit years.
    return None if not when else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(min(when, 253402300799)))


def engine_json(record: SessionRecord) -> dict[str, Any] | None:
    where = remote.Engine.from_json(record.engine)  # None: a record from before engines were recorded
    return None if where is None else {**where.to_json(), "remote": where.remote}


def units(
    record: SessionRecord, containers: list[queries.ContainerState], *, owners: bool = False
) -> list[Unit]:
    """Each container and process of `record`; with `owners` (`status`), whether what answers on a
    service's leased port is the service (a scan of the system's sockets: not for `ls`)."""
    found: list[Unit] = []
    # A unit's hostname URL where it has one (SPEC §9), else its published port's.
    link = {
        **urls(record),
        **{f"{g.name}/{s}": record.urls[s] for g in record.groups for s in g.services if s in record.urls},
    }
    link.update({n: record.urls[n] for n in record.services if n in record.urls})
    for group in record.groups:
        for svc in group.services:
            mine = [c for c in containers if c.project == group.project and c.service == svc]
            if not mine:
                found.append(Unit(f"{group.name}/{svc}", "container", "missing", False))
                continue
            for c in mine:
                label = c.state + (f" ({c.health})" if c.health else "")
                healthy = c.state == "running" and c.health in (None, "healthy")
                found.append(
                    Unit(
                        f"{group.name}/{svc}",
                        "container",
                        label,
                        healthy,
                        link.get(f"{group.name}/{svc}", ""),
                    )
                )
    for group in record.groups:
        if group.kept_volumes:
            found.append(
                Unit(
                    group.name,
                    "volumes",
                    f"kept: {', '.join(group.kept_volumes)} (no longer in the config); `devup down` removes them",
                    True,
                )
            )
    for project in record.retired:
        found.append(
            Unit(project, "volumes", "kept: its group left the config; `devup down` removes them", True)
        )
    for name, proc in record.services.items():
        alive = process_alive(proc)
        state_ = f"running (pid {proc.pid})" if alive else "exited"
        foreign = _foreign_listener(proc, record.ports.get(port_key(name))) if owners else ""
        if foreign:
            state_, alive = f"{state_}; {foreign}", False
        found.append(Unit(name, "process", state_, alive, link.get(name, "")))
    return found


def _foreign_listener(proc: ProcessRecord, port: int | None) -> str:
    """What answers on a service's leased port when it is not the service (its URL would show
    another program's pages): "port P answers from pid X (program), not the session's"."""
    if port is None:
        return ""
    from devup import processes

    owner = processes.port_owner(port)
    if owner is None or (processes.owns_port(proc.pid, owner[0]) and process_alive(proc)):
        return ""
    return f"port {port} answers from pid {owner[0]} ({owner[1]}), not the session's"


def view(
    record: SessionRecord, containers: list[queries.ContainerState], *, owners: bool = False
) -> SessionView:
    found = units(record, containers, owners=owners)
    if not os.path.isdir(record.worktree):
        # Deleted by hand: the session is not whole, and `up` (not a no-op then) recreates it.
        found.insert(0, Unit("worktree", "worktree", "missing", False))
    if record.status != "up":
        return SessionView(record, record.status, found)
    return SessionView(record, "up" if all(u.healthy for u in found) else "degraded", found)


def _containers(
    ws: Workspace, records: list[SessionRecord], session: str | None = None
) -> list[queries.ContainerState]:
    """The containers of `records`' sessions, asked of their engine (that of the first record:
    callers group records by engine), whatever the environment says (guarantee 10)."""
    if not any(r.groups for r in records):
        return []  # host mode: no engine needed, none asked
    return queries.containers(remote.engine_of(records[0]), repo_id=ws.repo.repo_id, session=session)


def containers_of(ws: Workspace, record: SessionRecord) -> list[queries.ContainerState]:
    return _containers(ws, [record], record.session)


def is_healthy(ws: Workspace, record: SessionRecord) -> bool:
    try:
        return view(record, _containers(ws, [record], record.session)).status == "up" and _routed(ws, record)
    except DevupError:
        return False


def _routed(ws: Workspace, record: SessionRecord) -> bool:
    """The session's route is on the router (a router killed, or its machine restarted, makes
    `up` of an up session no no-op: its route step puts it back)."""
    if not record.urls:
        return True
    from devup import router

    return (
        router.get(router.route_id(ws.repo.repo_id, record.session)) is not None
        and router.moved(record.urls) is None
    )


def status(ws: Workspace, name: str, reporter: Reporter) -> SessionView:
    """Health of each container and process of session `name`, an interrupted run of it
    finished first when nobody holds it."""
    from devup import recovery  # with the steps' inverses: `ls`, which imports this module, never needs it

    recovery.finish_if_idle(ws, name, reporter)
    record = ws.record(name)
    if record is not None:
        from devup import usage

        usage.touch(ws.repo, name)  # a use (SPEC §5.13)
    if record is None:
        found = journal.replay(ws.repo.journal(name))
        if found is not None and found.outcome is None:
            raise DevupError(
                f"session {name} is being created, or its run was interrupted",
                hint=f"`devup recover {name}` finishes an interrupted run",
            )
        raise NoSuchSession(name)
    try:
        containers = _containers(ws, [record], name)
    except DevupError as exc:
        # SPEC: status exits 0 or 1. An engine that does not answer makes the session's
        # containers unknown, hence not healthy (1), never a usage error (2).
        unknown = [
            Unit(f"{g.name}/{svc}", "container", f"unknown ({exc.message.splitlines()[0]})", False)
            for g in record.groups
            for svc in g.services
        ]
        procs = [u for u in units(record, []) if u.kind == "process"]
        return SessionView(record, "degraded" if record.status == "up" else record.status, unknown + procs)
    shown = view(record, containers, owners=True)
    if record.urls and record.status == "up":
        shown = _with_route(ws, shown)
    return _with_life(ws, shown)


def _with_route(ws: Workspace, found: SessionView) -> SessionView:
    """A unit for the session's route on the router (SPEC §9): a hostname that does not answer
    is no healthy session."""
    from devup import router

    name = found.record.session
    try:
        routed = router.get(router.route_id(ws.repo.repo_id, name)) is not None
        state_ = "on the router" if routed else f"missing: `devup up {name}` puts it back"
        if routed and (now := router.moved(found.record.urls)) is not None:
            routed = False
            state_ = (
                f"the router now listens on {now.http_port}/{now.https_port}, not on the ports of these "
                f"URLs: `devup up {name}` gives the session URLs that answer"
            )
    except DevupError as exc:
        routed, state_ = False, f"unknown ({exc.message.splitlines()[0]})"
    units_ = [*found.units, Unit("routes", "route", state_, routed)]
    status_ = found.status if routed or found.status != "up" else "degraded"
    return dataclasses.replace(found, units=units_, status=status_)


@dataclass(frozen=True)
class Listing:
    sessions: list[SessionView]
    problems: list[str]


def ls(ws: Workspace) -> Listing:
    """Every session of the repository: records, plus interrupted runs that left no record."""
    records: list[SessionRecord] = []
    problems: list[str] = []
    for path in sorted(ws.repo.sessions_dir.glob("*.json")) if ws.repo.sessions_dir.is_dir() else []:
        try:
            record = read_record(path)
        except DevupError as exc:
            problems.append(exc.message)  # one corrupt file never hides the others
            continue
        if record is not None:
            records.append(record)
    views = _views_per_engine(ws, records, problems)
    known = {r.session for r in records}
    for path in sorted(ws.repo.journals_dir.glob("*.jsonl")) if ws.repo.journals_dir.is_dir() else []:
        name = path.stem
        try:
            found = journal.replay(path)
        except DevupError as exc:
            problems.append(exc.message)
            continue
        if found is None or found.outcome is not None or is_locked(ws.repo.lock(name)):
            continue
        begin = found.begin
        if name in known:
            views = [
                SessionView(v.record, "interrupted", v.units) if v.record.session == name else v
                for v in views
            ]
            continue
        ghost = SessionRecord(
            session=name,
            project=begin.get("project", ""),
            repo=str(ws.repo.root),
            repo_id=ws.repo.repo_id,
            branch=begin.get("branch", "?"),
            worktree=begin.get("worktree", "?"),
            mode=begin.get("mode", "?"),
            status="interrupted",
            created_worktree=False,
            ports={},
            groups=[],
            services={},
            env_file="",
            env={},
            created_at=begin.get("at", 0),
            updated_at=begin.get("at", 0),
            engine=_engine_dict(begin.get("engine")),
        )
        views.append(SessionView(ghost, "interrupted"))
    return Listing(sorted((_with_life(ws, v) for v in views), key=lambda v: v.record.session), problems)


def _with_life(ws: Workspace, view: SessionView) -> SessionView:
    """Last use, expiry and config drift of a recorded session (a stat or two; no engine)."""
    from devup import drift, fleet, usage

    r = view.record
    if view.status == "interrupted" and not r.env_file:
        return view  # a run that left no record: nothing to say
    limits = usage.limits_of(ws.config_text)
    return dataclasses.replace(
        view,
        last_used=fleet.last_used(ws, r),
        expires=fleet.expires(ws, r, limits),
        changed=bool(r.config_digest) and bool(drift.since(r, config=ws.config_digest)),
    )


def _views_per_engine(ws: Workspace, records: list[SessionRecord], problems: list[str]) -> list[SessionView]:
    """One container query per engine the sessions run on, each session judged by its own engine's
    containers. Records from before engines were recorded go first, on the environment's engine."""
    by_engine: dict[str, list[SessionRecord]] = {}
    for r in records:
        by_engine.setdefault(remote.engine_of(r).host, []).append(r)
    views: list[SessionView] = []
    for host in sorted(by_engine):
        group = by_engine[host]
        try:
            containers = _containers(ws, group)
        except DevupError as exc:
            problems.append(exc.message)
            containers = []
        views += [view(r, containers) for r in group]
    return views


def _engine_dict(value: object) -> dict[str, str | None]:
    where = remote.Engine.from_json(value)
    return {} if where is None else {"context": where.context, "host": where.host}
