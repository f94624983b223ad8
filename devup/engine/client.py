"""The docker SDK client built from an Engine value, and the edge that translates its exceptions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from devup.errors import DevupError, EngineError, EngineUnavailable
from devup.remote import Engine, check_address

_START_HINT = "start it (e.g. `sudo systemctl start docker` or `sudo dockerd &`); `devup doctor` checks"


def unavailable(eng: Engine, why: object) -> EngineUnavailable:
    """The one wording of "the engine does not answer", naming the engine (SPEC §2: exit 1)."""
    return EngineUnavailable(f"the Docker engine {_named(eng)} does not answer: {why}", hint=_START_HINT)


def _named(eng: Engine) -> str:
    """How an error names the engine: its endpoint, and the context it came from."""
    return f"{eng.host} (context {eng.context})" if eng.context not in (None, "default") else eng.host


def explain(exc: Exception) -> str:
    """What the engine said, or the exception itself."""
    return str(getattr(exc, "explanation", None) or exc)


@functools.cache
def client(eng: Engine) -> Any:
    """A docker SDK client for `eng` (one per engine for the process), built from the value:
    its host, and the TLS files of its context or the user's own TLS settings."""
    from docker.errors import DockerException

    check_address(eng)
    try:
        environment = eng.environ()
        if eng.host.startswith("ssh://"):
            from devup import sshproxy  # the user's ssh, as the docker CLI uses it; no paramiko

            environment["DOCKER_HOST"] = sshproxy.socket_for(eng.host)
        return _client_class().from_env(timeout=30, environment=environment)
    except DockerException as exc:
        raise unavailable(eng, exc) from None


@functools.cache
def _client_class() -> Any:
    """docker.DockerClient whose requests verify the engine's TLS files over REQUESTS_CA_BUNDLE:
    requests lets that variable replace a session's own `verify` on every request
    (psf/requests#3829), so where it is set (as on many machines) every call to an engine behind
    TLS failed its certificate check, where the docker CLI and compose, reading the same files,
    succeed."""
    import docker

    class OwnCa(docker.APIClient):  # type: ignore[misc]
        def merge_environment_settings(
            self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
        ) -> Any:
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if verify is None and isinstance(self.verify, str):  # a CA file of the engine's own
                settings["verify"] = self.verify
            return settings

    class Client(docker.DockerClient):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.api = OwnCa(*args, **kwargs)

    return Client


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
                raise unavailable(eng, explain(exc)) from None
            raise EngineError(f"the Docker engine {_named(eng)} refused a request: {explain(exc)}") from None

    return translated  # type: ignore[return-value]


# The libpod API's prefix on a Podman socket (any 4.x serves it): what the Docker API lacks there.
LIBPOD = "/v4.0.0/libpod"


def libpod(eng: Engine, method: str, path: str, *, timeout: float = 60) -> Any:
    """A libpod API request (`path` after /libpod) on a Podman engine: its JSON, or None."""
    api = client(eng).api
    response = api.request(method, f"{api.base_url}{LIBPOD}{path}", timeout=timeout)  # a requests Session
    response.raise_for_status()
    return response.json() if response.content else None
