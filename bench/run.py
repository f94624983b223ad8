"""devup performance benchmark: devup against the equivalent raw commands, in the same run.

Run from the repository root:  .venv/bin/python bench/run.py [--rounds N] [--json FILE]

It is a measurement, not a test: it prints a table of ratios against the targets and exits 0
whatever they say. It exits 1 only when the bench itself could not measure (a command it needs
failed) or could not clean up after itself. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

BUSYBOX = os.environ.get("DEVUP_BENCH_BUSYBOX", "devup-local/busybox:latest")
BENCH_LABEL = "dev.devup.bench"
TAG_ENV = "DEVUP_BENCH_RUN"  # in the environment of every process the bench starts (and their children)
POLL = 0.05  # the raw script's readiness poll interval
LS_SESSIONS = 20

# (service, container port) per compose group; the same files serve devup and the raw sequence.
GROUPS: dict[str, list[tuple[str, int]]] = {"a": [("a1", 8080), ("a2", 8081)], "b": [("b1", 8080)]}
NATIVE = ["web1", "web2"]


class BenchBroken(Exception):
    """The bench could not take a measurement (not: devup was slow)."""


# --- subprocesses ---------------------------------------------------------------------------

_current: list[subprocess.Popen[bytes]] = []
_current_lock = threading.Lock()


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
    with _current_lock:
        _current.append(proc)
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
        _stop_child(proc)
        raise
    finally:
        with _current_lock:
            if proc in _current:
                _current.remove(proc)
    ran = Ran(
        list(args),
        code,
        seconds,
        b"".join(out_chunks).decode(errors="replace"),
        "\n".join(line for _, line in err_lines),
        err_lines,
    )
    if check and code != 0:
        raise BenchBroken(f"`{shlex.join(args)}` exited {code}:\n{_tail(ran.out + ran.err)}")
    return ran


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
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


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def docker_lines(*args: str) -> list[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchBroken(f"`docker {' '.join(args)}` exited {result.returncode}: {result.stderr.strip()}")
    return [line for line in result.stdout.splitlines() if line.strip()]


def port_is_free(port: int) -> bool:
    """The same check devup makes (devup/state.py port_is_free)."""
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


# --- the throwaway project -------------------------------------------------------------------


def compose_file(services: list[tuple[str, int]]) -> str:
    lines = ["services:"]
    for name, port in services:
        lines += [
            f"  {name}:",
            f"    image: {BUSYBOX}",
            "    init: true",
            f'    command: ["sh", "-c", "mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p {port} -h /www"]',
            f'    ports: ["{port}:{port}"]',
            f'    healthcheck: {{test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/"], '
            "interval: 1s, timeout: 2s, retries: 30}",
            f"    volumes: [{name}-data:/data]",
        ]
    lines.append("volumes:")
    lines += [f"  {name}-data: {{}}" for name, _ in services]
    return "\n".join(lines) + "\n"


def devup_toml(project: str, port_base: int) -> str:
    web = f"{shlex.quote(sys.executable)} -m http.server $PORT --bind 127.0.0.1"
    parts = [
        "[project]",
        f'name = "{project}"',
        'mode = "hybrid"',
        "",
        "# A window of its own: test suites running on the same engine lease from 20000 up.",
        "[ports]",
        f"range = [{port_base}, {port_base + 149}]",
        "",
    ]
    for group in GROUPS:
        parts += [f"[groups.{group}]", f'files = ["compose/{group}.yaml"]', ""]
    for svc in NATIVE:
        parts += [
            f"[services.{svc}]",
            f"run = {json.dumps(web)}",
            'modes = ["hybrid"]',
            "port = true",
            'ready = { http = "/" }',
            "",
        ]
    parts += [
        "# Only host-mode sessions run this: the cheap sessions that fill `devup ls`.",
        "[services.tiny]",
        'run = "exec sleep 3600"',
        'modes = ["host"]',
        "",
        "# A no-op, so that DEVUP_FAULT=raise@before:post_up has a step to fail in.",
        "[hooks]",
        'post_up = "true"',
    ]
    return "\n".join(parts) + "\n"


@dataclass
class Ctx:
    tmp: Path
    repo: Path
    empty_repo: Path
    state: Path
    run_id: str
    project: str
    devup: list[str]
    env: dict[str, str]
    port_base: int = 0  # devup leases from port_base .. +149; the raw script uses +150 .. +299
    raw_port_next: int = 0
    repo_id: str = ""
    failures: list[str] = field(default_factory=list)  # rounds that could not be measured
    sessions: set[str] = field(default_factory=set)  # every devup session name the bench used
    raws: list[RawEnv] = field(default_factory=list)  # raw environments not yet torn down
    leaks: list[str] = field(default_factory=list)  # what devup or the raw teardown left behind

    def dv(
        self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Ran:
        env = {**self.env, **(extra_env or {})}
        return run([*self.devup, *args], cwd=cwd or self.repo, env=env, check=check)


def git(cwd: Path, *args: str, env: dict[str, str]) -> None:
    run(["git", *args], cwd=cwd, env=env)


def make_repo(path: Path, files: dict[str, str], env: dict[str, str]) -> None:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main", env=env)
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    git(path, "add", "-A", env=env)
    git(path, "commit", "-qm", "init", env=env)


def setup(tmp: Path) -> Ctx:
    run_id = os.urandom(3).hex()
    project = f"bench-{run_id}"
    state = tmp / "state"
    env = {
        **os.environ,
        "DEVUP_HOME": str(state),
        TAG_ENV: run_id,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }
    for var in ("DEVUP_FAULT", "XDG_STATE_HOME"):
        env.pop(var, None)
    script = Path(sys.executable).parent / "devup"
    devup = [str(script)] if script.is_file() else [sys.executable, "-m", "devup"]
    repo = tmp / "proj"
    # A window of 300 ports in 21000..30899: below the kernel's ephemeral range, clear of 20000.., where
    # test suites on the same engine lease (each with its own DEVUP_HOME, so leases do not see each other).
    port_base = 21000 + 300 * (int(run_id, 16) % 33)
    files = {
        "devup.toml": devup_toml(project, port_base),
        **{f"compose/{g}.yaml": compose_file(s) for g, s in GROUPS.items()},
    }
    make_repo(repo, files, env)
    empty = tmp / "empty"
    make_repo(empty, {"devup.toml": f'[project]\nname = "{project}-empty"\nmode = "host"\n'}, env)
    ctx = Ctx(
        tmp=tmp,
        repo=repo,
        empty_repo=empty,
        state=state,
        run_id=run_id,
        project=project,
        devup=devup,
        env=env,
        port_base=port_base,
    )
    # devup's repository id: its git common dir's real path, hashed (devup/paths.py repo_id_of).
    ctx.repo_id = hashlib.sha256(str((repo / ".git").resolve()).encode()).hexdigest()[:16]
    return ctx


# --- the raw sequence --------------------------------------------------------------------------


@dataclass
class RawEnv:
    name: str
    branch: str
    worktree: Path
    projects: dict[str, str]  # group -> compose project
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    up_s: float = 0.0


def raw_override(group: str, ports: dict[str, int], run_id: str) -> str:
    """The raw script's own port remapping, like devup's: ports replaced, a label for cleanup."""
    label = f'{{{BENCH_LABEL}: "{run_id}"}}'
    lines = ["services:"]
    for svc, target in GROUPS[group]:
        lines += [f"  {svc}:", f'    ports: !override ["{ports[svc]}:{target}/tcp"]', f"    labels: {label}"]
    lines += ["volumes:", *[f"  {svc}-data: {{labels: {label}}}" for svc, _ in GROUPS[group]]]
    lines += ["networks:", f"  default: {{labels: {label}}}"]
    return "\n".join(lines) + "\n"


def raw_port(ctx: Ctx) -> int:
    """The raw script's ports: the next free one in its half of the bench's window (untimed)."""
    for _ in range(150):
        port = ctx.port_base + 150 + ctx.raw_port_next % 150
        ctx.raw_port_next += 1
        if port_is_free(port):
            return port
    raise BenchBroken("no free port for the raw script")


def raw_up(ctx: Ctx, name: str) -> RawEnv:
    """git worktree add; compose up --wait per group in turn; start both processes; poll them."""
    raw = RawEnv(
        name=name,
        branch=f"raw-{name}",
        worktree=ctx.tmp / "raw-worktrees" / name,
        projects={g: f"benchraw-{ctx.run_id}-{name}-{g}" for g in GROUPS},
    )
    ctx.raws.append(raw)
    overrides = ctx.tmp / "raw-overrides" / name
    overrides.mkdir(parents=True)
    compose_ports = {svc: raw_port(ctx) for g in GROUPS for svc, _ in GROUPS[g]}
    web_ports = {svc: raw_port(ctx) for svc in NATIVE}
    logs = ctx.tmp / "raw-logs" / name
    logs.mkdir(parents=True)
    web = f"{shlex.quote(sys.executable)} -m http.server $PORT --bind 127.0.0.1"

    t0 = time.perf_counter()
    run(["git", "worktree", "add", "-b", raw.branch, str(raw.worktree)], cwd=ctx.repo, env=ctx.env)
    for group, project in raw.projects.items():
        override = overrides / f"{group}.override.yaml"
        override.write_text(raw_override(group, compose_ports, ctx.run_id))
        run(
            [
                "docker",
                "compose",
                "-p",
                project,
                "-f",
                str(raw.worktree / "compose" / f"{group}.yaml"),
                "-f",
                str(override),
                "up",
                "-d",
                "--wait",
            ],
            cwd=raw.worktree,
            env=ctx.env,
        )
    for svc in NATIVE:
        with open(logs / f"{svc}.log", "ab") as log:
            raw.procs.append(
                subprocess.Popen(
                    ["sh", "-c", web],
                    cwd=raw.worktree,
                    env={**ctx.env, "PORT": str(web_ports[svc])},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    waiting = set(web_ports.values())
    deadline = time.monotonic() + 60
    while waiting:
        waiting = {p for p in waiting if not answers(p)}
        if not waiting:
            break
        if time.monotonic() > deadline or any(p.poll() is not None for p in raw.procs):
            raise BenchBroken(f"raw processes did not answer on {sorted(waiting)}")
        time.sleep(POLL)
    run(["sh", "-c", "true"], cwd=raw.worktree, env=ctx.env)  # devup's post_up no-op hook
    raw.up_s = time.perf_counter() - t0
    return raw


def raw_force_teardown(ctx: Ctx, raw: RawEnv) -> None:
    """Untimed: whatever state a raw run was left in, remove it."""
    for proc in raw.procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
    for project in raw.projects.values():
        run(["docker", "compose", "-p", project, "down", "-v", "-t", "1"], env=ctx.env, check=False)
    if ctx.repo.is_dir():
        run(
            ["git", "worktree", "remove", "--force", str(raw.worktree)],
            cwd=ctx.repo,
            env=ctx.env,
            check=False,
        )
        run(["git", "branch", "-D", raw.branch], cwd=ctx.repo, env=ctx.env, check=False)
    if raw in ctx.raws:
        ctx.raws.remove(raw)


def raw_teardown(ctx: Ctx, raw: RawEnv) -> float:
    """Stop the processes; compose down -v per group; git worktree remove --force."""
    t0 = time.perf_counter()
    for proc in raw.procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in raw.procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for project in reversed(list(raw.projects.values())):
        run(["docker", "compose", "-p", project, "down", "-v"], env=ctx.env)
    run(["git", "worktree", "remove", "--force", str(raw.worktree)], cwd=ctx.repo, env=ctx.env)
    seconds = time.perf_counter() - t0
    ctx.raws.remove(raw)
    run(["git", "branch", "-D", raw.branch], cwd=ctx.repo, env=ctx.env)  # untimed housekeeping
    return seconds


# --- devup ---------------------------------------------------------------------------------------


def session_objects(ctx: Ctx, session: str | None = None) -> list[str]:
    """Containers, volumes and networks labelled as this bench repository's devup sessions."""
    filters = ["--filter", f"label=dev.devup.repo={ctx.repo_id}"]
    if session:
        filters += ["--filter", f"label=dev.devup.session={session}"]
    found = [f"container {n}" for n in docker_lines("ps", "-a", *filters, "--format", "{{.Names}}")]
    found += [f"volume {n}" for n in docker_lines("volume", "ls", "-q", *filters)]
    found += [f"network {n}" for n in docker_lines("network", "ls", *filters, "--format", "{{.Name}}")]
    return found


