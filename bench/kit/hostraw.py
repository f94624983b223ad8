"""The raw sequence of a host-mode session: a worktree and one process, what a script would do."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kit.proc import POLL, BenchBroken, answers, port_is_free, run
from kit.project import Ctx

WEB = f"{shlex.quote(sys.executable)} -m http.server $PORT --bind 127.0.0.1"


@dataclass
class HostRaw:
    name: str
    worktree: Path
    ctx: Ctx  # the repository it was made in
    proc: subprocess.Popen[bytes] | None = None


def free_port(ports: range) -> int:
    """The first port of `ports` nothing listens on (untimed)."""
    for port in ports:
        if port_is_free(port):
            return port
    raise BenchBroken(f"no free port for the raw script in {ports.start}-{ports.stop - 1}")


def raw_host_up(ctx: Ctx, name: str, port: int, live: list[HostRaw]) -> float:
    """`git worktree add -b NAME` from HEAD, then the service's process (own session, log file),
    polled with GET / every POLL s until it answers: devup's new host-mode session by hand."""
    raw = HostRaw(name=name, worktree=ctx.tmp / "raw-worktrees" / ctx.project / name, ctx=ctx)
    live.append(raw)
    t0 = time.perf_counter()
    run(["git", "worktree", "add", "-q", "-b", name, str(raw.worktree)], cwd=ctx.repo, env=ctx.env)
    with open(ctx.tmp / f"raw-{ctx.project}-{name}.log", "ab") as log:
        raw.proc = subprocess.Popen(
            ["sh", "-c", WEB],
            cwd=raw.worktree,
            env={**ctx.env, "PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while not answers(port):
        if time.monotonic() > deadline or raw.proc.poll() is not None:
            raise BenchBroken(f"the raw process of {name} did not answer on port {port}")
        time.sleep(POLL)
    return time.perf_counter() - t0


def raw_host_down(ctx: Ctx, raw: HostRaw, live: list[HostRaw]) -> float:
    """SIGTERM the process group and wait for it; `git worktree remove --force`. The branch is
    deleted afterwards, untimed (devup's `down` keeps it)."""
    t0 = time.perf_counter()
    _stop(raw)
    run(["git", "worktree", "remove", "--force", str(raw.worktree)], cwd=ctx.repo, env=ctx.env)
    seconds = time.perf_counter() - t0
    live.remove(raw)
    run(["git", "branch", "-D", raw.name], cwd=ctx.repo, env=ctx.env)
    return seconds


def raw_host_force(raw: HostRaw) -> None:
    """Untimed: whatever state a raw run was left in, remove it."""
    ctx = raw.ctx
    _stop(raw)
    if ctx.repo.is_dir():
        run(
            ["git", "worktree", "remove", "--force", str(raw.worktree)],
            cwd=ctx.repo,
            env=ctx.env,
            check=False,
        )
        run(["git", "branch", "-D", raw.name], cwd=ctx.repo, env=ctx.env, check=False)


def _stop(raw: HostRaw) -> None:
    if raw.proc is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(raw.proc.pid, signal.SIGTERM)
    try:
        raw.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(raw.proc.pid, signal.SIGKILL)
        raw.proc.wait()
