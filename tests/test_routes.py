"""SPEC §9, end to end: a hostname per session and target through the real router (caddy), over
HTTP and HTTPS, its route on the undo journal, and a real browser (headless Chromium) showing
why: two sessions' pages on their own hostnames share no cookie and no local storage, while the
same pages on two ports of 127.0.0.1 share the cookie.

The world is looked at as a user would: curl (which resolves `*.localhost` to the loopback
address itself), Chromium, and the router's own admin API (its config), never devup's state.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import world
from tests.conftest import busybox_web, isolated

# The test repository's web page: who it is at `/`, a page that sets a cookie and local storage
# and goes on to `next` at `/set`, and a page that shows what it sees of both at `/get`.
SERVE = r"""
import http.server, json, os, urllib.parse

SESSION = os.environ["DEVUP_SESSION"]


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        headers = {"Content-Type": "text/html; charset=utf-8"}
        if url.path == "/set":
            headers["Set-Cookie"] = f"who={SESSION}; Path=/; Max-Age=3600"
            after = json.dumps(query.get("next", ["/get"])[0])
            body = f"<script>localStorage.setItem('who', '{SESSION}'); location.replace({after});</script>"
        elif url.path == "/get":
            body = (
                "<p id=seen></p><script>document.getElementById('seen').textContent = "
                "'cookie=[' + document.cookie + '] storage=[' + localStorage.getItem('who') + ']';</script>"
            )
        else:
            headers["Content-Type"] = "text/plain; charset=utf-8"
            body = f"session {SESSION}\n"
        data = body.encode()
        self.send_response(200)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Page).serve_forever()
"""


def native_toml(project: str | None = None, *, routes: str = "") -> str:
    return (
        isolated("host", project=project, routes=False)
        + f'[services.web]\nrun = "{sys.executable} serve.py"\nport = true\nready = {{ http = "/" }}\n'
        + '[hooks]\npost_up = "true"\n'
        + fallback_ports()
        + routes.removeprefix("[routes]\n")
    )


def router_dir() -> Path:
    return Path(os.environ["DEVUP_HOME"]) / "router"


def ca_root() -> Path:
    return router_dir() / "data" / "pki" / "authorities" / "local" / "root.crt"


def route_ids() -> list[str]:
    return world.router_routes(Path(os.environ["DEVUP_HOME"]))


def router_pid() -> int | None:
    try:
        pid = int(json.loads((router_dir() / "router.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            return None if f.read().split(") ", 1)[1].startswith("Z") else pid
    except OSError:
        return None


def curl(url: str, *, https_root: Path | None = None) -> tuple[int, str]:
    """(HTTP status, body) of `url`; status 0 when no connection or TLS handshake succeeds."""
    args = ["curl", "-sS", "--max-time", "10", "-w", "\n%{http_code}", url]
    if https_root is not None:
        args += ["--cacert", str(https_root)]
    result = subprocess.run(args, capture_output=True, text=True)
    body, _, code = result.stdout.rpartition("\n")
    return int(code or 0), body.strip()


def as_http(url: str, repo) -> str:
    """The http:// form of a session's https:// URL (the router serves both, on its ports)."""
    http_port = json.loads((router_dir() / "router.json").read_text())["http_port"]
    host = url.split("://", 1)[1].split("/", 1)[0].split(":")[0]
    return f"http://{host}{'' if http_port == 80 else f':{http_port}'}/"


@pytest.fixture(autouse=True)
def _caddy() -> None:
    """Every test's router lives in its own state folder (conftest stops it after the test)."""
    if shutil.which("caddy") is None:
        pytest.fail(
            "the hostname tests need caddy (Debian: apt-get install caddy; scripts/setup installs it)"
        )


def fallback_ports() -> str:
    """[routes] ports of the test's own, for where 80/443 are taken (another test run's router):
    the URLs then carry them, and the tests only use the URLs devup gives."""
    low = random.randrange(41000, 49000, 2)
    return f"[routes]\nhttp_port = {low}\nhttps_port = {low + 1}\n"


def test_hostnames_are_named_per_repository_clone(tmp_path: Path):
    from devup import router

    assert router.hostname(target="Web_App", session="s1", project="shop-abc123", domain="localhost") == (
        "web-app.s1.shop-abc123.localhost"
    )
    one, two = router.project_label("shop", "a" * 16), router.project_label("shop", "b" * 16)
    assert one != two and one.startswith("shop-")
    assert router.owner(router.route_id("0123456789abcdef", "s-1")) == ("0123456789abcdef", "s-1")
    assert router.owner("someone_else") is None