def check_gone(ctx: Ctx, session: str, after: str) -> None:
    left = session_objects(ctx, session)
    if left:
        ctx.leaks.append(f"after {after} of {session}: {', '.join(left)}")


def devup_up(ctx: Ctx, name: str) -> Ran:
    ctx.sessions.add(name)
    ran = ctx.dv("up", name, check=False)
    if ran.code != 0:
        raise BenchBroken(f"devup up {name} exited {ran.code}:\n{_tail(ran.out + ran.err)}")
    return ran


def devup_down(ctx: Ctx, name: str) -> Ran:
    ran = ctx.dv("down", name, check=False)
    if ran.code != 0:
        raise BenchBroken(f"devup down {name} exited {ran.code}:\n{_tail(ran.out + ran.err)}")
    return ran


def rollback_seconds(ran: Ran) -> float:
    """From devup announcing the rollback (stderr) to its exit: the unwinding alone."""
    for seconds, line in ran.err_lines:
        if "rolling back" in line:
            return ran.seconds - seconds
    for seconds, line in ran.err_lines:
        if line.lstrip().startswith("✗"):
            return ran.seconds - seconds
    raise BenchBroken(f"cannot find where the rollback started in:\n{ran.err}")


# --- rounds ----------------------------------------------------------------------------------------


