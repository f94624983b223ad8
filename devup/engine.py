"""The engine adapter: the docker SDK, and the engine's HTTP API over its socket for the queries
`ls` and `status` make on every call (loading the SDK would cost more than the whole command).

Everything devup asks the engine directly (not through Compose) goes through here: which
engine answers, containers and their states, volumes, and removing what gc finds.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar, cast

from devup import faults
from devup.errors import DevupError, EngineError, EngineUnavailable
from devup.remote import Engine

LABEL_SESSION = "dev.devup.session"
LABEL_REPO = "dev.devup.repo"
LABEL_GROUP = "dev.devup.group"
LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"


_START_HINT = "start it (e.g. `sudo systemctl start docker` or `sudo dockerd &`); `devup doctor` checks"


def unavailable(eng: Engine, why: object) -> EngineUnavailable:
    """The one wording of "the engine does not answer", naming the engine (SPEC §2: exit 1)."""
    return EngineUnavailable(f"the Docker engine {_named(eng)} does not answer: {why}", hint=_START_HINT)


def _named(eng: Engine) -> str:
    """How an error names the engine: its endpoint, and the context it came from."""
    return f"{eng.host} (context {eng.context})" if eng.context not in (None, "default") else eng.host


@functools.cache
def client(eng: Engine) -> Any:
    """A docker SDK client for `eng` (one per engine for the process), built from the value:
    its host, and the TLS files of its context or the user's own TLS settings."""
    import docker
    from docker.errors import DockerException

    try:
        environment = eng.environ()
        if eng.host.startswith("ssh://"):
            from devup import sshproxy  # the user's ssh, as the docker CLI uses it; no paramiko

            environment["DOCKER_HOST"] = sshproxy.socket_for(eng.host)
        return docker.from_env(timeout=30, environment=environment)
    except DockerException as exc:
        raise unavailable(eng, exc) from None


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _foreign(exc: BaseException) -> bool:
    """An exception of the docker SDK or the HTTP stack under it (never imported to check)."""
    return type(exc).__module__.split(".")[0] in ("docker", "requests", "urllib3", "http")


def edge(fn: _Fn) -> _Fn:
    """Translate the SDK's exceptions at this adapter's edge: an engine that cannot be reached is
    EngineUnavailable naming it, any other refusal an EngineError; none escapes as "a bug"."""

    @functools.wraps(fn)
    def translated(eng: Engine, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(eng, *args, **kwargs)
        except Exception as exc:
            if isinstance(exc, DevupError) or not (_foreign(exc) or isinstance(exc, ConnectionError)):
                raise
            if getattr(exc, "response", None) is None or isinstance(exc, ConnectionError):
                raise unavailable(eng, _explain(exc)) from None
            raise EngineError(f"the Docker engine {_named(eng)} refused a request: {_explain(exc)}") from None

    return translated  # type: ignore[return-value]


@edge
def engine_version(eng: Engine, *, attempts: int = 5) -> str:
    """The engine's version; an engine that does not answer is retried with backoff for ~4 s
    (0.25, 0.5, 1, 2 s between attempts), so that a blip or a dockerd restart is ridden out."""
    from docker.errors import DockerException
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    retrying = Retrying(
        # client(eng) reports an engine it cannot reach as EngineUnavailable: retried too.
        retry=retry_if_exception_type((DockerException, EngineUnavailable, ConnectionError)),
        wait=wait_exponential(multiplier=0.25, max=2),
        stop=stop_after_attempt(attempts),
        reraise=True,
    )
    return str(retrying(lambda: client(eng).version().get("Version", "?")))


@edge
def foreign_objects(
    eng: Engine, *, project: str, volume_names: list[str], session: str, repo_id: str
) -> list[str]:
    """Containers or volumes of `project` (or at the volume names it will use) that do not
    carry this session's identity: devup adopts only what is its own (SPEC §5.6)."""
    from docker.errors import NotFound

    mine = {LABEL_SESSION: session, LABEL_REPO: repo_id}

    def foreign(labels: dict[str, str] | None) -> bool:
        return any((labels or {}).get(k) != v for k, v in mine.items())

    found = [
        f"container {c['Names'][0].lstrip('/')}"
        for c in client(eng).api.containers(all=True, filters={"label": f"{LABEL_PROJECT}={project}"})
        if foreign(c.get("Labels"))
    ]
    seen: set[str] = set()
    for v in client(eng).volumes.list(filters={"label": f"{LABEL_PROJECT}={project}"}):
        seen.add(v.name)
        if foreign(v.attrs.get("Labels")):
            found.append(f"volume {v.name}")
    for name in volume_names:
        if name in seen:
            continue
        try:
            volume = client(eng).volumes.get(name)
        except NotFound:
            continue
        if foreign(volume.attrs.get("Labels")):
            found.append(f"volume {name}")
    return found


@edge
def volumes(eng: Engine, *, project: str) -> set[str]:
    return {v.name for v in client(eng).volumes.list(filters={"label": f"{LABEL_PROJECT}={project}"})}


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
    run this on every call, and loading the docker SDK would cost more than the whole command."""
    path = _engine_socket(eng)
    tcp = _plain_tcp(eng)
    if path is None and tcp is None:
        return list(client(eng).api.containers(all=True, filters={"label": labels}))
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
        raise unavailable(eng, exc.strerror or exc) from None
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
class Labelled:
    """A container, network or volume carrying a repository's label (what gc looks at)."""

    kind: str  # "container" | "network" | "volume"
    name: str
    session: str  # its session label, "?" when it has none


@edge
def labelled(eng: Engine, *, repo_id: str) -> list[Labelled]:
    """Every container (running or not), network and volume labelled with repository `repo_id`."""
    api = client(eng)
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


@edge
def remove(eng: Engine, kind: str, name: str) -> None:
    """Remove a container (force), network or volume by name; already gone is success."""
    from docker.errors import APIError, NotFound

    collection = {
        "container": client(eng).containers,
        "network": client(eng).networks,
        "volume": client(eng).volumes,
    }[kind]
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


@dataclass(frozen=True)
class Volume:
    name: str
    labels: dict[str, str]
    created: str
    options: dict[str, str] | None = None  # the driver's options (`driver_opts`)


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)


