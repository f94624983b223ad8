"""Removing everything a bench run made, and listing what devup or the raw teardown left."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kit.proc import BENCH_LABEL, TAG_ENV, BenchBroken, docker_lines, running, running_lock, stop_child, tail
from kit.project import Ctx
from kit.raw import raw_force_teardown


def tagged_pids(run_id: str) -> list[int]:
    """Live processes whose environment carries this bench run's tag (devup's services included)."""
    needle = f"{TAG_ENV}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def bench_objects(ctx: Ctx) -> list[tuple[str, str]]:
    """Every docker object this bench run made: devup's (repo label) and the raw script's."""
    found: list[tuple[str, str]] = []
    for label in (f"dev.devup.repo={ctx.repo_id}", f"{BENCH_LABEL}={ctx.run_id}"):
        f = ["--filter", f"label={label}"]
        found += [("container", n) for n in docker_lines("ps", "-a", *f, "--format", "{{.Names}}")]
        found += [("volume", n) for n in docker_lines("volume", "ls", "-q", *f)]
        found += [("network", n) for n in docker_lines("network", "ls", *f, "--format", "{{.Name}}")]
    # devup's compose projects are `<slug>-<6 hex of repo id>_<session>_<group>` (devup/model.py);
    # `<slug>_` is what devup before issue 10 named them.
    prefixes = (f"{ctx.project}-{ctx.repo_id[:6]}_", f"{ctx.project}_", f"benchraw-{ctx.run_id}-")
    for prefix in prefixes:
        for line in docker_lines(
            "ps", "-a", "--format", '{{.Names}}\t{{.Label "com.docker.compose.project"}}'
        ):
            cname, _, project = line.partition("\t")
            if project.startswith(prefix):
                found.append(("container", cname))
    return sorted(set(found))


def cleanup(ctx: Ctx | None, tmp: Path, *, quiet: bool, others: Sequence[Ctx] = ()) -> list[str]:
    """Remove everything the bench made; returns what could not be removed. `others`: more
    repositories of the same run (same run id and temp dir), each with its own DEVUP_HOME or not;
    every repository's sessions are brought down before anything is looked for, so that one
    repository's running services are never taken for another's leftovers."""

    def say(msg: str) -> None:
        if not quiet:
            print(f"cleanup: {msg}", file=sys.stderr)

    with running_lock:
        still_running = list(running)
    for proc in still_running:
        say(f"stopping {shlex.join(proc.args)}")  # type: ignore[arg-type]
        stop_child(proc)
    problems: list[str] = []
    contexts = [c for c in (ctx, *others) if c is not None]
    for c in contexts:
        problems += _down_sessions(c)
        for raw in list(c.raws):
            raw_force_teardown(c, raw)
    for c in contexts:
        try:
            objects = bench_objects(c)
        except BenchBroken as exc:
            objects = []
            problems.append(str(exc))
        if objects:
            c.leaks.append("at cleanup: " + ", ".join(f"{k} {n}" for k, n in objects))
            say("force-removing " + ", ".join(f"{k} {n}" for k, n in objects))
            rm = {"container": ["rm", "-f"], "volume": ["volume", "rm", "-f"], "network": ["network", "rm"]}
            for kind in ("container", "volume", "network"):
                names = [n for k, n in objects if k == kind]
                if names:
                    subprocess.run(["docker", *rm[kind], *names], capture_output=True)
    for run_id in dict.fromkeys(c.run_id for c in contexts):
        pids = tagged_pids(run_id)
        if pids:
            contexts[0].leaks.append(f"at cleanup: processes {pids}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
    shutil.rmtree(tmp, ignore_errors=True)
    for c in contexts:
        try:
            remaining = bench_objects(c)
        except BenchBroken as exc:
            remaining = [("check failed", str(exc))]
        if remaining:
            problems.append("docker objects remain: " + ", ".join(f"{k} {n}" for k, n in remaining))
    for run_id in dict.fromkeys(c.run_id for c in contexts):
        remaining_pids = tagged_pids(run_id)
        if remaining_pids:
            problems.append(f"processes remain: {remaining_pids}")
    if tmp.exists():
        problems.append(f"temp dir remains: {tmp}")
    return problems


def _down_sessions(ctx: Ctx) -> list[str]:
    """`devup down --force` of every session the repository lists or the bench used, 4 at a time."""
    if not ctx.state.is_dir():
        return []
    ran = ctx.dv("ls", "--json", check=False)
    with contextlib.suppress(ValueError):
        ctx.sessions.update(row["session"] for row in json.loads(ran.out or "[]"))
    names = sorted(ctx.sessions)
    with ThreadPoolExecutor(max_workers=4) as pool:
        downs = list(pool.map(lambda n: ctx.dv("down", n, "--force", check=False), names))
    ctx.dv("gc", check=False)  # the router of the hostnames (SPEC §9), shared by the sessions: gc stops it
    return [
        f"devup down {name} exited {ran.code}: {tail(ran.err, 3)}"
        for name, ran in zip(names, downs, strict=True)
        if ran.code != 0
    ]