@dataclass
class Samples:
    data: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, Ran] = field(default_factory=dict)  # devup's runs of the last round, for their stderr

    def add(self, key: str, value: float) -> None:
        self.data.setdefault(key, []).append(value)


def raw_cycle(ctx: Ctx, rnd: str, samples: Samples | None) -> None:
    raw = raw_up(ctx, rnd)
    down = raw_teardown(ctx, raw)
    if samples is not None:
        samples.add("raw_up", raw.up_s)
        samples.add("raw_down", down)


def devup_cycle(
    ctx: Ctx,
    rnd: str,
    samples: Samples | None,
    *,
    noop_runs: int,
    ls_runs: int,
    ls_ready: bool,
    profile: dict[str, object] | None = None,
) -> None:
    name = f"up-{rnd}"
    up = devup_up(ctx, name)
    if samples is not None:
        samples.add("devup_up", up.seconds)
        samples.steps["up"] = up
        for _ in range(noop_runs):
            again = devup_up(ctx, name)
            samples.add("devup_up_noop", again.seconds)
            if "already up" not in again.out:
                samples.steps["up (again)"] = again
                samples.add("noop_not_noop", 1.0)
        if ls_ready:
            for _ in range(ls_runs):
                ls = ctx.dv("ls")
                samples.add("devup_ls_20", ls.seconds)
        if profile is not None:
            profile[f"importtime: devup up {name} (already up)"] = importtime(ctx, ["up", name], ctx.repo)
            if ls_ready:
                profile[f"importtime: devup ls ({LS_SESSIONS} sessions)"] = importtime(ctx, ["ls"], ctx.repo)
    down = devup_down(ctx, name)
    check_gone(ctx, name, "devup down")
    if samples is not None:
        samples.add("devup_down", down.seconds)
        samples.steps["down"] = down

    name = f"rb-{rnd}"
    ctx.sessions.add(name)
    failed = ctx.dv("up", name, check=False, extra_env={"DEVUP_FAULT": "raise@before:post_up"})
    if failed.code != 1:
        raise BenchBroken(f"devup up {name} with a fault exited {failed.code}, not 1:\n{_tail(failed.err)}")
    check_gone(ctx, name, "rollback")
    if samples is not None:
        samples.add("devup_rollback", rollback_seconds(failed))
        samples.add("devup_failed_up_total", failed.seconds)
        samples.steps["up with fault (rollback)"] = failed


