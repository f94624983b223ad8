"""The devup demo's web app: a standard-library HTTP server on 127.0.0.1:$PORT.

  /        a page with the session, the branch, the seeded rows from PostgreSQL and a
           Redis visit counter that each request increments
  /health  200 "ok" when both PostgreSQL and Redis answer, 503 with the reason otherwise

devup runs it as the native service "web" with PORT set to the leased port, and waits
for /health before it calls the session up.
"""

from __future__ import annotations

import html
import os
import signal
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.dont_write_bytecode = True  # keep the worktree clean: no __pycache__ next to the app

from common import DemoError, env, one_line, pg_connect, redis_client  # noqa: E402

COUNTER_KEY = "demo:visits"


def check_health() -> str | None:
    """None when PostgreSQL and Redis both answer, else what is wrong."""
    problems = []
    try:
        with pg_connect(timeout=2) as conn:
            conn.execute("SELECT 1").fetchone()
    except Exception as exc:
        problems.append(f"postgres: {type(exc).__name__}: {one_line(exc)}")
    try:
        redis_client(timeout=2).close()
    except Exception as exc:
        problems.append(f"redis: {type(exc).__name__}: {one_line(exc)}")
    return "; ".join(problems) or None


def render_item(item_id: int, name: str, created_at: datetime) -> str:
    when = f"{created_at:%Y-%m-%d %H:%M:%S}"
    return f"<li>#{item_id} {html.escape(name)} <small>({when})</small></li>"


def render_index(host: str) -> str:
    session = os.environ.get("DEVUP_SESSION", "(not run by devup)")
    branch = os.environ.get("DEVUP_BRANCH", "(unknown)")
    with pg_connect(timeout=2) as conn:
        rows = conn.execute("SELECT id, name, created_at FROM items ORDER BY id").fetchall()
    client = redis_client(timeout=2)
    try:
        visits = client.incr(COUNTER_KEY)
    finally:
        client.close()
    items = "\n".join(render_item(*row) for row in rows)
    items = items or "<li><em>no rows: run python app/seed.py</em></li>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>devup demo: {html.escape(session)}</title></head>
<body>
<h1>devup demo</h1>
<p>session: <b id="session">{html.escape(session)}</b><br>
branch: <b id="branch">{html.escape(branch)}</b><br>
visits: <b id="visits">{visits}</b><br>
served at: <b id="host">{html.escape(host)}</b></p>
<h2>items (PostgreSQL)</h2>
<ul id="items">
{items}
</ul>
</body></html>
"""


class Handler(BaseHTTPRequestHandler):
    server_version = "devup-demo/1"

    def _send(self, status: int, body: str, content_type: str) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            problem = check_health()
            if problem is None:
                self._send(200, "ok\n", "text/plain")
            else:
                self._send(503, f"unhealthy: {problem}\n", "text/plain")
        elif path == "/":
            try:
                self._send(200, render_index(self.headers.get("Host", "?")), "text/html")
            except Exception as exc:
                self._send(503, f"error: {type(exc).__name__}: {one_line(exc)}\n", "text/plain")
        else:
            self._send(404, "not found\n", "text/plain")

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"web: {self.address_string()} {format % args}\n")


def main() -> int:
    try:
        env("DATABASE_URL")
        env("REDIS_URL")
        port_text = env("PORT")
    except DemoError as exc:
        print(f"web: error: {exc}", file=sys.stderr)
        return 1
    try:
        port = int(port_text)
    except ValueError:
        print(f"web: error: PORT is not a number: {port_text!r}", file=sys.stderr)
        return 1
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        print(f"web: error: cannot listen on 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return 1
    server.daemon_threads = True

    def stop(signum: int, _frame: object) -> None:
        print(f"web: got signal {signum}, stopping", flush=True)
        # shutdown() blocks until serve_forever returns: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    session = os.environ.get("DEVUP_SESSION", "-")
    print(f"web: session {session} listening on http://127.0.0.1:{port}/", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
    print("web: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.exit(main())
