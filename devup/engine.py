"""The engine adapter: the docker SDK, and the engine's HTTP API over its socket for the queries
`ls` and `status` make on every call (loading the SDK would cost more than the whole command).

Everything devup asks the engine directly (not through Compose) goes through here: which
engine answers, containers and their states, volumes, and removing what gc finds.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup import faults
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
        # A container's anonymous volumes go with it (v); named ones are gc's to judge apart.
        obj.remove(
            **(
                {}
                if kind == "network"
                else {"force": True, "v": True}
                if kind == "container"
                else {"force": True}
            )
        )
    except NotFound:
        pass
    except APIError as exc:
        raise DevupError(f"cannot remove {kind} {name}: {exc.explanation}") from None


# --- data: volumes, pausing, copy helpers (SPEC §7, data.py) --------------------------------

LABEL_VOLUME = "com.docker.compose.volume"
LABEL_COMPOSE_VERSION = "com.docker.compose.version"
LABEL_HELPER = "dev.devup.helper"  # a copy helper container: the volume it writes to
# The copy's exit code when the image has no usable copy tool: stream through the API instead.
_NO_TOOL = 42

# GNU cp (reflink where the storage has it, holes kept), else busybox cp -a, else tar.
# The target is emptied first: a restore copies into a volume that holds other data.
_COPY_SCRIPT = """
set -e
find /to -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || rm -rf /to/* /to/.[!.]* /to/..?* 2>/dev/null || true
if cp --version 2>/dev/null | grep -q GNU; then
  cp -a --reflink=auto --sparse=auto /from/. /to/
elif cp -a /from/. /to/ 2>/dev/null; then
  :
elif command -v tar >/dev/null 2>&1; then
  (cd /from && tar -cf - .) | (cd /to && tar -xpf -)
else
  exit 42
fi
du -sk /to 2>/dev/null | cut -f1 || echo 0
"""


_EMPTY_SCRIPT = _COPY_SCRIPT.split("\n")[2] + "\necho 0\n"


class EngineError(DevupError):
    """The engine refused a data operation (a volume, a pause, a copy)."""


@dataclass(frozen=True)
class Volume:
    name: str
    labels: dict[str, str]
    created: str


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def volume_info(name: str) -> Volume | None:
    from docker.errors import NotFound

    try:
        v = client().volumes.get(name)
    except NotFound:
        return None
    return Volume(v.name, dict(v.attrs.get("Labels") or {}), str(v.attrs.get("CreatedAt", "")))


def volumes_with(labels: list[str]) -> list[Volume]:
    """Volumes carrying every one of `labels` (`key=value` or `key`)."""
    found = client().volumes.list(filters={"label": labels})
    return [
        Volume(v.name, dict(v.attrs.get("Labels") or {}), str(v.attrs.get("CreatedAt", ""))) for v in found
    ]


def create_volume(name: str, labels: dict[str, str]) -> None:
    """Create `name`; one that exists already is an error (the engine would hand it back silently)."""
    from docker.errors import APIError

    if volume_info(name) is not None:
        raise EngineError(f"volume {name} exists already; devup will not copy into it")
    try:
        client().volumes.create(name=name, labels=labels)
    except APIError as exc:
        raise EngineError(f"cannot create volume {name}: {_explain(exc)}") from None


def remove_volume(name: str) -> None:
    """Remove `name` and any copy helper still writing to it; already gone is success."""
    from docker.errors import APIError, NotFound

    remove_helpers(name)
    try:
        client().volumes.get(name).remove(force=True)
    except NotFound:
        return
    except APIError as exc:
        raise EngineError(f"cannot remove volume {name}: {_explain(exc)}") from None


def remove_helpers(target: str) -> None:
    """Kill copy helpers writing to `target`: a killed devup leaves its helper copying."""
    from docker.errors import APIError, NotFound

    for c in client().containers.list(all=True, filters={"label": f"{LABEL_HELPER}={target}"}):
        try:
            c.remove(force=True, v=True)  # v: the anonymous volume of the image's VOLUME, if any
        except NotFound:
            continue
        except APIError as exc:
            raise EngineError(f"cannot remove copy helper {c.name}: {_explain(exc)}") from None


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    project: str
    status: str  # running, paused, exited, ...
    image: str  # the image id
    mounts: list[str]  # names of the volumes it mounts


def containers_of(*, repo_id: str, session: str, projects: list[str]) -> list[Container]:
    """The containers of `projects` that belong to the session (copy helpers excepted)."""
    found = []
    labels = [f"{LABEL_REPO}={repo_id}", f"{LABEL_SESSION}={session}"]
    for c in client().api.containers(all=True, filters={"label": labels}):
        lab = c.get("Labels") or {}
        if LABEL_HELPER in lab or lab.get(LABEL_PROJECT) not in projects:
            continue
        found.append(
            Container(
                id=c["Id"],
                name=c["Names"][0].lstrip("/"),
                project=lab.get(LABEL_PROJECT, ""),
                status=c.get("State", ""),
                image=c.get("ImageID", ""),
                mounts=[
                    m["Name"] for m in c.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Name")
                ],
            )
        )
    return found


def _each(ids: list[str], action: str) -> None:
    from docker.errors import APIError, NotFound

    api = client().api
    for cid in ids:
        try:
            state = api.inspect_container(cid)["State"]
            if action == "pause" and state.get("Running") and not state.get("Paused"):
                api.pause(cid)
            elif action == "unpause" and state.get("Paused"):
                api.unpause(cid)
            elif action == "stop" and state.get("Running"):
                if state.get("Paused"):
                    api.unpause(cid)
                api.stop(cid, timeout=10)
            elif action == "start" and not state.get("Running"):
                api.start(cid)
        except NotFound:
            continue  # gone: nothing to pause or resume
        except APIError as exc:
            raise EngineError(f"cannot {action} container {cid[:12]}: {_explain(exc)}") from None


def pause(ids: list[str]) -> None:
    _each(ids, "pause")


def unpause(ids: list[str]) -> None:
    """Resume paused ones; running or gone ones are left as they are."""
    _each(ids, "unpause")


def stop(ids: list[str]) -> None:
    _each(ids, "stop")


def start(ids: list[str]) -> None:
    """Start the ones that are not running; running or gone ones are left as they are."""
    _each(ids, "start")


def wait_healthy(ids: list[str], *, timeout: float) -> list[str]:
    """Wait until each container runs (and is healthy, when it has a healthcheck); the names of
    those that did not get there in time."""
    from docker.errors import NotFound

    api = client().api
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        still = []
        for cid in pending:
            try:
                state = api.inspect_container(cid)["State"]
            except NotFound:
                continue
            health = (state.get("Health") or {}).get("Status")
            if not (state.get("Running") and health in (None, "healthy")):
                still.append(cid)
        pending = still
        if pending:
            time.sleep(0.2)
    return [cid[:12] for cid in pending]


def image_exists(image: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client().images.get(image)
    except ImageNotFound:
        return False
    return True


def copy_volume(
    *, source: str | None, target: str, image: str, labels: dict[str, str], phase: str = "copy"
) -> int:
    """Copy `source`'s files into `target` (emptied first) on the engine; returns the bytes copied.

    A helper container of `image` (already on the engine: never pulled) mounts the source
    read-only; an image without sh, cp or tar is streamed through the engine API instead.
    Ownership, modes, symlinks and holes are kept (PostgreSQL refuses a data directory with
    the wrong owner or mode).
    """
    from docker.errors import APIError, ContainerError, ImageNotFound

    for name in (source, target):
        # The engine would create a missing volume on mount, empty and unlabelled: a copy from
        # it would look like a copy (a snapshot removed meanwhile, a copy-back run twice).
        if name is not None and volume_info(name) is None:
            raise EngineError(f"cannot copy volume {source} into {target}: volume {name} does not exist")
    remove_helpers(target)
    mounts = {target: {"bind": "/to", "mode": "rw"}}
    if source is not None:
        mounts[source] = {"bind": "/from", "mode": "ro"}
    script = _COPY_SCRIPT if source is not None else _EMPTY_SCRIPT
    helper_labels = {**labels, LABEL_HELPER: target}
    try:
        container = client().containers.create(
            image,
            entrypoint=["sh", "-c", script],
            command=[],
            volumes=mounts,
            user="0:0",
            network_disabled=True,
            labels=helper_labels,
            working_dir="/",
        )
    except ImageNotFound:
        raise EngineError(f"image {image} is not on the engine; devup pulls no image for a copy") from None
    except APIError as exc:
        raise EngineError(f"cannot create a copy helper from {image}: {_explain(exc)}") from None
    try:
        try:
            container.start()
            faults.hit(f"during:{phase}")  # a test kills devup here: the helper copies on
        except APIError:
            return _stream(container.id, target, image, helper_labels)  # no sh in the image
        code = int(container.wait().get("StatusCode", 1))
        out = container.logs(stdout=True, stderr=True).decode(errors="replace")
        if code in (_NO_TOOL, 126, 127) and source is not None:
            return _stream(container.id, target, image, helper_labels)
        if code != 0:
            raise EngineError(
                f"copying volume {source} into {target} failed (helper exit {code}): {out.strip()[-800:]}"
            )
        lines = out.strip().splitlines()
        return int(lines[-1]) * 1024 if lines and lines[-1].strip().isdigit() else 0
    except ContainerError as exc:
        raise EngineError(f"copying volume {source} into {target} failed: {exc}") from None
    finally:
        _remove_quietly(container)


def _remove_quietly(container: Any) -> None:
    from docker.errors import APIError, NotFound

    with contextlib.suppress(NotFound, APIError):
        # v: a helper of the service's own image gets an anonymous volume for each VOLUME the
        # image declares (PostgreSQL's data directory); it goes with the helper.
        container.remove(force=True, v=True)


def _stream(cid: str, target: str, image: str, labels: dict[str, str]) -> int:
    """get_archive of /from piped into put_archive of /to, ownership kept (copyUIDGID).

    The writer is a second (never started) container: the engine holds a container's lock for
    the whole of an archive request, so reading and writing through one container deadlocks.
    """
    from docker.errors import APIError

    api = client().api
    size = 0
    writer = client().containers.create(
        image,
        command=["-"],
        volumes={target: {"bind": "/to", "mode": "rw"}},
        labels=labels,
        network_disabled=True,
    )
    try:
        # The target may hold the data a restore replaces: empty it through the API too.
        _empty_via_api(writer.id)
        stream, _ = api.get_archive(cid, "/from/.", chunk_size=1 << 20)

        def counted() -> Iterator[bytes]:
            nonlocal size
            for chunk in stream:
                size += len(chunk)
                yield chunk

        url = api._url("/containers/{0}/archive", writer.id)
        response = api._put(url, params={"path": "/to", "copyUIDGID": "1"}, data=counted())
        api._raise_for_status(response)
    except APIError as exc:
        raise EngineError(f"streaming into volume {target} failed: {_explain(exc)}") from None
    finally:
        _remove_quietly(writer)
    return size


def _empty_via_api(cid: str) -> None:
    """An image with no tool cannot `rm`: a target that holds files is refused (only a restore
    copies into a full volume, and it uses the session's own image, which has a shell)."""
    import io
    import tarfile

    api = client().api
    stream, _ = api.get_archive(cid, "/to/.")
    data = io.BytesIO(b"".join(stream))
    with tarfile.open(fileobj=data) as tar:
        names = [m.name for m in tar.getmembers() if m.name not in (".", "./")]
    if names:
        raise EngineError("the copy helper's image has no shell to empty the target volume with")
