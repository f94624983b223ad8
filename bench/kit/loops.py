"""The fleet load (SPEC §5.14): loops on sessions of their own, run at once, and a raw probe
that runs the hand-made equivalent under the same load."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from kit.hostraw import HostRaw, free_port, raw_host_down, raw_host_force, raw_host_up
from kit.proc import BenchBroken, run, tail
from kit.project import Ctx


def cycle(name: str) -> list[tuple[str, list[str]]]:
    """One round of a loop, in order: (label, devup arguments)."""
    return [
        ("up", ["up", name]),
        ("env", ["env", name]),
        ("status", ["status", name]),
        ("exec", ["exec", name, "--", "true"]),
        ("ls", ["ls"]),
        ("snapshot ls", ["snapshot", "ls"]),
        ("stop", ["stop", name]),
        ("up (resume)", ["up", name]),
        ("down", ["down", name]),
    ]


@dataclass(frozen=True)
class Cmd:
    repo: str  # "host", "container" (devup's loops) or "raw" (the probe)
    session: str
    command: str
    code: int  # -1: timed out
    start: float  # seconds since the load began
    seconds: float
    err: str = ""  # the tail of stderr when the exit was not 0

    @property
    def end(self) -> float:
        return self.start + self.seconds


@dataclass
class Load:
    seconds: float
    t0: float = field(default_factory=time.monotonic)
    cmds: list[Cmd] = field(default_factory=list)  # list.append is atomic: the threads share it
    loadavg: list[float] = field(default_factory=list)
    raw_live: list[HostRaw] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)  # interrupted: stop at once

    def over(self) -> bool:
        return self.abort.is_set() or time.monotonic() - self.t0 >= self.seconds

    def timed(self, repo: str, session: str, command: str, args: list[str], ctx: Ctx) -> Cmd:
        start = time.monotonic() - self.t0
        try:
            ran = ctx.dv(*args, check=False)
            cmd = Cmd(
                repo, session, command, ran.code, start, ran.seconds, tail(ran.err, 8) if ran.code else ""
            )
        except subprocess.TimeoutExpired:
            cmd = Cmd(repo, session, command, -1, start, time.monotonic() - self.t0 - start, "timed out")
        self.cmds.append(cmd)
        return cmd


def devup_loop(ctx: Ctx, repo: str, name: str, load: Load) -> None:
    """Cycles on session `name` until the time is up; then the session is taken down. A command
    that does not exit 0 is recorded, the session is taken down (`--force`) and a new cycle
    starts, so that the load goes on."""
    ctx.sessions.add(name)
    exists = False
    while not load.over():
        for command, args in cycle(name):
            if load.over():
                if exists and not load.abort.is_set():
                    load.timed(repo, name, "down (time up)", ["down", name], ctx)
                return
            cmd = load.timed(repo, name, command, args, ctx)
            if cmd.code != 0:
                load.timed(repo, name, "down --force (after a failure)", ["down", name, "--force"], ctx)
                exists = False
                break
            exists = command != "down"


def raw_loop(ctx: Ctx, ports: range, load: Load) -> None:
    """The hand-made equivalents, one after the other, under the same load: a host session's up
    and down (worktree and process), `git worktree list` (what `ls` stands on) and `python -c
    pass` (the interpreter's start-up, which every devup command pays)."""
    i = 0
    while not load.over():
        i += 1
        name = f"rawprobe-{i}"
        start = time.monotonic() - load.t0
        try:
            seconds = raw_host_up(ctx, name, free_port(ports), load.raw_live)
            load.cmds.append(Cmd("raw", name, "raw up", 0, start, seconds))
            for command, args in (
                ("git worktree list", ["git", "worktree", "list"]),
                ("python -c pass", [sys.executable, "-c", "pass"]),
            ):
                start = time.monotonic() - load.t0
                ran = run(args, cwd=ctx.repo, env=ctx.env)
                load.cmds.append(Cmd("raw", name, command, 0, start, ran.seconds))
            start = time.monotonic() - load.t0
            seconds = raw_host_down(ctx, load.raw_live[-1], load.raw_live)
            load.cmds.append(Cmd("raw", name, "raw down", 0, start, seconds))
        except BenchBroken as exc:
            load.cmds.append(Cmd("raw", name, "raw (broken)", 1, start, 0.0, tail(str(exc), 4)))
            for raw in list(load.raw_live):
                raw_host_force(raw)
                load.raw_live.remove(raw)


def sample_load(load: Load, every: float = 5.0) -> None:
    while not load.done.wait(every):
        load.loadavg.append(os.getloadavg()[0])


def run_load(loops: list[tuple[Ctx, str, str]], raw: tuple[Ctx, range] | None, seconds: float) -> Load:
    """Every loop (context, repo label, session) in a thread of its own, the raw probe in one
    more, for `seconds`; returns when every loop has taken its session down."""
    load = Load(seconds=seconds)
    load.loadavg.append(os.getloadavg()[0])
    threads = [
        threading.Thread(target=devup_loop, args=(ctx, repo, name, load), name=name, daemon=True)
        for ctx, repo, name in loops
    ]
    if raw is not None:
        threads.append(threading.Thread(target=raw_loop, args=(*raw, load), name="raw", daemon=True))
    sampler = threading.Thread(target=sample_load, args=(load,), daemon=True)
    sampler.start()
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # a join with a timeout lets Ctrl-C through
                t.join(timeout=0.5)
    except BaseException:
        load.abort.set()  # the loops start nothing more; the bench's cleanup takes over
        raise
    finally:
        load.done.set()
        load.loadavg.append(os.getloadavg()[0])
    return load


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest sample with at least q% of the samples at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
