"""The engine adapter: the docker SDK, and the engine's HTTP API over its socket for the queries
`ls` and `status` make on every call (loading the SDK would cost more than the whole command).

Everything devup asks the engine directly (not through Compose) goes through here: which
engine answers, containers and their states, volumes, and removing what gc finds.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup.errors import DevupError, EngineUnavailable

LABEL_SESSION = "dev.devup.session"
LABEL_REPO = "dev.devup.repo"
LABEL_GROUP = "dev.devup.group"
LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"


def docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


@functools.cache
def client() -> Any:
    """A docker SDK client honouring DOCKER_HOST and the current docker context."""
    import docker
    from docker.errors import DockerException

    try:
        kwargs: dict[str, Any] = {"timeout": 30}
        if not os.environ.get("DOCKER_HOST"):
            host = _context_host()
            if host:
                kwargs["base_url"] = host
        host = kwargs.get("base_url") or os.environ.get("DOCKER_HOST", "")
        if host.startswith("ssh://"):
            from devup import sshproxy  # the user's ssh, as the docker CLI uses it; no paramiko

            kwargs["base_url"] = sshproxy.socket_for(host)
        if "base_url" in kwargs:
            return docker.DockerClient(**kwargs)
        return docker.from_env(**kwargs)
    except DockerException as exc:
        raise EngineUnavailable(
            f"the Docker engine does not answer: {exc}",
            hint="start it (e.g. `sudo systemctl start docker` or `sudo dockerd &`), "
            "or point DOCKER_HOST at one; `devup doctor` checks",
        ) from None


def _context_host() -> str | None:
    """The engine address of the current docker context, read from the CLI's own files."""
    config_dir = docker_config_dir()
    context = os.environ.get("DOCKER_CONTEXT")
    if not context:
        try:
            context = json.loads((config_dir / "config.json").read_text()).get("currentContext")
        except (OSError, ValueError):
            return None
    if not context or context == "default":
        return None
    for meta in (config_dir / "contexts" / "meta").glob("*/meta.json"):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if data.get("Name") == context:
            host = data.get("Endpoints", {}).get("docker", {}).get("Host")
            return str(host) if host else None
    return None


def engine_version(*, attempts: int = 5) -> str:
    """The engine's version; an engine that does not answer is retried with backoff for ~4 s
    (0.25, 0.5, 1, 2 s between attempts), so that a blip or a dockerd restart is ridden out."""
    from docker.errors import DockerException
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    try:
        for attempt in Retrying(
            # client() reports an engine it cannot reach as EngineUnavailable: retried too.
            retry=retry_if_exception_type((DockerException, EngineUnavailable)),
            wait=wait_exponential(multiplier=0.25, max=2),
            stop=stop_after_attempt(attempts),
            reraise=True,
        ):
            with attempt:
                return str(client().version().get("Version", "?"))
        raise AssertionError("unreachable")
    except DockerException as exc:
        raise EngineUnavailable(
            f"the Docker engine does not answer: {exc}",
            hint="start it (e.g. `sudo systemctl start docker` or `sudo dockerd &`); `devup doctor` checks",
        ) from None


def foreign_objects(*, project: str, volume_names: list[str], session: str, repo_id: str) -> list[str]:
    """Containers or volumes of `project` (or at the volume names it will use) that do not
    carry this session's identity: devup adopts only what is its own (SPEC §5.6)."""
    from docker.errors import NotFound

    mine = {LABEL_SESSION: session, LABEL_REPO: repo_id}

    def foreign(labels: dict[str, str] | None) -> bool:
        return any((labels or {}).get(k) != v for k, v in mine.items())

    found = [
        f"container {c['Names'][0].lstrip('/')}"
        for c in client().api.containers(all=True, filters={"label": f"{LABEL_PROJECT}={project}"})
        if foreign(c.get("Labels"))
    ]
    seen: set[str] = set()
    for v in client().volumes.list(filters={"label": f"{LABEL_PROJECT}={project}"}):
        seen.add(v.name)
        if foreign(v.attrs.get("Labels")):
            found.append(f"volume {v.name}")
    for name in volume_names:
        if name in seen:
            continue
        try:
            volume = client().volumes.get(name)
        except NotFound:
            continue
        if foreign(volume.attrs.get("Labels")):
            found.append(f"volume {name}")
    return found


def volumes(*, project: str) -> set[str]:
    return {v.name for v in client().volumes.list(filters={"label": f"{LABEL_PROJECT}={project}"})}


def remove_volumes(*, project: str, session: str, repo_id: str, keep: set[str]) -> None:
    """Remove the project's volumes that carry this session's labels, except `keep`."""
    from docker.errors import APIError, NotFound

    labels = [f"{LABEL_PROJECT}={project}", f"{LABEL_SESSION}={session}", f"{LABEL_REPO}={repo_id}"]
    for volume in client().volumes.list(filters={"label": labels}):
        if volume.name in keep:
            continue
        try:
            volume.remove(force=True)
        except NotFound:
            pass
        except APIError as exc:
            raise DevupError(f"cannot remove volume {volume.name}: {exc.explanation}") from None


