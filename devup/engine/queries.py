"""Read-only container queries: states for `ls` and `status` (over raw HTTP on a local socket,
no SDK), restarts and uptimes for readiness, and the ports running containers publish."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from devup.engine.client import LIBPOD, client, edge, is_podman, libpod, unavailable
from devup.engine.labels import LABEL_PROJECT, LABEL_REPO, LABEL_SERVICE, LABEL_SESSION
from devup.errors import DevupError
from devup.remote import Engine


def _engine_socket(eng: Engine) -> str | None:
    """The engine's unix socket (an ssh engine's local forwarder), or None when it is reached
    another way (tcp, TLS)."""
    host = eng.host
    if host.startswith("ssh://"):
        from devup import sshproxy

        host = sshproxy.socket_for(host)
    return host.removeprefix("unix://") if host.startswith("unix://") else None


def _plain_tcp(eng: Engine) -> tuple[str, int] | None:
    """(host, port) of an engine reached by tcp:// without TLS (a remote `ls` stays SDK-free)."""
    host, env = eng.host, eng.environ()
    if not host.startswith("tcp://") or env.get("DOCKER_TLS_VERIFY") or env.get("DOCKER_CERT_PATH"):
        return None
    import urllib.parse

    parts = urllib.parse.urlsplit(host)
    return (parts.hostname, parts.port or 2375) if parts.hostname else None


def _list_containers(eng: Engine, labels: list[str]) -> list[dict[str, Any]]:
    """`GET /containers/json` by label. On a local socket, plain http.client: `ls` and `status`
    run this on every call, and loading the docker SDK would cost more than the whole command.

    Podman's answer (its Libpod-Api-Version header says so) carries no health in `Status`: libpod's
    own list has it, and it is put there as Docker words it ("Up (healthy)")."""
    query = urllib.parse.urlencode({"all": "1", "filters": json.dumps({"label": labels})})
    if _engine_socket(eng) is None and _plain_tcp(eng) is None:
        found = list(client(eng).api.containers(all=True, filters={"label": labels}))
        podman = is_podman(eng)
        health = libpod(eng, "GET", f"/containers/json?{query}") if podman and found else None
    else:
        found, podman = _get(eng, f"/containers/json?{query}")
        health = _get(eng, f"{LIBPOD}/containers/json?{query}")[0] if podman and found else None
    if health is not None:
        states = {c.get("Id"): c.get("Status") for c in health if isinstance(c, dict)}
        for c in found:
            if states.get(c.get("Id")) in ("healthy", "unhealthy", "starting"):
                word = states[c.get("Id")]
                c["Status"] = f"{c.get('Status', '')} ({'health: ' if word == 'starting' else ''}{word})"
    return found


def _get(eng: Engine, path: str) -> tuple[list[dict[str, Any]], bool]:
    """A GET on the engine's local socket or plain tcp: its JSON list, and whether Podman answered."""
    import http.client
    import socket

    sock_path, tcp = _engine_socket(eng), _plain_tcp(eng)

    class UnixHTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(str(sock_path))

    conn = (
        UnixHTTPConnection("localhost", timeout=30)
        if tcp is None
        else http.client.HTTPConnection(*tcp, timeout=10)
    )
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise unavailable(eng, exc.strerror or exc) from None
    finally:
        conn.close()
    if response.status != 200:
        raise DevupError(f"the Docker engine answered {response.status} to a container query: {body[:200]!r}")
    data = json.loads(body)
    return (data if isinstance(data, list) else []), response.getheader("Libpod-Api-Version") is not None


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
    from docker.errors import NotFound

    found: dict[str, Restarts] = {}
    api = client(eng).api
    for c in api.containers(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}):
        try:
            data = api.inspect_container(c["Id"])
        except NotFound:
            continue
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
    for c in client(eng).api.containers():
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
    from docker.errors import NotFound

    api = client(eng).api
    now = _instant(str(api.info().get("SystemTime") or "")) or time.time()
    found: dict[str, Uptime] = {}
    for c in api.containers(all=True, filters={"label": f"{LABEL_PROJECT}={project}"}):
        try:
            state = api.inspect_container(c["Id"])
        except NotFound:
            continue
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
