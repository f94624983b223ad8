"""The router of the hostnames (SPEC §9) against the published port, measured in the same run.

Run from the repository root:  .venv/bin/python bench/routes.py [--requests 1000] [--ups 15]

A host-mode session is up with one native web service (a small threaded Python HTTP server with
a fixed 3-byte answer) and its hostname. Then, in interleaved blocks of 50:
- direct: GET / on the service's published port, 127.0.0.1:<port>;
- router: GET / on the router's HTTP port with the session's hostname as Host (what
  `*.localhost` resolves to), through caddy to the same server;
each once on a new connection per request (a browser's first request, or curl) and once on one
kept-alive connection. Targets (issue 23): the router's median at most +1 ms over direct.

Then `up` of a new host-mode session with hostnames (the router already running) against the
same `up` with `[routes].hostnames = false`, alternating; target at most +0.2 s. The router's
first start is the `routes` step of the first `up`, printed too.
It is a measurement, not a test: it prints the figures and exits 0 unless it could not measure.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEVUP = [sys.executable, "-m", "devup"]
SERVE = """
import http.server, os

class Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm holds the second
    # until the client's delayed ACK (40 ms) on any kept-alive connection, caddy's pool included.
    disable_nagle_algorithm = True

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\\n")

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Ok).serve_forever()
"""


def toml(name: str, hostnames: bool) -> str:
    return (
        f'[project]\nname = "{name}"\nmode = "host"\n[ports]\nrange = [27200, 27299]\n'
        f"[routes]\nhostnames = {'true' if hostnames else 'false'}\n"
        f'[services.web]\nrun = "{sys.executable} serve.py"\nport = true\nready = {{ http = "/" }}\n'
    )


def sh(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return took, result.stdout, result.stderr


def make_repo(path: Path, text: str, env: dict[str, str]) -> None:
    path.mkdir()
    (path / "devup.toml").write_text(text)
    (path / "serve.py").write_text(SERVE)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)


def fresh(port: int, host: str) -> float:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/", headers={"Host": host})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    took = time.perf_counter() - t0
    if response.status != 200 or body != b"ok\n":
        raise SystemExit(f"bench: {host} on port {port} answered {response.status} {body[:80]!r}")
    return took


def tls(port: int, host: str, context: ssl.SSLContext) -> float:
    """GET / over HTTPS on a new connection, the handshake with the session's hostname (SNI)."""
    t0 = time.perf_counter()
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as curl and browsers do
    with context.wrap_socket(raw, server_hostname=host) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    took = time.perf_counter() - t0
    if not answer.startswith(b"HTTP/1.1 200") or not answer.endswith(b"ok\n"):
        raise SystemExit(f"bench: https://{host}:{port}/ answered {answer[:80]!r}")
    return took


def kept(conn: http.client.HTTPConnection, host: str) -> float:
    t0 = time.perf_counter()
    conn.request("GET", "/", headers={"Host": host})
    response = conn.getresponse()
    body = response.read()
    took = time.perf_counter() - t0
    if response.status != 200 or body != b"ok\n":
        raise SystemExit(f"bench: {host} answered {response.status} {body[:80]!r}")
    return took