@pytest.mark.docker
def test_two_sessions_answer_on_their_own_hostnames_over_http_and_https(make, engine):
    repo = make(
        isolated("container") + '[groups.app]\nfiles = ["compose.yaml"]\n',
        {"compose.yaml": busybox_web(volume=None)},
    )
    one, two = repo.up_json("s1"), repo.up_json("s2")
    url1, url2 = one["urls"]["web"], two["urls"]["web"]
    assert url1.startswith("https://web.s1.") and url2.startswith("https://web.s2.") and url1 != url2
    assert repo.devup("url", "s1").stdout == url1 + "\n"
    assert repo.devup("url", "s2", "web").stdout == url2 + "\n"
    env = json.loads(repo.devup("env", "s1", "--format", "json").stdout)
    assert env["DEVUP_URL_WEB"] == url1 and env["DEVUP_URL_WEB_8080"] == url1
    listed = {s["session"]: s["urls"] for s in json.loads(repo.devup("ls", "--json").stdout)}
    assert listed == {"s1": {"web": url1}, "s2": {"web": url2}}
    assert url1 in repo.devup("status", "s1").stdout

    root = ca_root()
    assert (
        stat.S_IMODE(root.stat().st_mode) == 0o600
        and stat.S_IMODE(root.with_name("root.key").stat().st_mode) == 0o600
    )
    assert not any(repo.worktree("s1").rglob("*.key"))
    for url, session in ((url1, "s1"), (url2, "s2")):
        assert curl(url, https_root=root) == (200, session)
        assert curl(as_http(url, repo)) == (200, session)

    assert repo.devup("down", "s1").returncode == 0
    assert curl(as_http(url1, repo))[0] == 404  # the router's "no session here"
    assert curl(url1, https_root=root)[0] == 0  # no certificate for it any more: no handshake
    assert curl(url2, https_root=root) == (200, "s2")
    assert curl(as_http(url2, repo)) == (200, "s2")
    assert len(route_ids()) == 1

    assert repo.devup("down", "s2").returncode == 0
    pid = router_pid()
    assert pid is not None and route_ids() == []
    gc = repo.devup("gc")
    assert gc.returncode == 0 and "router" in gc.stdout, gc.stdout + gc.stderr
    assert router_pid() is None


def test_same_session_name_in_two_clones_gets_two_hostnames_and_a_resume_the_same(tmp_path: Path, make):
    files = {"serve.py": SERVE}
    first = make(native_toml("shop"), files)
    second_path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(first.path), str(second_path)], check=True)
    from tests.conftest import Repo

    second = Repo(path=second_path, tmp=tmp_path)
    import hashlib

    second.repo_id = hashlib.sha256(str((second_path / ".git").resolve()).encode()).hexdigest()[:16]
    try:
        a, b = first.up_json("x"), second.up_json("x")
        url_a, url_b = a["urls"]["web"], b["urls"]["web"]
        assert url_a != url_b and ".x.shop-" in url_a and ".x.shop-" in url_b
        assert curl(url_a, https_root=ca_root())[1] == "session x"
        assert curl(url_b, https_root=ca_root())[1] == "session x"
        assert sorted(route_ids()) == sorted([f"devup_{first.repo_id}_x", f"devup_{second.repo_id}_x"])

        # stop: the hostname stops answering; up resumes with the same one
        assert first.devup("stop", "x").returncode == 0
        assert curl(as_http(url_a, first))[0] == 404
        assert curl(url_b, https_root=ca_root())[0] == 200  # the other clone's untouched
        again = first.up_json("x")
        assert again["urls"]["web"] == url_a and again["resumed"]
        assert curl(url_a, https_root=ca_root())[0] == 200
    finally:
        second.devup("down", "x")
        first.devup("down", "x")


def test_a_failed_up_leaves_no_route(make):
    repo = make(native_toml(), {"serve.py": SERVE})
    keep = repo.up_json("keep")["urls"]["web"]
    failed = repo.devup("up", "f", env={"DEVUP_FAULT": "raise@before:post_up"})
    assert failed.returncode == 1, failed.stderr
    assert "undone: route of web.f." in failed.stderr
    assert route_ids() == [f"devup_{repo.repo_id}_keep"]
    assert curl(keep, https_root=ca_root())[0] == 200  # another session's route is not touched
    repo.devup("down", "keep")


@pytest.mark.parametrize("step", ["routes", "service:web"])
def test_a_killed_up_then_recover_leaves_no_route(make, step):
    repo = make(native_toml(), {"serve.py": SERVE})
    killed = repo.devup("up", "k", env={"DEVUP_FAULT": f"kill@after:{step}"})
    assert killed.returncode == -signal.SIGKILL
    assert route_ids() == [f"devup_{repo.repo_id}_k"]  # the kill left it behind...
    recovered = repo.devup("recover", "k")
    assert recovered.returncode == 0, recovered.stderr
    assert route_ids() == []  # ...and recovery ran its inverse
    assert repo.devup("gc").returncode == 0
    assert router_pid() is None