@edge
def volume_info(eng: Engine, name: str) -> Volume | None:
    from docker.errors import NotFound

    try:
        v = client(eng).volumes.get(name)
    except NotFound:
        return None
    return Volume(v.name, dict(v.attrs.get("Labels") or {}), str(v.attrs.get("CreatedAt", "")))


@edge
def volumes_with(eng: Engine, labels: list[str]) -> list[Volume]:
    """Volumes carrying every one of `labels` (`key=value` or `key`)."""
    found = client(eng).volumes.list(filters={"label": labels})
    return [
        Volume(
            v.name,
            dict(v.attrs.get("Labels") or {}),
            str(v.attrs.get("CreatedAt", "")),
            dict(v.attrs.get("Options") or {}),
        )
        for v in found
    ]


@edge
def create_volume(eng: Engine, name: str, labels: dict[str, str]) -> None:
    """Create `name`; one that exists already is an error (the engine would hand it back silently)."""
    from docker.errors import APIError

    if volume_info(eng, name) is not None:
        raise EngineError(f"volume {name} exists already; devup will not copy into it")
    try:
        client(eng).volumes.create(name=name, labels=labels)
    except APIError as exc:
        raise EngineError(f"cannot create volume {name}: {_explain(exc)}") from None


@edge
def remove_volume(eng: Engine, name: str) -> None:
    """Remove `name` and any copy helper still writing to it; already gone is success."""
    from docker.errors import APIError, NotFound

    remove_helpers(eng, name)
    try:
        client(eng).volumes.get(name).remove(force=True)
    except NotFound:
        return
    except APIError as exc:
        raise EngineError(f"cannot remove volume {name}: {_explain(exc)}") from None


@edge
def remove_helpers(eng: Engine, target: str) -> None:
    """Kill copy helpers writing to `target`: a killed devup leaves its helper copying."""
    from docker.errors import APIError, NotFound

    for c in client(eng).containers.list(all=True, filters={"label": f"{LABEL_HELPER}={target}"}):
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


@edge
def containers_of(eng: Engine, *, repo_id: str, session: str, projects: list[str]) -> list[Container]:
    """The containers of `projects` that belong to the session (copy helpers excepted)."""
    found = []
    labels = [f"{LABEL_REPO}={repo_id}", f"{LABEL_SESSION}={session}"]
    for c in client(eng).api.containers(all=True, filters={"label": labels}):
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


@edge
def _each(eng: Engine, ids: list[str], action: str) -> None:
    from docker.errors import APIError, NotFound

    api = client(eng).api
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


def pause(eng: Engine, ids: list[str]) -> None:
    _each(eng, ids, "pause")


def unpause(eng: Engine, ids: list[str]) -> None:
    """Resume paused ones; running or gone ones are left as they are."""
    _each(eng, ids, "unpause")


def stop(eng: Engine, ids: list[str]) -> None:
    _each(eng, ids, "stop")


def start(eng: Engine, ids: list[str]) -> None:
    """Start the ones that are not running; running or gone ones are left as they are."""
    _each(eng, ids, "start")


@edge
def wait_healthy(eng: Engine, ids: list[str], *, timeout: float) -> list[str]:
    """Wait until each container runs (and is healthy, when it has a healthcheck); the names of
    those that did not get there in time."""
    from docker.errors import NotFound

    api = client(eng).api
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


