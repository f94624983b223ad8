"""The router of SPEC §9: Debian's `caddy`, run as a native process, one per machine (per devup
state root) and shared by every repository's sessions.

Why a native process and not a container, and how it starts and is reaped: docs/design.md,
"Hostnames: the router". Its admin API listens on a unix socket in devup's state folder (0700:
only this user may change the routes; a TCP admin port on loopback would let every local user
rewrite them). Each session has one route, `@id` `devup_<repo id>_<session>`, matching all its
hostnames: inserted at the front of the server's routes (the last route is the "no session here"
404), replaced with PATCH /id/<id>, removed with DELETE /id/<id>. caddy loads every change whole or
not at all, and a change by id touches no other session's route.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup import paths, processes, runner
from devup.errors import CorruptState, RouterError
from devup.locks import file_lock, write_atomic
from devup.records import read_record

SERVER = "devup"  # the one caddy server, listening on the HTTP and the HTTPS port
_ID_PREFIX = "devup_"
DEFAULT_PORTS = (80, 443)  # where the URLs carry no port; else [routes].http_port/https_port
_START_TIMEOUT = 15.0
_LABEL_MAX = 63  # a DNS label


@dataclass(frozen=True)
class Router:
    """The running router: its process and the ports it listens on (loopback only)."""

    pid: int
    start_time: float
    http_port: int
    https_port: int

    def url(self, host: str, *, https: bool) -> str:
        port, scheme, default = (self.https_port, "https", 443) if https else (self.http_port, "http", 80)
        return f"{scheme}://{host}{'' if port == default else f':{port}'}/"

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "start_time": self.start_time,
            "http_port": self.http_port,
            "https_port": self.https_port,
        }


# --- names ---------------------------------------------------------------------------------


def label(name: str) -> str:
    """A DNS label of a compose service's or native service's name: lower case, `_` and `.`
    as `-` (compose allows both in service names; a hostname label does not)."""
    out = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")
    return out[:_LABEL_MAX].rstrip("-") or "x"


def project_label(slug: str, repo_id: str) -> str:
    """`<slug>-<6 hex of the repo id>`, as compose projects are named: two clones with the same
    project name (other folders) never share a hostname (SPEC §5.5, §9)."""
    return f"{label(slug)[: _LABEL_MAX - 7].rstrip('-')}-{repo_id[:6]}"


def hostname(*, target: str, session: str, project: str, domain: str) -> str:
    """`<target>.<session>.<project>.<domain>` (SPEC §9); `project` from project_label."""
    return f"{label(target)}.{session}.{project}.{domain}"


def route_id(repo_id: str, session: str) -> str:
    return f"{_ID_PREFIX}{repo_id}_{session}"


def owner(route: str) -> tuple[str, str] | None:
    """(repo id, session) of a route devup made, from its @id; None for any other."""
    if not route.startswith(_ID_PREFIX):
        return None
    repo_id, sep, session = route[len(_ID_PREFIX) :].partition("_")
    return (repo_id, session) if sep and repo_id and paths.NAME_RE.fullmatch(session) else None


# --- where it lives ------------------------------------------------------------------------


def folder() -> Path:
    return paths.state_root() / "router"


def ca_root() -> Path:
    """The local authority's root certificate (caddy's `local` CA, in its storage here)."""
    return _ca_dir() / "root.crt"


def _ca_dir() -> Path:
    return folder() / "data" / "pki" / "authorities" / "local"


def installed() -> str | None:
    """The caddy binary, or None."""
    return shutil.which("caddy")


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Starting, stopping and changing the router, one devup at a time: `gc` must not stop it
    between another run's start and its first route (a few ms each; caddy serialises anyway)."""
    with file_lock(folder() / "router.lock"):
        yield


