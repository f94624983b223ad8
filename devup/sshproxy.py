"""An ssh:// engine behind a local unix socket, for devup's own engine queries.

The docker CLI and Compose reach an ssh:// engine by running `ssh HOST docker system dial-stdio`
per connection: the user's own ssh, with its config, agent and known hosts. The docker SDK can
do the same only with paramiko installed, and then imports paramiko (and cryptography) on every
`import docker`, ssh or not. devup instead serves a unix socket in a private temp folder and
pipes each connection through its own `ssh ... docker system dial-stdio`; the SDK, and the raw
socket query of `ls` and `status`, talk to that socket as to a local engine.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import socket
import tempfile
import threading
import urllib.parse
from pathlib import Path

from devup import runner


def ssh_args(host: str) -> list[str]:
    """What the docker CLI's connection helper runs for `ssh://[user@]host[:port]`."""
    parts = urllib.parse.urlsplit(host)
    args = ["ssh", "-o", "ConnectTimeout=30", "-T"]
    if parts.username:
        args += ["-l", parts.username]
    if parts.port:
        args += ["-p", str(parts.port)]
    return [*args, "--", parts.hostname or "", "docker", "system", "dial-stdio"]


_logs: dict[str, Path] = {}


def errors(host: str) -> str:
    """The last lines ssh wrote for `host` (why a connection failed), or ''."""
    log = _logs.get(host)
    try:
        return "\n".join(log.read_text(errors="replace").strip().splitlines()[-5:]) if log else ""
    except OSError:
        return ""


@functools.cache
def socket_for(host: str) -> str:
    """unix://… of a socket that forwards to the ssh engine `host` (one per host and process)."""
    folder = Path(tempfile.mkdtemp(prefix="devup-ssh-"))  # 0700: only this user connects
    path = folder / "docker.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    args = ssh_args(host)
    log = _logs[host] = folder / "ssh.log"

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed at exit
            threading.Thread(target=_forward, args=(conn, args, log), daemon=True).start()

    threading.Thread(target=serve, daemon=True, name=f"ssh proxy {host}").start()

    def close() -> None:
        with contextlib.suppress(OSError):
            server.close()
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(close)
    return f"unix://{path}"


def _forward(conn: socket.socket, args: list[str], log: Path) -> None:
    """One engine connection: bytes both ways between `conn` and an ssh dial-stdio channel."""
    try:
        proc = runner.pipe(args, stderr_path=log)
    except OSError:
        conn.close()
        return
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def upstream() -> None:
        try:
            while data := conn.recv(65536):
                view = memoryview(data)
                while view:  # a raw pipe may take part of a write
                    view = view[stdin.write(view) or 0 :]
        except OSError:
            pass
        with contextlib.suppress(OSError):
            stdin.close()

    sender = threading.Thread(target=upstream, daemon=True)
    sender.start()
    try:
        while data := stdout.read(65536):
            conn.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()
        proc.kill()
        proc.wait()
