"""Which Docker engine a session runs on (SPEC §6): the `Engine` value and how it is chosen.

A session records its engine ({"context", "host"}) when it is created; every later command on it
is handed that value, whatever the environment says then: a cleanup run from a shell pointed
elsewhere must not look at the wrong engine and find nothing to remove (guarantee 10). The value
is passed down to the adapters (its client, the environment of compose children); nothing here
or anywhere writes DOCKER_HOST into this process's environment.

No docker SDK here: `ls` reads engines from the records and must start fast.
"""

from __future__ import annotations

import functools
import json
import os
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup.errors import UsageError

DEFAULT_HOST = "unix:///var/run/docker.sock"
LOCAL_ADDRESS = "127.0.0.1"


@dataclass(frozen=True)
class Engine:
    context: str | None  # the docker context it was chosen by, None for DOCKER_HOST
    host: str  # the endpoint: unix:///…, tcp://host:port, ssh://user@host

    @property
    def remote(self) -> bool:
        """A unix socket (or named pipe, fd) or a loopback address is local; anything else remote."""
        return not _is_local(self.host)

    @property
    def address(self) -> str:
        """DEVUP_HOST: where the session's published ports answer, as seen from this machine."""
        if not self.remote:
            return LOCAL_ADDRESS
        name = urllib.parse.urlsplit(self.host).hostname or LOCAL_ADDRESS
        if self.host.startswith("ssh://"):
            # An ssh endpoint may name a `Host` alias of the user's ssh config, which only ssh
            # resolves: ask ssh which machine it would connect to.
            return _ssh_hostname(name)
        return name

    @property
    def label(self) -> str:
        """How `ls` and `status` show it."""
        if not self.remote:
            return "local" if self.context in (None, "default") else f"{self.context} (local)"
        return f"{self.context} ({self.host})" if self.context else self.host

    def to_json(self) -> dict[str, Any]:
        return {"context": self.context, "host": self.host}

    def variables(self) -> dict[str, str | None]:
        """The DOCKER_* variables a child talking to this engine must see (None: unset).

        DOCKER_CONTEXT goes: it would override DOCKER_HOST. An engine chosen by a context brings
        that context's TLS files, or none (a TLS setting of the shell is for another engine); one
        chosen by DOCKER_HOST keeps the user's own TLS settings with it.
        """
        found: dict[str, str | None] = {"DOCKER_HOST": self.host, "DOCKER_CONTEXT": None}
        if self.context is not None:
            tls = _tls_dir(self.context)
            found["DOCKER_CERT_PATH"] = str(tls) if tls else None
            found["DOCKER_TLS_VERIFY"] = "1" if tls else None
        return found

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`base` (default: this process's environment) pointed at this engine, for a child."""
        merged = dict(os.environ if base is None else base)
        for key, value in self.variables().items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    @staticmethod
    def from_json(data: Any) -> Engine | None:
        """The engine of a record or journal; None when it predates engine recording."""
        if not isinstance(data, dict) or not isinstance(data.get("host"), str) or not data["host"]:
            return None
        context = data.get("context")
        return Engine(context if isinstance(context, str) else None, data["host"])


@functools.cache
def _ssh_hostname(name: str) -> str:
    """`HostName` of `name` in the user's ssh config (`ssh -G`), else `name` itself."""
    from devup import runner

    result = runner.run(["ssh", "-G", name], timeout=10, merge_stderr=False)
    for line in result.output.splitlines() if result.ok else []:
        key, _, value = line.partition(" ")
        if key == "hostname" and value.strip():
            return value.strip()
    return name


def url_host(address: str) -> str:
    """`address` as the host part of a URL (an IPv6 literal in brackets)."""
    return f"[{address}]" if ":" in address else address


def _is_local(host: str) -> bool:
    scheme, _, rest = host.partition("://")
    if scheme in ("unix", "npipe", "fd"):
        return True
    try:
        name = urllib.parse.urlsplit(host).hostname or rest.split(":")[0]
    except ValueError:  # not an address at all: check_address says so where it is used
        return False
    if name == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# --- choosing ------------------------------------------------------------------------------


def _user_env(key: str) -> str | None:
    return os.environ.get(key) or None


def config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def contexts() -> dict[str, str]:
    """Every docker context the CLI knows, name -> engine endpoint (`default` included)."""
    found = {"default": _user_env("DOCKER_HOST") or default_host()}
    for meta in sorted((config_dir() / "contexts" / "meta").glob("*/meta.json")):
        try:
            data = json.loads(meta.read_text())
            name, host = data.get("Name"), data.get("Endpoints", {}).get("docker", {}).get("Host")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(name, str) and isinstance(host, str) and host:
            found[name] = host
    return found


def current_context() -> str:
    """The docker CLI's current context: DOCKER_CONTEXT, else config.json's, else default."""
    named = _user_env("DOCKER_CONTEXT")
    if named:
        return named
    try:
        current = json.loads((config_dir() / "config.json").read_text()).get("currentContext")
    except (OSError, ValueError, AttributeError):
        current = None
    return current if isinstance(current, str) and current else "default"


# Podman's API sockets (SPEC §6): rootful `podman system service`, then the rootless user's.
PODMAN_HOST = "unix:///run/podman/podman.sock"


def _podman_user_host() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return f"unix://{runtime}/podman/podman.sock"


def _answers(host: str) -> bool:
    """Whether something accepts a connection on a unix socket (microseconds: no HTTP)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(host.removeprefix("unix://"))
        except OSError:
            return False
    return True


def default_host() -> str:
    """The default context's engine: Docker's socket; where that does not answer, a Podman
    socket that does (rootful, then rootless); else Docker's, whose error then names it."""
    for host in (DEFAULT_HOST, PODMAN_HOST, _podman_user_host()):
        if _answers(host):
            return host
    return DEFAULT_HOST


def by_context(name: str, *, where: str) -> Engine:
    """The engine docker context `name` points at; an unknown name is exit 2."""
    known = contexts()
    if name == "default":
        return Engine("default", _user_env("DOCKER_HOST") or default_host())
    if name not in known:
        raise UsageError(
            f"docker context {name!r} ({where}) does not exist",
            hint=f"known contexts: {', '.join(sorted(known))}; create it with "
            f"`docker context create {name} --docker host=ssh://user@machine`",
        )
    return Engine(name, known[name])


def check_address(eng: Engine) -> None:
    """Exit 2 unless the engine's address is one the SDK, compose and ssh can all read; checked
    where the engine is first spoken to (host mode never needs it)."""
    try:
        urllib.parse.urlsplit(eng.host).port  # noqa: B018 (the parse is the check)
    except ValueError as exc:
        where = f"docker context {eng.context!r}" if eng.context not in (None, "default") else "DOCKER_HOST"
        raise UsageError(
            f"{where}: {eng.host!r} is not an engine address ({exc})",
            hint="e.g. unix:///var/run/docker.sock, tcp://HOST:2375 or ssh://USER@HOST",
        ) from None


def configured_context(config_text: str) -> str | None:
    """`[project].context`, read without validating the rest (config.py validates it)."""
    import tomllib

    try:
        value = tomllib.loads(config_text).get("project", {}).get("context")
    except (tomllib.TOMLDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def choose(*, option: str | None, configured: str | None) -> Engine:
    """SPEC §6's order: `--context`, `[project].context`, DOCKER_HOST, the current context."""
    if option:
        return by_context(option, where="--context")
    if configured:
        return by_context(configured, where="[project].context in devup.toml")
    host = _user_env("DOCKER_HOST")
    if host:
        return Engine(None, host)
    return by_context(current_context(), where="the current docker context")


def current() -> Engine:
    """The engine the user's environment points at now."""
    return choose(option=None, configured=None)


# --- the engine of a record ---------------------------------------------------------------


def _tls_dir(context: str) -> Path | None:
    """Where the docker CLI keeps a context's TLS files (contexts/tls/<sha256 of name>/docker)."""
    import hashlib

    folder = config_dir() / "contexts" / "tls" / hashlib.sha256(context.encode()).hexdigest() / "docker"
    return folder if (folder / "ca.pem").is_file() else None


def engine_of(record: Any) -> Engine:
    """The engine a session record (or a journal's begin entry, as a dict) names; one from before
    engines were recorded runs on the environment's engine."""
    data = record.get("engine") if isinstance(record, dict) else getattr(record, "engine", None)
    return Engine.from_json(data) or current()


# --- what the repository has used ------------------------------------------------------------


def remember(state_dir: Path, engine: Engine) -> None:
    """Add `engine` to the repository's list of engines its sessions used: `gc` looks for leftovers
    on each of them, also after a session's record is gone."""
    from devup.locks import file_lock, write_atomic

    path = state_dir / "engines.json"
    with file_lock(path.with_suffix(".lock")):
        known = _read_engines(path)
        if engine not in known:
            write_atomic(path, json.dumps([e.to_json() for e in [*known, engine]], indent=1))


def known(state_dir: Path) -> list[Engine]:
    return _read_engines(state_dir / "engines.json")


def _read_engines(path: Path) -> list[Engine]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    found = [Engine.from_json(d) for d in data] if isinstance(data, list) else []
    return [e for e in found if e is not None]


def distinct(engines: Iterable[Engine | None]) -> list[Engine]:
    """One entry per endpoint, in order (two contexts naming one engine are one engine)."""
    seen: dict[str, Engine] = {}
    for e in engines:
        if e is not None and e.host not in seen:
            seen[e.host] = e
    return list(seen.values())


# --- ports on a remote host ----------------------------------------------------------------


def port_checker(engine: Engine, published: Callable[[], set[int]]) -> Callable[[int], bool]:
    """Whether a port is free on the engine's host: not published by any of its containers (one
    engine query per leasing) and nothing answers a connection to host:port."""
    import socket

    taken: set[int] | None = None
    address = engine.address

    def free(port: int) -> bool:
        nonlocal taken
        if taken is None:
            taken = published()
        if port in taken:
            return False
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return False  # something listens there
        except OSError:
            return True

    return free