def running() -> Router | None:
    """The router, when its recorded process is alive (same pid and start time)."""
    try:
        data = json.loads((folder() / "router.json").read_text(encoding="utf-8"))
        found = Router(
            pid=int(data["pid"]),
            start_time=float(data["start_time"]),
            http_port=int(data["http_port"]),
            https_port=int(data["https_port"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if processes.is_alive(found.pid, found.start_time) else None


# --- the admin API -------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


def _request(method: str, path: str, body: Any = None, *, timeout: float = 30) -> tuple[int, Any]:
    """One admin API call: (status, decoded JSON body or None). caddy accepts an empty Host on
    its unix socket, and only that (its origin check)."""
    conn = _UnixConnection(folder() / "admin.sock", timeout)
    data = None if body is None else json.dumps(body).encode()
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", "")
        if data is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        response = conn.getresponse()
        raw = response.read().decode(errors="replace")
    except OSError as exc:
        raise RouterError(
            f"the router's admin API ({folder() / 'admin.sock'}) does not answer: {exc}",
            hint=f"its log: {folder() / 'caddy.log'}",
        ) from None
    finally:
        conn.close()
    try:
        decoded = json.loads(raw) if raw.strip() else None
    except ValueError:
        decoded = raw
    return response.status, decoded


def _check(status: int, body: Any, what: str) -> None:
    if status >= 400:
        message = body.get("error") if isinstance(body, dict) else body
        raise RouterError(f"the router refused to {what}: HTTP {status}: {message}")


# --- routes --------------------------------------------------------------------------------


def route(rid: str, hosts: Mapping[str, str]) -> dict[str, Any]:
    """The one route of a session: its hostnames, each to its upstream `address:port` on a
    loopback address (a published port of the local engine, or a native service's)."""
    return {
        "@id": rid,
        "match": [{"host": sorted(hosts)}],
        "handle": [
            {
                "handler": "subroute",
                "routes": [
                    {
                        "match": [{"host": [host]}],
                        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": upstream}]}],
                    }
                    for host, upstream in sorted(hosts.items())
                ],
            }
        ],
        "terminal": True,
    }


def ensure(*, ports: tuple[int, int]) -> Router:
    """The router, started when it is not running (`devup trust` needs its authority)."""
    with _locked():
        return running() or _start(ports)


def put(rid: str, hosts: Mapping[str, str], *, ports: tuple[int, int]) -> Router:
    """Add or replace the route `rid` (the router started first when it is not running; `ports`
    are used where 80/443 cannot be)."""
    return put_raw(route(rid, hosts), ports=ports)


def put_raw(doc: dict[str, Any], *, ports: tuple[int, int]) -> Router:
    with _locked():
        found = running() or _start(ports)
        rid = doc["@id"]
        status, body = _request("PATCH", f"/id/{rid}", doc)
        if status == 404:  # not there yet: in front of the catch-all 404
            status, body = _request("PUT", f"/config/apps/http/servers/{SERVER}/routes/0", doc)
        _check(status, body, f"add route {rid}")
        return found


def get(rid: str) -> dict[str, Any] | None:
    """The route `rid` as the router has it; None when it has none, or is not running."""
    if running() is None:
        return None
    status, body = _request("GET", f"/id/{rid}")
    if status == 404:
        return None
    _check(status, body, f"read route {rid}")
    return body if isinstance(body, dict) else None


def remove(rid: str) -> None:
    """Remove the route `rid`; one that is gone, or a router that is not running, is success
    (a stopped router drops the routes of sessions that are not up when it starts again)."""
    with _locked():
        if running() is None:
            return
        status, body = _request("GET", f"/id/{rid}")
        hosts = _hosts_of(body) if status == 200 else []
        status, body = _request("DELETE", f"/id/{rid}")
        if status != 404:
            _check(status, body, f"remove route {rid}")
        for host in hosts:  # its certificates and keys go with it (caddy makes them again if asked)
            shutil.rmtree(folder() / "data" / "certificates" / "local" / host, ignore_errors=True)


def _hosts_of(doc: Any) -> list[str]:
    """The hostnames a route matches (a route of `route`)."""
    try:
        return [h for h in doc["match"][0]["host"] if isinstance(h, str) and h and "/" not in h and h != ".."]
    except (KeyError, IndexError, TypeError):
        return []


def route_ids() -> list[str]:
    """The @id of every route the running router has ([] when it is not running)."""
    if running() is None:
        return []
    status, body = _request("GET", f"/config/apps/http/servers/{SERVER}/routes")
    _check(status, body, "list its routes")
    return [r["@id"] for r in body or [] if isinstance(r, dict) and isinstance(r.get("@id"), str)]


def stop_if_idle() -> Router | None:
    """Stop the router when no session has a route on it (`gc`); returns the router stopped."""
    with _locked():
        found = running()
        if found is None or any(owner(r) for r in route_ids()):
            return None
        with contextlib.suppress(RouterError):
            _request("POST", "/stop", timeout=5)
        processes.stop(found.pid, found.start_time, timeout=10)
        return found


# --- starting it ---------------------------------------------------------------------------


def _start(fallback: tuple[int, int]) -> Router:
    """Start caddy with the routes that outlived its last run and still have a session up.
    The caller holds the lock."""
    binary = installed()
    if binary is None:
        raise RouterError(
            "caddy is not installed: the router of the hostnames (SPEC §9) cannot start",
            hint="`apt-get install caddy` (scripts/setup does it), or set [routes].hostnames = false",
        )
    where = folder()
    paths.ensure_dir(where)
    surviving = _surviving_routes()
    # The last run's ports keep the URLs of the sessions still routed; with none, 80/443 first.
    http_port, https_port, loopbacks = _choose_ports(_previous_ports() if surviving else None, fallback)
    config = _config(where, http_port, https_port, loopbacks, surviving)
    write_atomic(where / "caddy.json", json.dumps(config, indent=1))
    # caddy's own files (its CA, certificates, autosaved config, smallstep's ~/.step) all stay
    # in this folder: nothing in the user's home, nothing in a worktree.
    env = {
        "HOME": str(where),
        "XDG_DATA_HOME": str(where / "share"),
        "XDG_CONFIG_HOME": str(where / "config"),
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
    }
    (where / "admin.sock").unlink(missing_ok=True)
    log = where / "caddy.log"
    offset = log.stat().st_size if log.exists() else 0
    pid = runner.spawn(
        [binary, "run", "--config", str(where / "caddy.json")], cwd=where, env=env, log_path=log
    )
    found = Router(pid, processes.start_time(pid) or 0.0, http_port, https_port)
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if not processes.is_alive(found.pid, found.start_time):
            raise RouterError(
                f"the router (caddy) exited at start:\n{_tail(log, offset)}", hint=f"its log: {log}"
            )
        with contextlib.suppress(RouterError):
            if _request("GET", "/config/admin", timeout=2)[0] == 200:
                break
        if time.monotonic() > deadline:
            processes.stop(found.pid, found.start_time, timeout=5)
            raise RouterError(
                f"the router (caddy) did not answer within {_START_TIMEOUT:.0f} s", hint=f"its log: {log}"
            )
        time.sleep(0.02)
    write_atomic(where / "router.json", json.dumps(found.to_json()))
    _secure_ca()
    return found


def _config(
    where: Path, http_port: int, https_port: int, loopbacks: list[str], routes: list[dict[str, Any]]
) -> dict[str, Any]:
    listen = [f"{host}:{port}" for host in loopbacks for port in (http_port, https_port)]
    return {
        # The autosave (caddy writes it on every change, under XDG_CONFIG_HOME here) is what the
        # next start reads the routes back from.
        "admin": {"listen": f"unix/{where / 'admin.sock'}", "config": {"persist": True}},
        "storage": {"module": "file_system", "root": str(where / "data")},
        "apps": {
            "http": {
                "http_port": http_port,
                "https_port": https_port,
                "servers": {
                    SERVER: {
                        "listen": listen,
                        # Both schemes answer: no redirect from http:// to https://.
                        "automatic_https": {"disable_redirects": True},
                        "routes": [*routes, _NOBODY],
                    }
                },
            },
            # Every certificate from caddy's own local authority ("tls internal").
            "tls": {"automation": {"policies": [{"issuers": [{"module": "internal"}]}]}},
            # Never into a trust store behind the user's back: `devup trust` does that, and says so.
            "pki": {
                "certificate_authorities": {
                    "local": {"name": "devup local authority", "install_trust": False}
                }
            },
        },
    }


# A hostname no session has: a plain 404, not caddy's empty 200 (a client must see it is gone).
_NOBODY = {
    "handle": [
        {
            "handler": "static_response",
            "status_code": 404,
            "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
            "body": "no devup session answers at this hostname\n",
        }
    ]
}


def moved(urls: Mapping[str, str]) -> Router | None:
    """The running router, when it listens on other ports than `urls` carry (it was restarted
    where those were taken): those URLs no longer answer, and the session's next `up` gives it
    URLs on the router's ports. None when they match, or no router runs."""
    found = running()
    if found is None:
        return None
    for url in urls.values():
        parts = urllib.parse.urlsplit(url)
        https = parts.scheme == "https"
        if (parts.port or (443 if https else 80)) != (found.https_port if https else found.http_port):
            return found
    return None


def _previous_ports() -> tuple[int, int] | None:
    """The ports of the router's last run: a restart keeps the URLs the sessions' env files have."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads((folder() / "router.json").read_text(encoding="utf-8"))
        return int(data["http_port"]), int(data["https_port"])
    return None


def _choose_ports(previous: tuple[int, int] | None, fallback: tuple[int, int]) -> tuple[int, int, list[str]]:
    """(http, https, loopback addresses): the last run's ports, else 80/443, else `fallback`,
    the first pair this user can bind on 127.0.0.1 (and on ::1 where the machine has it)."""
    tried = []
    for pair in dict.fromkeys(p for p in (previous, DEFAULT_PORTS, fallback) if p is not None):
        tried.append(f"{pair[0]}/{pair[1]}")
        if _bindable("127.0.0.1", pair):
            return pair[0], pair[1], ["127.0.0.1", *(["[::1]"] if _bindable("::1", pair) else [])]
    raise RouterError(
        f"the router cannot listen on 127.0.0.1: ports {', '.join(tried)} are taken or not allowed",
        hint="set [routes].http_port and https_port in devup.toml to free ports, or [routes].hostnames = false",
    )


def _bindable(host: str, ports: tuple[int, int]) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in ports:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, port))
        except OSError:
            return False
    return True


def _surviving_routes() -> list[dict[str, Any]]:
    """The session routes of the last run (caddy's autosave) whose session is still up; a
    session brought down or stopped while the router was not running loses its route here."""
    autosave = folder() / "config" / "caddy" / "autosave.json"
    try:
        saved = json.loads(autosave.read_text(encoding="utf-8"))
        routes = saved["apps"]["http"]["servers"][SERVER]["routes"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [r for r in routes if isinstance(r, dict) and _still_up(str(r.get("@id", "")))]


def _still_up(rid: str) -> bool:
    found = owner(rid)
    if found is None:
        return False
    repo_id, session = found
    path = paths.state_root() / "repos" / repo_id / "sessions" / f"{session}.json"
    try:
        record = read_record(path)
    except CorruptState:
        return False
    return record is not None and record.status == "up"


def _secure_ca() -> None:
    """The authority's files 0600 (caddy writes them so; checked, as SPEC §9 promises)."""
    for path in _ca_dir().glob("*") if _ca_dir().is_dir() else []:
        with contextlib.suppress(OSError):
            if path.stat().st_mode & 0o777 != 0o600:
                os.chmod(path, 0o600)


def _tail(log: Path, offset: int, lines: int = 15) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