def salvage(ctx: Ctx) -> None:
    """After a broken round: remove its raw environment and its devup sessions (all but ls-*)."""
    for raw in list(ctx.raws):
        raw_force_teardown(ctx, raw)
    for name in sorted(n for n in ctx.sessions if not n.startswith("ls-")):
        if ctx.dv("down", name, "--force", check=False).code == 0:
            ctx.sessions.discard(name)


def make_ls_sessions(ctx: Ctx, count: int) -> float:
    """Host-mode sessions (one `sleep` each, no containers), created 4 at a time; returns the time."""
    names = [f"ls-{i:02d}" for i in range(1, count + 1)]
    ctx.sessions.update(names)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda n: ctx.dv("up", n, "--mode", "host", check=False), names))
    bad = [r for r in results if r.code != 0]
    if bad:
        raise BenchBroken(f"devup up --mode host exited {bad[0].code}:\n{_tail(bad[0].err)}")
    return time.perf_counter() - t0


def startup(ctx: Ctx, runs: int) -> dict[str, list[float]]:
    cmds: dict[str, tuple[list[str], Path]] = {
        "python_pass": ([sys.executable, "-c", "pass"], ctx.empty_repo),
        "devup_help": ([*ctx.devup, "--help"], ctx.empty_repo),
        "devup_ls_empty": ([*ctx.devup, "ls"], ctx.empty_repo),
    }
    for args, cwd in cmds.values():  # warm the page cache and the bytecode caches
        run(args, cwd=cwd, env=ctx.env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):  # interleaved, so drift hits all three alike
        for key, (args, cwd) in cmds.items():
            times[key].append(run(args, cwd=cwd, env=ctx.env).seconds)
    return times