def requests(direct: tuple[int, str], routed: tuple[int, str], count: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {k: [] for k in ("direct", "router", "direct_kept", "router_kept")}
    conns = {
        "direct_kept": http.client.HTTPConnection("127.0.0.1", direct[0], timeout=10),
        "router_kept": http.client.HTTPConnection("127.0.0.1", routed[0], timeout=10),
    }
    for _ in range(20):  # warm-up: the router's upstream connections, caddy's code paths
        fresh(*direct), fresh(*routed)
    block = 50
    for n in range(0, count, block):
        order = [("direct", direct), ("router", routed)]
        for key, (port, host) in order if (n // block) % 2 == 0 else reversed(order):
            for _ in range(min(block, count - n)):
                samples[key].append(fresh(port, host))
                samples[f"{key}_kept"].append(kept(conns[f"{key}_kept"], host))
    for conn in conns.values():
        conn.close()
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--ups", type=int, default=15)
    opts = parser.parse_args(argv)
    if shutil.which("caddy") is None:
        raise SystemExit("bench: caddy is not installed (scripts/setup installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="devup-bench-routes-"))
    env = {
        **os.environ,
        "DEVUP_HOME": str(tmp / "state"),
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@example.invalid",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@example.invalid",
        "PYTHONPATH": str(ROOT),
    }
    on, off = tmp / "on", tmp / "off"
    make_repo(on, toml(f"br{os.getpid() % 100000}", True), env)
    make_repo(off, toml(f"bo{os.getpid() % 100000}", False), env)
    sessions: list[tuple[Path, str]] = []
    try:
        _, _, err = sh([*DEVUP, "up", "s"], cwd=on, env=env)
        sessions.append((on, "s"))
        start = re.search(r"routes\s+([0-9.]+)s", err)
        url = sh([*DEVUP, "url", "s"], cwd=on, env=env)[1].strip()
        env_vars = sh([*DEVUP, "env", "s", "--format", "json"], cwd=on, env=env)[1]
        port = int(json.loads(env_vars)["DEVUP_PORT_WEB"])
        router = json.loads((tmp / "state" / "router" / "router.json").read_text())
        host = url.split("://", 1)[1].split("/", 1)[0].split(":")[0]
        samples = requests((port, "127.0.0.1"), (router["http_port"], host), opts.requests)
        context = ssl.create_default_context(
            cafile=str(tmp / "state" / "router" / "data" / "pki" / "authorities" / "local" / "root.crt")
        )
        https = [tls(router["https_port"], host, context) for _ in range(opts.requests)]

        ups: dict[str, list[float]] = {"on": [], "off": []}
        route_steps: list[float] = []
        for n in range(opts.ups):
            runs = [("on", on), ("off", off)]
            for key, repo in runs if n % 2 == 0 else reversed(runs):
                name = f"u{n}"
                took, _, err = sh([*DEVUP, "up", name], cwd=repo, env=env)
                sessions.append((repo, name))
                ups[key].append(took)
                if key == "on" and (step := re.search(r"routes\s+([0-9.]+)s", err)):
                    route_steps.append(float(step.group(1)))
                sh([*DEVUP, "down", name], cwd=repo, env=env)
                sessions.remove((repo, name))

        med = statistics.median
        ms = {k: med(v) * 1000 for k, v in samples.items()}
        print(
            f"load average: {os.getloadavg()[0]:.2f}; router on 127.0.0.1:{router['http_port']}/{router['https_port']}"
        )
        print(f"requests: {opts.requests} each, interleaved in blocks of 50, medians")
        print(
            f"  new connection per request: direct {ms['direct']:.3f} ms, router {ms['router']:.3f} ms, "
            f"{ms['router'] - ms['direct']:+.3f} ms (target <= +1 ms)"
        )
        print(
            f"  kept-alive connection:      direct {ms['direct_kept']:.3f} ms, router {ms['router_kept']:.3f} ms, "
            f"{ms['router_kept'] - ms['direct_kept']:+.3f} ms (target <= +1 ms)"
        )
        print(
            f"  HTTPS through the router, new connection (TLS handshake included): {med(https) * 1000:.3f} ms"
        )
        extra = med(ups["on"]) - med(ups["off"])
        print(
            f"up of a new host-mode session ({opts.ups} each): with hostnames {med(ups['on']):.3f} s, "
            f"without {med(ups['off']):.3f} s, {extra:+.3f} s (target <= +0.2 s)"
        )
        print(f"  its routes step (the route put on the running router): median {med(route_steps):.3f} s")
        print(
            f"the router's first start (the routes step of the first up): {start.group(1) if start else '?'} s"
        )
        return 0
    finally:
        for repo, name in sessions:
            subprocess.run([*DEVUP, "down", name, "--force"], cwd=repo, env=env, capture_output=True)
        subprocess.run([*DEVUP, "gc"], cwd=on, env=env, capture_output=True)  # stops the router
        shutil.rmtree(tmp, ignore_errors=True)  # the worktrees too: <tmp>/on-worktrees, <tmp>/off-worktrees


if __name__ == "__main__":
    sys.exit(main())