def test_gc_removes_a_route_no_session_owns(make):
    repo = make(native_toml(), {"serve.py": SERVE})
    repo.up_json("s")
    (Path(os.environ["DEVUP_HOME"]) / "repos" / repo.repo_id / "sessions" / "s.json").unlink()  # record lost
    found = repo.devup("gc", "--json")
    assert found.returncode == 0, found.stderr
    kinds = {(o["kind"], o["session"]) for o in json.loads(found.stdout)["orphans"] if o["removed"]}
    assert ("route", "s") in kinds and ("process", "s") in kinds
    assert router_pid() is None


def test_hostnames_off_start_no_router(make):
    repo = make(native_toml(routes="[routes]\nhostnames = false\n"), {"serve.py": SERVE})
    doc = repo.up_json("s")
    assert doc["urls"] == {}
    assert "DEVUP_URL_WEB" not in repo.devup("env", "s").stdout
    assert not router_dir().exists()
    url = repo.devup("url", "s")
    assert url.returncode == 2 and "no hostnames" in url.stderr
    repo.devup("down", "s")


def test_on_a_remote_engine_hostnames_are_off_and_up_says_so(make):
    repo = make(native_toml(), {"serve.py": SERVE})
    result = repo.devup("up", "r", "--json", env={"DOCKER_HOST": "tcp://192.0.2.1:2375"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["urls"] == {}
    assert "hostnames are off" in result.stderr and "remote engine" in result.stderr
    assert not router_dir().exists()
    repo.devup("down", "r")


def chromium(url: str, profile: Path) -> str:
    """The DOM of the page Chromium ends on, `url` loaded in a fresh profile."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail(
            "the browser test needs Chromium (Debian: apt-get install chromium; scripts/setup installs it)"
        )
    result = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",  # as root, as in the test machines' containers
            "--disable-gpu",
            "--no-proxy-server",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",  # scripts, the redirect and the next page run first
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def seen(dom: str) -> str:
    start = dom.index('<p id="seen">') + len('<p id="seen">')
    return dom[start : dom.index("</p>", start)]


def test_a_browser_keeps_two_sessions_apart_by_hostname_not_by_port(tmp_path: Path, make):
    repo = make(native_toml(routes="[routes]\nhttps = false\n"), {"serve.py": SERVE})
    a, b = repo.up_json("a"), repo.up_json("b")
    host_a, host_b = a["urls"]["web"], b["urls"]["web"]
    assert host_a.startswith("http://web.a.")
    port_a = f"http://127.0.0.1:{a['ports']['WEB']}/"
    port_b = f"http://127.0.0.1:{b['ports']['WEB']}/"
    try:
        # The page of A really sets both: A's own next page sees them.
        assert (
            seen(chromium(f"{host_a}set?next={host_a}get", tmp_path / "p0")) == "cookie=[who=a] storage=[a]"
        )
        # On its own hostname, B's page sees neither A's cookie nor A's local storage.
        assert seen(chromium(f"{host_a}set?next={host_b}get", tmp_path / "p1")) == "cookie=[] storage=[null]"
        # On two ports of 127.0.0.1, B's page gets A's cookie (cookies ignore the port): what
        # per-session hostnames are for.
        assert (
            seen(chromium(f"{port_a}set?next={port_b}get", tmp_path / "p2"))
            == "cookie=[who=a] storage=[null]"
        )
    finally:
        repo.devup("down", "a")
        repo.devup("down", "b")


def test_a_router_that_died_comes_back_with_the_routes_of_the_sessions_up(make):
    repo = make(native_toml(), {"serve.py": SERVE})
    s, t = repo.up_json("s")["urls"]["web"], repo.up_json("t")["urls"]["web"]
    assert repo.devup("stop", "t").returncode == 0
    u = repo.up_json("u")["urls"]["web"]
    pid = router_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # a crash, or the machine restarted
    status = repo.devup("status", "s")
    assert status.returncode == 1 and "missing" in status.stdout, status.stdout
    again = repo.up_json("s")  # not the no-op: its route is missing
    assert again["urls"]["web"] == s and router_pid() not in (None, pid)
    # u's route came back with the router (u is up); t's did not (t is stopped).
    assert curl(s, https_root=ca_root())[0] == 200 and curl(u, https_root=ca_root())[0] == 200
    assert curl(as_http(t, repo))[0] == 404
    assert sorted(route_ids()) == sorted([f"devup_{repo.repo_id}_s", f"devup_{repo.repo_id}_u"])
    assert repo.devup("status", "s").returncode == 0
    for name in ("s", "t", "u"):
        repo.devup("down", name)


def test_trust_prints_the_authority_and_says_what_it_did(make):
    repo = make(native_toml(), {"serve.py": SERVE})
    # No update-ca-certificates on this PATH: the machine's own trust store is never touched here.
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not p.endswith("sbin"))
    done = repo.devup("trust", env={"PATH": path})
    assert done.returncode == 0, done.stderr
    assert f"local authority root: {ca_root()}" in done.stdout
    assert ca_root().read_text() in done.stdout
    assert "system store: skipped" in done.stdout
    assert "NSS" in done.stdout
    removed = repo.devup("trust", "--remove", "--json", env={"PATH": path})
    assert json.loads(removed.stdout)["root"] == str(ca_root())
    assert repo.devup("gc").returncode == 0 and router_pid() is None  # started for its authority only


@contextlib.contextmanager
def _taken(*ports: int) -> Iterator[None]:
    """Someone else listens on these loopback ports."""
    with contextlib.ExitStack() as held:
        for port in ports:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen()
        yield


def _router_ports() -> tuple[int, int]:
    data = json.loads((router_dir() / "router.json").read_text())
    return int(data["http_port"]), int(data["https_port"])


def test_a_router_restarted_on_other_ports_gets_the_sessions_new_urls(tmp_path: Path, make):
    """SPEC §9: the router died and came back where its old ports were taken: the session's URLs
    (which carry the old port) no longer answer; `status` says so and the next `up` of it gives
    it URLs that do, instead of "nothing to do"."""
    a = make(native_toml(), {"serve.py": SERVE}, folder="a")
    url = a.up_json("s")["urls"]["web"]
    old = _router_ports()
    os.kill(router_pid() or 0, signal.SIGKILL)
    b = make(native_toml(), {"serve.py": SERVE}, folder="b")
    with _taken(*old):
        b.up_json("t")  # the router comes back, on 80/443 or b's ports, with s's route
    assert _router_ports() != old
    status = a.devup("status", "s")
    assert status.returncode == 1 and "now listens on" in status.stdout, status.stdout
    again = a.up_json("s")
    assert again["urls"]["web"] != url and curl(again["urls"]["web"], https_root=ca_root())[0] == 200
    assert a.devup("status", "s").returncode == 0
    assert a.devup("down", "s").returncode == 0 and b.devup("down", "t").returncode == 0


def test_hostnames_off_for_one_run_come_back_with_the_next_up(make):
    """The router could not start (its ports taken): that run's hostnames were off; the next
    `up`, once the ports are free, tries again rather than "nothing to do"."""
    repo = make(native_toml(), {"serve.py": SERVE})
    assert repo.up_json("s")["urls"]
    ports = _router_ports()
    assert repo.devup("stop", "s").returncode == 0 and repo.devup("gc").returncode == 0  # no router
    toml = tomllib.loads((repo.path / "devup.toml").read_text())["routes"]
    fallback = (toml["http_port"], toml["https_port"])
    candidates = {*ports, *fallback, *((80, 443) if _free(80, 443) else ())}
    with _taken(*sorted(candidates)):  # every pair the router could listen on
        off = repo.devup("up", "s", "--json")
    assert off.returncode == 0 and "hostnames are off for this run" in off.stderr, off.stderr
    assert json.loads(off.stdout)["urls"] == {}
    again = repo.up_json("s")
    assert again["urls"] and curl(again["urls"]["web"], https_root=ca_root())[0] == 200
    assert repo.devup("down", "s").returncode == 0


def _free(*ports: int) -> bool:
    try:
        with _taken(*ports):
            return True
    except OSError:
        return False


def test_a_port_published_on_ipv6_loopback_is_reached_there(make, engine):
    """`[::1]::8080` answers on ::1 only: the route must lead there, not to 127.0.0.1 (502)."""
    web = busybox_web(volume=None).replace('ports: ["8080:8080"]', 'ports: ["[::1]::8080"]')
    assert "[::1]::8080" in web
    repo = make(isolated("container") + '[groups.app]\nfiles = ["compose.yaml"]\n', {"compose.yaml": web})
    url = repo.up_json("s")["urls"]["web"]
    assert curl(url, https_root=ca_root()) == (200, "s")
    host = url.split("://", 1)[1].split("/", 1)[0].split(":")[0]
    issued = router_dir() / "data" / "certificates" / "local" / host
    assert issued.is_dir()  # caddy made its certificate and key
    assert repo.devup("down", "s").returncode == 0
    assert not issued.exists()  # and they went with the session