def session_startup(ctx: Ctx, runs: int) -> dict[str, list[float]]:
    """The read-only commands on a repository with LS_SESSIONS sessions, interleaved with
    `python -c pass`: what each costs over starting the interpreter at all."""
    session = "ls-01"
    cmds: dict[str, tuple[list[str], Path]] = {
        "python_pass_s": ([sys.executable, "-c", "pass"], ctx.repo),
        "devup_ls_n": ([*ctx.devup, "ls"], ctx.repo),
        "devup_env": ([*ctx.devup, "env", session], ctx.repo),
        "devup_status": ([*ctx.devup, "status", session], ctx.repo),
    }
    if run([*ctx.devup, "path", session], cwd=ctx.repo, env=ctx.env, check=False).code == 0:
        cmds["devup_path"] = ([*ctx.devup, "path", session], ctx.repo)
    for args, cwd in cmds.values():
        run(args, cwd=cwd, env=ctx.env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):
        for key, (args, cwd) in cmds.items():
            times[key].append(run(args, cwd=cwd, env=ctx.env).seconds)
    return times


# --- cleanup ---------------------------------------------------------------------------------------


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


def cleanup(ctx: Ctx | None, tmp: Path, *, quiet: bool) -> list[str]:
    """Remove everything the bench made; returns what could not be removed."""

    def say(msg: str) -> None:
        if not quiet:
            print(f"cleanup: {msg}", file=sys.stderr)

    with _current_lock:
        running = list(_current)
    for proc in running:
        say(f"stopping {shlex.join(proc.args)}")  # type: ignore[arg-type]
        _stop_child(proc)
    problems: list[str] = []
    if ctx is not None:
        if ctx.state.is_dir():
            ran = ctx.dv("ls", "--json", check=False)
            with contextlib.suppress(ValueError):
                ctx.sessions.update(row["session"] for row in json.loads(ran.out or "[]"))
            with ThreadPoolExecutor(max_workers=4) as pool:
                downs = list(
                    pool.map(lambda n: ctx.dv("down", n, "--force", check=False), sorted(ctx.sessions))
                )
            for name, ran in zip(sorted(ctx.sessions), downs, strict=True):
                if ran.code != 0:
                    problems.append(f"devup down {name} exited {ran.code}: {_tail(ran.err, 3)}")
        for raw in list(ctx.raws):
            raw_force_teardown(ctx, raw)
        try:
            objects = bench_objects(ctx)
        except BenchBroken as exc:
            objects = []
            problems.append(str(exc))
        if objects:
            ctx.leaks.append("at cleanup: " + ", ".join(f"{k} {n}" for k, n in objects))
            say("force-removing " + ", ".join(f"{k} {n}" for k, n in objects))
            rm = {"container": ["rm", "-f"], "volume": ["volume", "rm", "-f"], "network": ["network", "rm"]}
            for kind in ("container", "volume", "network"):
                names = [n for k, n in objects if k == kind]
                if names:
                    subprocess.run(["docker", *rm[kind], *names], capture_output=True)
        pids = tagged_pids(ctx.run_id)
        if pids:
            ctx.leaks.append(f"at cleanup: processes {pids}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
    shutil.rmtree(tmp, ignore_errors=True)
    if ctx is not None:
        try:
            remaining = bench_objects(ctx)
        except BenchBroken as exc:
            remaining = [("check failed", str(exc))]
        remaining_pids = tagged_pids(ctx.run_id)
        if remaining:
            problems.append("docker objects remain: " + ", ".join(f"{k} {n}" for k, n in remaining))
        if remaining_pids:
            problems.append(f"processes remain: {remaining_pids}")
    if tmp.exists():
        problems.append(f"temp dir remains: {tmp}")
    return problems


# --- report ------------------------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    devup: float | None
    raw: float | None
    kind: str  # "ratio" | "abs" | "overhead"
    limit: float
    note: str = ""

    @property
    def value(self) -> float | None:
        if self.devup is None:
            return None
        if self.kind == "ratio":
            return self.devup / self.raw if self.raw else None
        if self.kind == "overhead":
            return self.devup - self.raw if self.raw is not None else None
        return self.devup

    @property
    def passed(self) -> bool | None:
        v = self.value
        return None if v is None else v <= self.limit

    def target(self) -> str:
        return {
            "ratio": f"<= {self.limit:.2f}x",
            "abs": f"< {self.limit:.2f} s",
            "overhead": f"<= +{self.limit:.2f} s",
        }[self.kind]

    def cells(self) -> list[str]:
        def s(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f} s"

        v = self.value
        ratio = "-"
        if v is not None and self.kind == "ratio":
            ratio = f"{v:.2f}x"
        elif v is not None and self.kind == "overhead":
            ratio = f"{v:+.3f} s"
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]
        return [self.metric, s(self.devup), s(self.raw), ratio, self.target(), verdict]