def _engine_socket() -> str | None:
    """The engine's unix socket (an ssh engine's local forwarder), or None when it is reached
    another way (tcp, TLS)."""
    host = os.environ.get("DOCKER_HOST") or _context_host() or "unix:///var/run/docker.sock"
    if host.startswith("ssh://"):
        from devup import sshproxy

        host = sshproxy.socket_for(host)
    return host.removeprefix("unix://") if host.startswith("unix://") else None


def _plain_tcp() -> tuple[str, int] | None:
    """(host, port) of an engine reached by tcp:// without TLS (a remote `ls` stays SDK-free)."""
    host = os.environ.get("DOCKER_HOST", "")
    if (
        not host.startswith("tcp://")
        or os.environ.get("DOCKER_TLS_VERIFY")
        or os.environ.get("DOCKER_CERT_PATH")
    ):
        return None
    import urllib.parse

    parts = urllib.parse.urlsplit(host)
    return (parts.hostname, parts.port or 2375) if parts.hostname else None


def _list_containers(labels: list[str]) -> list[dict[str, Any]]:
    """`GET /containers/json` by label. On a local socket, plain http.client: `ls` and `status`
    run this on every call, and loading the docker SDK would cost more than the whole command."""
    path = _engine_socket()
    tcp = _plain_tcp()
    if path is None and tcp is None:
        return list(client().api.containers(all=True, filters={"label": labels}))
    import http.client
    import socket
    import urllib.parse

    class UnixHTTPConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(self.timeout)
            self.sock.connect(str(path))

    query = urllib.parse.urlencode({"all": "1", "filters": json.dumps({"label": labels})})
    conn = (
        UnixHTTPConnection("localhost", timeout=30)
        if tcp is None
        else http.client.HTTPConnection(*tcp, timeout=10)
    )
    try:
        conn.request("GET", f"/containers/json?{query}")
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise EngineUnavailable(
            f"the Docker engine does not answer at {path or os.environ.get('DOCKER_HOST')}: {exc.strerror or exc}",
            hint="start it (e.g. `sudo systemctl start docker` or `sudo dockerd &`); `devup doctor` checks",
        ) from None
    finally:
        conn.close()
    if response.status != 200:
        raise DevupError(f"the Docker engine answered {response.status} to a container query: {body[:200]!r}")
    data = json.loads(body)
    return data if isinstance(data, list) else []


@dataclass(frozen=True)
class ContainerState:
    project: str
    service: str
    session: str
    state: str  # running, exited, ...
    health: str | None  # healthy, unhealthy, starting, None
    exit_code: int


def containers(*, repo_id: str, session: str | None = None) -> list[ContainerState]:
    """One engine query for every container of the repository's sessions (or of one)."""
    labels = [f"{LABEL_REPO}={repo_id}"]
    if session:
        labels.append(f"{LABEL_SESSION}={session}")
    found = []
    for c in _list_containers(labels):
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


def restarts(*, project: str) -> dict[str, Restarts]:
    """Container id -> restart state, for every container of `project`."""
    from docker.errors import NotFound

    found: dict[str, Restarts] = {}
    api = client().api
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


def published_ports() -> set[int]:
    """Host ports the engine's running containers publish, whoever made them (remote leasing)."""
    found: set[int] = set()
    for c in client().api.containers():
        found |= {int(p["PublicPort"]) for p in c.get("Ports") or [] if p.get("PublicPort")}
    return found


@dataclass(frozen=True)
class Labelled:
    """A container, network or volume carrying a repository's label (what gc looks at)."""

    kind: str  # "container" | "network" | "volume"
    name: str
    session: str  # its session label, "?" when it has none


def labelled(*, repo_id: str) -> list[Labelled]:
    """Every container (running or not), network and volume labelled with repository `repo_id`."""
    api = client()
    label = [f"{LABEL_REPO}={repo_id}"]

    def session_of(labels: dict[str, str] | None) -> str:
        return (labels or {}).get(LABEL_SESSION, "?")

    found = [
        Labelled("container", c.name, session_of(c.labels))
        for c in api.containers.list(all=True, filters={"label": label})
    ]
    found += [
        Labelled("network", n.name, session_of(n.attrs.get("Labels")))
        for n in api.networks.list(filters={"label": label})
    ]
    found += [
        Labelled("volume", v.name, session_of(v.attrs.get("Labels")))
        for v in api.volumes.list(filters={"label": label})
    ]
    return found


def remove(kind: str, name: str) -> None:
    """Remove a container (force), network or volume by name; already gone is success."""
    from docker.errors import APIError, NotFound

    collection = {"container": client().containers, "network": client().networks, "volume": client().volumes}[
        kind
    ]
    try:
        obj = collection.get(name)
        obj.remove(**({} if kind == "network" else {"force": True}))
    except NotFound:
        pass
    except APIError as exc:
        raise DevupError(f"cannot remove {kind} {name}: {exc.explanation}") from None
