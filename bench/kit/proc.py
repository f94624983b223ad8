"""Subprocesses of the bench: timed runs, their output, and what they leave listening."""

from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = os.environ.get("DEVUP_BENCH_BUSYBOX", "devup-local/busybox:latest")
BENCH_LABEL = "dev.devup.bench"
TAG_ENV = "DEVUP_BENCH_RUN"  # in the environment of every process the bench starts (and their children)
POLL = 0.05  # the raw script's readiness poll interval
ENGINE = "docker"  # set by run.py --engine: both sides talk to it through DOCKER_HOST
LS_SESSIONS = 20

# (service, container port) per compose group; the same files serve devup and the raw sequence.
GROUPS: dict[str, list[tuple[str, int]]] = {"a": [("a1", 8080), ("a2", 8081)], "b": [("b1", 8080)]}
NATIVE = ["web1", "web2"]


class BenchBroken(Exception):
    """The bench could not take a measurement (not: devup was slow)."""


running: list[subprocess.Popen[bytes]] = []
running_lock = threading.Lock()


@dataclass
class Ran:
    args: list[str]
    code: int
    seconds: float
    out: str
    err: str
    err_lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, line)


def run(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 600,
) -> Ran:
    """Run to completion, timed from before the fork to after the reap.

    Children run in their own session so a Ctrl-C reaches only the bench, which forwards it
    (a devup `up` then rolls back) and cleans up.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        list(args),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    with running_lock:
        running.append(proc)
    err_lines: list[tuple[float, str]] = []
    out_chunks: list[bytes] = []

    def read_err() -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            err_lines.append((time.perf_counter() - t0, raw.decode(errors="replace").rstrip("\n")))

    def read_out() -> None:
        assert proc.stdout is not None
        out_chunks.append(proc.stdout.read())

    readers = [threading.Thread(target=read_err, daemon=True), threading.Thread(target=read_out, daemon=True)]
    for r in readers:
        r.start()
    try:
        code = proc.wait(timeout=timeout)
        seconds = time.perf_counter() - t0
        for r in readers:
            r.join()
    except BaseException:
        stop_child(proc)
        raise
    finally:
        with running_lock:
            if proc in running:
                running.remove(proc)
    ran = Ran(
        list(args),
        code,
        seconds,
        b"".join(out_chunks).decode(errors="replace"),
        "\n".join(line for _, line in err_lines),
        err_lines,
    )
    if check and code != 0:
        raise BenchBroken(f"`{shlex.join(args)}` exited {code}:\n{tail(ran.out + ran.err)}")
    return ran


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT first (devup rolls back on it), SIGKILL if it does not finish in time."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def docker_lines(*args: str) -> list[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchBroken(f"`docker {' '.join(args)}` exited {result.returncode}: {result.stderr.strip()}")
    return [line for line in result.stdout.splitlines() if line.strip()]


def port_is_free(port: int) -> bool:
    """The same check devup makes (devup/leases.py port_is_free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