def median(values: list[float] | None) -> float | None:
    return statistics.median(values) if values else None


def build_rows(samples: Samples) -> list[Row]:
    d = samples.data
    m = {k: median(v) for k, v in d.items()}
    return [
        Row("up (2 groups + 2 services)", m.get("devup_up"), m.get("raw_up"), "ratio", 1.10),
        Row("down", m.get("devup_down"), m.get("raw_down"), "ratio", 1.10),
        Row("rollback (fault before post_up)", m.get("devup_rollback"), m.get("raw_down"), "ratio", 1.10),
        Row("up of a session already up", m.get("devup_up_noop"), None, "abs", 0.25),
        Row(f"ls with {LS_SESSIONS} sessions", m.get("devup_ls_20"), None, "abs", 0.3),
        Row(
            f"startup: devup ls ({LS_SESSIONS - 1} sessions)",
            m.get("devup_ls_n"),
            m.get("python_pass_s"),
            "overhead",
            0.15,
        ),
        Row("startup: devup env NAME", m.get("devup_env"), m.get("python_pass_s"), "overhead", 0.15),
        Row("startup: devup status NAME", m.get("devup_status"), m.get("python_pass_s"), "overhead", 0.15),
        Row("startup: devup path NAME", m.get("devup_path"), m.get("python_pass_s"), "overhead", 0.15),
        Row("startup: devup --help", m.get("devup_help"), m.get("python_pass"), "overhead", 0.15),
        Row(
            "startup: devup ls (no sessions)", m.get("devup_ls_empty"), m.get("python_pass"), "overhead", 0.15
        ),
    ]


