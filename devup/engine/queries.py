"""Read-only container queries (over plain HTTP, no SDK: http.py): states for `ls` and `status`,
restarts and uptimes for readiness, and the ports running containers publish."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from devup.engine import http
from devup.engine.client import LIBPOD, edge
from devup.engine.labels import LABEL_PROJECT, LABEL_REPO, LABEL_SERVICE, LABEL_SESSION
from devup.remote import Engine


def _list_containers(eng: Engine, labels: list[str]) -> list[dict[str, Any]]:
    """`GET /containers/json` by label, stopped ones included.

    Podman's answer carries no health in `Status`: libpod's own list has it, and it is put there
    as Docker words it ("Up (healthy)")."""
    query = {"all": "1", "filters": http.filters(label=labels)}
    data = http.get(eng, "/containers/json", **query)
    found: list[dict[str, Any]] = data if isinstance(data, list) else []
    if found and http.is_podman(eng):
        states = {
            c.get("Id"): c.get("Status") for c in http.get(eng, f"{LIBPOD}/containers/json", **query) or []
        }
        for c in found:
            word = states.get(c.get("Id"))
            if word in ("healthy", "unhealthy", "starting"):
                c["Status"] = f"{c.get('Status', '')} ({'health: ' if word == 'starting' else ''}{word})"
    return found


@dataclass(frozen=True)
class ContainerState:
    project: str
    service: str
    session: str
    state: str  # running, exited, ...
    health: str | None  # healthy, unhealthy, starting, None
    exit_code: int


@edge
def containers(eng: Engine, *, repo_id: str, session: str | None = None) -> list[ContainerState]:
    """One engine query for every container of the repository's sessions (or of one)."""
    labels = [f"{LABEL_REPO}={repo_id}"]
    if session:
        labels.append(f"{LABEL_SESSION}={session}")
    found = []
    for c in _list_containers(eng, labels):
        lab = c.get("Labels") or {}
        status = c.get("Status", "")
        health = next((h for h in ("unhealthy", "healthy", "health: starting") if f"({h})" in status), None)
        exit_match = re.search(r"Exited \((\d+)\)", status)
        found.append(
            ContainerState(
                project=lab.get(LABEL_PROJECT, ""),
                service=lab.get(LABEL_SERVICE, ""),
                session=lab.get(LABEL_SESSION, ""),
                state=c.get("State", ""),
                health=None if health is None else health.replace("health: ", ""),
                exit_code=int(exit_match.group(1)) if exit_match else 0,
            )
        )
    return found


@dataclass(frozen=True)
class Restarts:
    service: str
    state: str  # running, restarting, exited, ...
    count: int  # the engine's RestartCount: restarts by the restart policy since the last start


@edge
def restarts(eng: Engine, *, project: str) -> dict[str, Restarts]:
    """Container id -> restart state, for every container of `project`."""
    found: dict[str, Restarts] = {}
    for c in _list_containers(eng, [f"{LABEL_PROJECT}={project}"]):
        data = http.get(eng, f"/containers/{c['Id']}/json")
        if data is None:
            continue  # gone meanwhile
        found[c["Id"]] = Restarts(
            service=(c.get("Labels") or {}).get(LABEL_SERVICE, "?"),
            state=str(data.get("State", {}).get("Status", "")),
            count=int(data.get("RestartCount") or 0),
        )
    return found


@edge
def published_ports(eng: Engine) -> set[int]:
    """Host ports the engine's running containers publish, whoever made them (remote leasing)."""
    found: set[int] = set()
    for c in http.get(eng, "/containers/json") or []:
        found |= {int(p["PublicPort"]) for p in c.get("Ports") or [] if p.get("PublicPort")}
    return found


@dataclass(frozen=True)
class Uptime:
    """A container's current run, as the engine counts it."""

    service: str
    state: str  # running, restarting, exited, ...
    exit_code: int
    restarts: int  # the engine's RestartCount
    started_at: str  # the engine's StartedAt: another value is another start
    up_for: float  # seconds since StartedAt by the engine's own clock; 0 when not running
    healthcheck: bool


@edge
def uptimes(eng: Engine, *, project: str) -> dict[str, Uptime]:
    """Container id -> its current run, for every container of `project` (readiness's
    min_uptime). Times are the engine's: a remote engine's clock may differ from ours."""
    now = _instant(str((http.get(eng, "/info") or {}).get("SystemTime") or "")) or time.time()
    found: dict[str, Uptime] = {}
    for c in _list_containers(eng, [f"{LABEL_PROJECT}={project}"]):
        state = http.get(eng, f"/containers/{c['Id']}/json")
        if state is None:
            continue  # gone meanwhile
        run = state.get("State") or {}
        started = str(run.get("StartedAt") or "")
        since = _instant(started)
        found[c["Id"]] = Uptime(
            service=(c.get("Labels") or {}).get(LABEL_SERVICE, "?"),
            state=str(run.get("Status", "")),
            exit_code=int(run.get("ExitCode") or 0),
            restarts=int(state.get("RestartCount") or 0),
            started_at=started,
            up_for=max(now - since, 0.0) if run.get("Running") and since is not None else 0.0,
            # Podman gives a container without a healthcheck {"Status": ""}, Docker no Health.
            healthcheck=bool((run.get("Health") or {}).get("Status")),
        )
    return found


def _instant(stamp: str) -> float | None:
    """The engine's RFC 3339 time (nanoseconds, `Z`) as a POSIX time; None when unset or unread."""
    import datetime

    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", stamp)
    if not match or match.group(1).startswith("0001-"):
        return None
    fraction = (match.group(2) or "")[:7]  # microseconds: what datetime holds
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.datetime.fromisoformat(match.group(1) + fraction + zone).timestamp()
