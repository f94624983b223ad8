"""Transient faults are retried with backoff (SPEC §5.7): git lock contention and an engine that
is briefly unreachable, each end to end with real git, a real engine and the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import world
from tests.conftest import busybox_web, isolated, project_name

HOST_ONLY = """
[project]
name = "locky"
mode = "host"
"""


def _wait_for(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


# --- git lock contention --------------------------------------------------------------------


def _up_against_lock(repo, name: str, *, hold: float | None) -> tuple[subprocess.CompletedProcess[str], bool]:
    """`devup up NAME --json` while another git process seems to hold the branch's ref lock.

    `git worktree add -b NAME` must lock refs/heads/NAME; while NAME.lock exists it fails with
    "Unable to create '.../NAME.lock': File exists". The lock is released `hold` seconds after
    devup starts its git step (it creates the worktrees folder right before), or never (None).
    Returns the run and whether it was still running when the lock went away.
    """
    lock = repo.path / ".git" / "refs" / "heads" / f"{name}.lock"
    lock.write_text("")
    proc = repo.popen("up", name, "--json")
    still_running = False
    try:
        if hold is not None:
            _wait_for(
                lambda: repo.worktree(name).parent.is_dir() or proc.poll() is not None,
                timeout=60,
                what="devup's worktree step",
            )
            time.sleep(hold)
            still_running = proc.poll() is None
            lock.unlink()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), still_running


def test_git_lock_contention_is_retried_until_the_lock_is_released(make):
    repo = make(HOST_ONLY)
    # git's first attempt meets the lock at once. The jittered backoff waits ~1.3 s in all on
    # average and under 0.2 s in fewer than 1 run in 1000, so this release falls inside it.
    result, still_running = _up_against_lock(repo, "feat", hold=0.2)
    assert result.returncode == 0, result.stderr
    assert still_running, "up was over before the lock was released: nothing was retried"
    doc = json.loads(result.stdout)
    assert doc["status"] == "up" and doc["branch"] == "feat"
    wt = repo.worktree("feat")
    assert wt in world.worktree_paths(repo.path)
    assert "feat" in world.branches(repo.path)
    assert world.git(wt, "rev-parse", "--abbrev-ref", "HEAD").strip() == "feat"
    assert repo.devup("down", "feat").returncode == 0


def test_git_lock_never_released_fails_and_leaves_nothing(make):
    repo = make(HOST_ONLY)
    head = world.git(repo.path, "rev-parse", "HEAD").strip()
    started = time.monotonic()
    result, _ = _up_against_lock(repo, "feat", hold=None)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr  # failed, and everything was rolled back
    doc = json.loads(result.stdout)
    assert doc["status"] == "rolled_back" and doc["error"]["step"] == "worktree"
    lock = repo.path / ".git" / "refs" / "heads" / "feat.lock"
    assert str(lock) in result.stderr and "File exists" in result.stderr
    assert elapsed < 30  # retried with a bounded backoff, then gave up
    # Nothing this run made is left; the lock it did not create is still there.
    assert world.worktree_paths(repo.path) == [repo.path]
    assert world.branches(repo.path) == ["main"]
    assert not repo.worktree("feat").parent.exists()  # not even the worktrees folder it made
    assert world.git(repo.path, "rev-parse", "HEAD").strip() == head
    assert lock.exists()
    lock.unlink()
    assert json.loads(repo.devup("ls", "--json").stdout) == []


# --- engine briefly unreachable -------------------------------------------------------------


def _engine_address() -> tuple[int, object]:
    """Where the real engine listens, as (family, address) for a socket to connect to."""
    host = (
        os.environ.get("DOCKER_HOST")
        or world.docker("context", "inspect", "--format", "{{.Endpoints.docker.Host}}").strip()
    )
    if host.startswith("unix://"):
        return socket.AF_UNIX, host.removeprefix("unix://")
    if host.startswith("tcp://") and os.environ.get("DOCKER_TLS_VERIFY") in (None, "", "0"):
        addr, _, port = host.removeprefix("tcp://").rstrip("/").rpartition(":")
        return socket.AF_INET, (addr.strip("[]"), int(port))
    pytest.skip(f"the proxy only forwards to a plain unix or tcp engine, not {host}")


class FlakyEngine:
    """A unix socket in front of the real engine that goes away when it is first used.

    The first connection is closed unanswered and the socket file removed, so the engine is
    unreachable (connect fails with ENOENT), until `outage` seconds later the socket listens
    again and every connection is piped byte for byte, both ways, to the real engine (compose
    holds many at once, some upgraded to raw streams).
    """

    def __init__(self, path: Path, *, outage: float) -> None:
        self.path, self.outage = path, outage
        self.family, self.target = _engine_address()
        self.turned_away = 0
        self.forwarded = 0
        self._stop = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = self._listen()
        self._thread = threading.Thread(target=self._serve, name="flaky-engine", daemon=True)

    def __enter__(self) -> FlakyEngine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.close()
        assert not self._thread.is_alive(), "the proxy thread did not stop"

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        listener.settimeout(0.05)
        return listener

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                conn.settimeout(None)
                if self.turned_away == 0:
                    first_seen = time.monotonic()
                    self.turned_away += 1
                    conn.close()
                    self._listener.close()
                    self.path.unlink()
                    self._stop.wait(max(0.0, first_seen + self.outage - time.monotonic()))
                    if self._stop.is_set():
                        return
                    self._listener = self._listen()
                    continue
                self.forwarded += 1
                self._forward(conn)
        finally:
            self._listener.close()

    def _forward(self, conn: socket.socket) -> None:
        upstream = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            upstream.connect(self.target)  # type: ignore[arg-type]
        except OSError:
            conn.close()
            upstream.close()
            return
        with self._lock:
            self._open.update((conn, upstream))
        for src, dst in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        # One side ended: end both, which also ends the other direction's thread.
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
            with self._lock:
                self._open.discard(sock)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path: a unix socket's path must fit in ~100 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="devup-t-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_engine_briefly_unreachable_at_preflight_is_retried(make, short_dir):
    project = project_name()
    repo = make(
        f"""
{isolated("container", project=project)}

[groups.web]
files = ["compose/web.yaml"]
wait_timeout = 60
""",
        {"compose/web.yaml": busybox_web("web", port=8080, volume=None)},
    )
    sock = short_dir / "engine.sock"
    env = {"DOCKER_HOST": f"unix://{sock}"}
    with FlakyEngine(sock, outage=0.3) as engine:
        up = repo.devup("up", "a", "--json", env=env, timeout=120)
        assert engine.turned_away == 1  # devup did meet an unreachable engine
        assert up.returncode == 0, up.stderr
        assert engine.forwarded > 1  # and then devup and compose went through it (DOCKER_HOST)
        assert json.loads(up.stdout)["status"] == "up"
        # Through the real engine, not the proxy: the session's container runs.
        assert world.running_containers(repo_id=repo.repo_id, session="a"), "no container runs"
        down = repo.devup("down", "a", env=env, timeout=120)
        assert down.returncode == 0, down.stderr
    assert world.labelled("container", repo_id=repo.repo_id, session="a") == []