@edge
def image_exists(eng: Engine, image: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client(eng).images.get(image)
    except ImageNotFound:
        return False
    return True


@edge
def copy_volume(
    eng: Engine, *, source: str | None, target: str, image: str, labels: dict[str, str], phase: str = "copy"
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
        if name is not None and volume_info(eng, name) is None:
            raise EngineError(f"cannot copy volume {source} into {target}: volume {name} does not exist")
    remove_helpers(eng, target)
    mounts = {target: {"bind": "/to", "mode": "rw"}}
    if source is not None:
        mounts[source] = {"bind": "/from", "mode": "ro"}
    script = _COPY_SCRIPT if source is not None else _EMPTY_SCRIPT
    helper_labels = {**labels, LABEL_HELPER: target}
    try:
        container = client(eng).containers.create(
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
            return _stream(eng, container.id, target, image, helper_labels)  # no sh in the image
        code = int(container.wait().get("StatusCode", 1))
        out = container.logs(stdout=True, stderr=True).decode(errors="replace")
        if code in (_NO_TOOL, 126, 127) and source is not None:
            return _stream(eng, container.id, target, image, helper_labels)
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


def _stream(eng: Engine, cid: str, target: str, image: str, labels: dict[str, str]) -> int:
    """get_archive of /from piped into put_archive of /to, ownership kept (copyUIDGID).

    The writer is a second (never started) container: the engine holds a container's lock for
    the whole of an archive request, so reading and writing through one container deadlocks.
    """
    from docker.errors import APIError

    api = client(eng).api
    size = 0
    writer = client(eng).containers.create(
        image,
        command=["-"],
        volumes={target: {"bind": "/to", "mode": "rw"}},
        labels=labels,
        network_disabled=True,
    )
    try:
        # The target may hold the data a restore replaces: empty it through the API too.
        _empty_via_api(eng, writer.id)
        stream, _ = api.get_archive(cid, "/from/.", chunk_size=1 << 20)

        def counted() -> Iterator[bytes]:
            nonlocal size
            for chunk in stream:
                size += len(chunk)
                yield chunk

        # put_archive has no copyUIDGID: the same request through the client's public requests
        # session (ownership kept: PostgreSQL refuses a data directory of another owner).
        url = f"{api.base_url}/v{api.api_version}/containers/{writer.id}/archive"
        response = api.put(url, params={"path": "/to", "copyUIDGID": "1"}, data=counted())
        if response.status_code >= 400:
            raise EngineError(
                f"streaming into volume {target} failed: {response.status_code} {response.text[:300]}"
            )
    except APIError as exc:
        raise EngineError(f"streaming into volume {target} failed: {_explain(exc)}") from None
    finally:
        _remove_quietly(writer)
    return size


def _empty_via_api(eng: Engine, cid: str) -> None:
    """An image with no tool cannot `rm`: a target that holds files is refused (only a restore
    copies into a full volume, and it uses the session's own image, which has a shell)."""
    import tarfile

    stream, _ = client(eng).api.get_archive(cid, "/to/.")
    # Read as a stream and stop at the first member past the folder itself: a multi-GB volume is
    # never held in memory just to learn that it is not empty.
    with tarfile.open(fileobj=cast(IO[bytes], _ChunkReader(stream)), mode="r|") as tar:
        holds_files = any(m.name not in (".", "./") for m in tar)
    if holds_files:
        raise EngineError("the copy helper's image has no shell to empty the target volume with")


class _ChunkReader:
    """A file-like `read` over an iterator of byte chunks (tarfile's stream mode needs one)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buffer = iter(chunks), b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        found, self._buffer = self._buffer[:size], self._buffer[size:]
        return found


@edge
def sweep_project(
    eng: Engine, *, project: str, session: str, repo_id: str, keep_volumes: set[str], settle: float = 15.0
) -> list[str]:
    """Remove what is still on the engine of this session's `project` after `compose down`, and
    confirm through the engine that nothing is left; what cannot be removed within `settle`
    seconds is returned ("container x", ...), never hidden.

    Compose can fail on one container while the engine is still creating its siblings: those
    creates land after `down` listed the project (compose-corpus.md: 5 of 11 such rollbacks left
    containers in state `created`). So the project is listed again until two looks in a row,
    a moment apart, find nothing.
    """
    from docker.errors import APIError, NotFound

    api = client(eng).api
    labels = [f"{LABEL_PROJECT}={project}", f"{LABEL_SESSION}={session}", f"{LABEL_REPO}={repo_id}"]
    deadline = time.monotonic() + settle
    quiet = 0
    while True:
        found = [
            ("container", c["Id"], c["Names"][0].lstrip("/"))
            for c in api.containers(all=True, filters={"label": labels})
        ]
        found += [("network", n["Id"], n["Name"]) for n in api.networks(filters={"label": labels})]
        found += [
            ("volume", v["Name"], v["Name"])
            for v in api.volumes(filters={"label": labels}).get("Volumes") or []
            if v["Name"] not in keep_volumes
        ]
        if not found:
            quiet += 1
            if quiet >= 2:
                return []
        else:
            quiet = 0
            for kind, ident, _ in found:
                with contextlib.suppress(NotFound, APIError):  # judged again at the next look
                    if kind == "container":
                        api.remove_container(ident, force=True, v=True)
                    elif kind == "network":
                        api.remove_network(ident)
                    else:
                        api.remove_volume(ident, force=True)
        if time.monotonic() >= deadline:
            return [f"{kind} {name}" for kind, _, name in found]
        time.sleep(0.3)


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
            healthcheck=run.get("Health") is not None,
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
