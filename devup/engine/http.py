"""Reads from the engine's API over plain http.client: the docker SDK, with requests under it,
takes longer to import (~0.1 s) than `ls` or `status` take in all, and every `up` and
`--dry-run` asks the engine a few questions before it changes anything. Writes and streams stay
with the SDK (client.py).

Reaches the engine as the SDK would: its unix socket (an ssh engine through its local
forwarder) or tcp; an engine behind TLS through the SDK's own session, set up by the SDK.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from devup.engine.client import client, edge, unavailable
from devup.errors import EngineError, EngineUnavailable
from devup.remote import Engine, check_address


def get(eng: Engine, path: str, **params: str) -> Any:
    """`GET path` on the engine, its JSON answer; None when the engine says 404 (the object is
    gone). An engine that does not answer is EngineUnavailable naming it; any other refusal
    an EngineError."""
    status, _, body = _exchange(eng, path, params)
    return _answer(eng, path, status, body)


def _exchange(eng: Engine, path: str, params: dict[str, str]) -> tuple[int, Mapping[str, str], bytes]:
    """(status, headers, body) of `GET path`."""
    conn = _connection(eng)
    if conn is None:  # TLS: the SDK's own session, which knows every way TLS is set up
        return _exchange_tls(eng, path, params)
    import http.client

    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    try:
        conn.request("GET", f"{path}{query}")
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise unavailable(eng, exc.strerror or exc) from None
    except http.client.HTTPException as exc:  # an answer that is no HTTP: not an engine
        raise EngineError(
            f"the Docker engine {eng.host} gave no valid answer to GET {path}: {exc!r}"
        ) from None
    finally:
        conn.close()
    return response.status, response.headers, body


@edge
def _exchange_tls(eng: Engine, path: str, params: dict[str, str]) -> tuple[int, Mapping[str, str], bytes]:
    api = client(eng).api  # a requests.Session, set up by the SDK from the engine's TLS files
    response = api.get(f"{api.base_url}{path}", params=params, timeout=30)
    return response.status_code, response.headers, response.content


def _answer(eng: Engine, path: str, status: int, body: bytes) -> Any:
    if status == 404:
        return None
    if status != 200:
        raise EngineError(f"the Docker engine {eng.host} answered {status} to GET {path}: {body[:200]!r}")
    return json.loads(body)


def filters(**labels: list[str]) -> str:
    """The API's `filters` parameter."""
    return json.dumps(labels)


def _connection(eng: Engine) -> Any:
    """A connection to the engine's unix socket (an ssh engine's local forwarder) or plain tcp;
    None for TLS."""
    import http.client

    check_address(eng)
    host = eng.host
    if host.startswith("ssh://"):
        from devup import sshproxy

        host = sshproxy.socket_for(host)
    if host.startswith("unix://"):
        where = host.removeprefix("unix://")

        class Unix(http.client.HTTPConnection):
            def connect(self) -> None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(self.timeout)
                self.sock.connect(where)

        return Unix("localhost", timeout=30)
    env = eng.environ()
    parts = urllib.parse.urlsplit(host.replace("tcp://", "http://", 1))
    if env.get("DOCKER_TLS_VERIFY") or env.get("DOCKER_CERT_PATH") or parts.scheme != "http":
        return None
    return http.client.HTTPConnection(parts.hostname or "localhost", parts.port or 2375, timeout=30)


@edge
def engine_version(eng: Engine, *, attempts: int = 5) -> str:
    """The engine's version; an engine that does not answer is retried with backoff for ~4 s
    (0.25, 0.5, 1, 2 s between attempts), so that a blip or a dockerd restart is ridden out."""

    def ask() -> str:
        return str((get(eng, "/version") or {}).get("Version", "?"))

    try:
        return ask()
    except EngineUnavailable:
        if attempts <= 1:
            raise
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    time.sleep(0.25)  # tenacity (~6 ms to import) only once the first attempt has failed
    retrying = Retrying(
        retry=retry_if_exception_type(EngineUnavailable),
        wait=wait_exponential(multiplier=0.5, max=2),
        stop=stop_after_attempt(attempts - 1),
        reraise=True,
    )
    return str(retrying(ask))


_PODMAN: dict[str, str | None] = {}


def podman_version(eng: Engine) -> str | None:
    """Podman's version when Podman serves `eng` (its answers carry a Libpod-Api-Version
    header), else None; asked once per engine for the process, without the SDK (`ls`,
    `status` and every `up` ask it). An engine that does not answer is not Podman here, and not
    remembered as such (the caller finds out that it does not answer)."""
    if eng.host not in _PODMAN:
        try:
            # Podman names itself in every answer; /_ping is the cheapest (its /version takes
            # 0.2-0.6 s: it asks conmon, the OCI runtime and more for theirs).
            status, headers, _ = _exchange(eng, "/_ping", {})
        except (EngineUnavailable, EngineError):
            return None
        if status != 200:
            return None
        _PODMAN[eng.host] = headers.get("Libpod-Api-Version") or None
    return _PODMAN[eng.host]


def is_podman(eng: Engine) -> bool:
    return podman_version(eng) is not None