def print_table(rows: list[Row]) -> None:
    head = ["metric", "devup", "raw", "ratio", "target", "result"]
    table = [head, *[r.cells() for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for i, r in enumerate(table):
        print(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def step_lines(ran: Ran) -> str:
    """devup's progress lines, each with the moment it reached the bench (seconds since the fork)."""
    keep = [
        (t, line.strip())
        for t, line in ran.err_lines
        if re.match(r"\s*(✓|✗|↶|could not|rolling back|warning|session)", line)
    ]
    out = [f"    at {t:6.2f}s  {line}" for t, line in keep] or ["    (no step lines)"]
    out.append(f"    at {ran.seconds:6.2f}s  (exit {ran.code})")
    return "\n".join(out)


def importtime(ctx: Ctx, args: list[str], cwd: Path, min_ms: float = 10.0) -> str:
    """Where `python -X importtime -m devup ARGS` spends its import time: a two-level tree of the
    imports of at least `min_ms` (cumulative), in import order. Depth 0 entries that are not
    devup.cli were imported while the command ran (lazily)."""
    ran = run([sys.executable, "-X", "importtime", "-m", "devup", *args], cwd=cwd, env=ctx.env, check=False)
    rows = []
    for line in ran.err.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match.group(2)) / 1e3, (len(match.group(3)) - 1) // 2, match.group(4)))
    # importtime prints a module after its own imports: collect children, print parents first.
    out: list[str] = []
    pending: list[tuple[float, int, str]] = []
    for ms, depth, name in rows:
        if depth > 1:
            continue
        if depth == 1:
            pending.append((ms, depth, name))
            continue
        if ms >= min_ms:
            out.append(f"    {ms:7.1f} ms  {name}")
            out += [f"    {c:7.1f} ms    {n}" for c, _, n in pending if c >= min_ms]
        pending = []
    total = sum(ms for ms, depth, _ in rows if depth == 0)
    return f"    {total:7.1f} ms  (all imports)\n" + "\n".join(out)


# --- main ----------------------------------------------------------------------------------------------


def devup_version() -> str:
    """The checkout being measured: commit, and whether its working tree has changes."""
    root = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "devup"],
        capture_output=True,
        text=True,
    )
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes in devup/" if dirty.stdout.strip() else "")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def preflight() -> None:
    for args in (
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        ["docker", "compose", "version"],
        ["docker", "image", "inspect", BUSYBOX],
        ["git", "--version"],
    ):
        result = subprocess.run(args, capture_output=True, text=True)
        if result.returncode != 0:
            raise BenchBroken(f"`{shlex.join(args)}` failed: {result.stderr.strip()} (see bench/README.md)")
    # Measure devup as a regular install runs it: pip byte-compiles a package it installs, an
    # editable install leaves that to the first run, and with PYTHONDONTWRITEBYTECODE set every
    # run would compile devup's modules again.
    compiled = subprocess.run(
        [
            sys.executable,
            "-c",
            "import compileall, devup, os; compileall.compile_dir(os.path.dirname(devup.__file__), quiet=1)",
        ],
        capture_output=True,
        text=True,
    )
    if compiled.returncode != 0:
        raise BenchBroken(f"could not byte-compile devup: {compiled.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median reported; default 3)")
    parser.add_argument("--startup-runs", type=int, default=10, help="runs per startup command (default 10)")
    parser.add_argument(
        "--noop-runs", type=int, default=3, help="`up` of an up session per round (default 3)"
    )
    parser.add_argument("--ls-runs", type=int, default=5, help="`ls` runs per round (default 5)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up cycle")
    parser.add_argument(
        "--importtime",
        action="store_true",
        help="also show where import time goes: `devup --help`, `ls` (20 sessions), `up` of an up session",
    )
    parser.add_argument("--json", metavar="FILE", help="write the samples and results to FILE")
    opts = parser.parse_args(argv)
    if opts.rounds < 1:
        parser.error("--rounds must be at least 1")

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    version = devup_version()
    tmp = Path(tempfile.mkdtemp(prefix="devup-bench-"))
    ctx: Ctx | None = None
    samples = Samples()
    code = 0
    extra: dict[str, object] = {}
    try:
        preflight()
        ctx = setup(tmp)
        log(f"bench: project {ctx.project} in {tmp} (devup: {shlex.join(ctx.devup)})")
        log(f"bench: startup, {opts.startup_runs} runs each")
        for key, values in startup(ctx, opts.startup_runs).items():
            samples.data[key] = values
        if not opts.no_warmup:
            log("bench: warm-up cycle (untimed)")
            raw_cycle(ctx, "w", None)
            devup_cycle(ctx, "w", None, noop_runs=0, ls_runs=0, ls_ready=False)
        log(f"bench: creating {LS_SESSIONS - 1} host-mode sessions for `ls`")
        extra["ls_sessions_create_s"] = make_ls_sessions(ctx, LS_SESSIONS - 1)
        log(f"bench: read-only commands with {LS_SESSIONS - 1} sessions, {opts.startup_runs} runs each")
        for key, values in session_startup(ctx, opts.startup_runs).items():
            samples.data[key] = values
        for i in range(1, opts.rounds + 1):
            rnd = f"r{i}"
            order: list[Callable[[], None]] = [
                functools.partial(raw_cycle, ctx, rnd, samples),
                functools.partial(
                    devup_cycle,
                    ctx,
                    rnd,
                    samples,
                    noop_runs=opts.noop_runs,
                    ls_runs=opts.ls_runs,
                    ls_ready=True,
                    profile=extra if opts.importtime and i == opts.rounds else None,
                ),
            ]
            if i % 2 == 0:
                order.reverse()  # alternate who goes first, so drift does not favour one side
            log(f"bench: round {i}/{opts.rounds}")
            for part in order:
                try:
                    part()
                except BenchBroken as exc:
                    # One broken measurement (a port raced away on a busy machine, say) must not
                    # void the others: note it, clean that round up, go on.
                    log(f"bench: round {i} broken: {exc}")
                    ctx.failures.append(f"round {i}: {exc}")
                    salvage(ctx)
        if ctx.failures and not any(samples.data.get(k) for k in ("raw_up", "devup_up")):
            raise BenchBroken("no round could be measured")
        if opts.importtime:
            extra["importtime: devup --help"] = importtime(ctx, ["--help"], ctx.empty_repo)
    except KeyboardInterrupt:
        log("bench: interrupted; cleaning up")
        code = 130
    except BenchBroken as exc:
        log(f"bench: broken: {exc}")
        code = 1
    finally:
        problems = cleanup(ctx, tmp, quiet=False)
        for p in problems:
            log(f"bench: CLEANUP PROBLEM: {p}")
        if problems and code == 0:
            code = 1
    if code == 130:
        return code

    rows = build_rows(samples)
    print()
    print(
        f"devup bench: {opts.rounds} round(s), medians; startup: {opts.startup_runs} runs each; "
        f"Python {platform.python_version()}; devup at {version}; load average at the end "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    print_table(rows)
    d = samples.data
    print()
    if d.get("devup_failed_up_total") and d.get("raw_up") and d.get("raw_down"):
        total = median(d["devup_failed_up_total"]) or 0
        raw_total = (median(d["raw_up"]) or 0) + (median(d["raw_down"]) or 0)
        print(
            f"info: failed `up` end to end {total:.3f} s vs raw up + teardown {raw_total:.3f} s "
            f"({total / raw_total:.2f}x)"
        )
    if "ls_sessions_create_s" in extra:
        print(
            f"info: `ls` sessions: {LS_SESSIONS - 1} host-mode (one `sleep` service each) + the round's hybrid "
            f"session; created in {extra['ls_sessions_create_s']:.1f} s, 4 at a time"
        )
    for key in (
        "raw_up",
        "devup_up",
        "raw_down",
        "devup_down",
        "devup_rollback",
        "devup_up_noop",
        "devup_ls_20",
        "python_pass",
        "devup_help",
        "devup_ls_empty",
    ):
        if d.get(key):
            print(f"samples {key:<15} " + " ".join(f"{v:.3f}" for v in d[key]))
    if d.get("noop_not_noop"):
        print(
            f"warning: {len(d['noop_not_noop'])} of {len(d.get('devup_up_noop', []))} `devup up` of an up "
            "session were NOT no-ops (devup found it unhealthy and resumed it); see its steps below"
        )
    if ctx is not None and ctx.failures:
        print("\nBROKEN ROUNDS (not in the medians):")
        for failure in ctx.failures:
            print(f"  - {_tail(failure, 6)}")
        code = code or 1
    if ctx is not None and ctx.leaks:
        print("\nLEFT BEHIND by devup or the raw teardown (removed by the bench since):")
        for leak in ctx.leaks:
            print(f"  - {leak}")
    elif ctx is not None:
        print(
            "\nleak check: nothing labelled dev.devup.session/dev.devup.repo or left by the raw runs remains"
        )
    for title, key in (
        ("devup up", "up"),
        ("devup up (not a no-op!)", "up (again)"),
        ("devup down", "down"),
        ("devup up with DEVUP_FAULT=raise@before:post_up", "up with fault (rollback)"),
    ):
        if key in samples.steps:
            print(f"\n{title}, steps of the last round (stderr):")
            print(step_lines(samples.steps[key]))
    for key in [k for k in extra if k.startswith("importtime")]:
        print(f"\n{key} (python -X importtime -m devup; cumulative ms, >= 10 ms, two levels):")
        print(extra[key])
    if opts.json:
        doc = {
            "rounds": opts.rounds,
            "python": platform.python_version(),
            "devup": version,
            "samples": d,
            "results": [
                {
                    "metric": r.metric,
                    "devup": r.devup,
                    "raw": r.raw,
                    "kind": r.kind,
                    "value": r.value,
                    "target": r.target(),
                    "pass": r.passed,
                }
                for r in rows
            ],
            "leaks": ctx.leaks if ctx else [],
            "broken_rounds": ctx.failures if ctx else [],
            "extra": {k: v for k, v in extra.items() if isinstance(v, int | float)},
            "exit_code": code,
        }
        Path(opts.json).write_text(json.dumps(doc, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
