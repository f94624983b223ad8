"""The raw sequence: what a user would script by hand for the same environment."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from kit import proc as kit_proc
from kit.proc import BENCH_LABEL, GROUPS, NATIVE, POLL, BenchBroken, answers, port_is_free, run
from kit.project import Ctx, RawEnv


def raw_override(group: str, ports: dict[str, int], run_id: str) -> str:
    """The raw script's own port remapping, like devup's: ports replaced, a label for cleanup."""
    label = f'{{{BENCH_LABEL}: "{run_id}"}}'
    lines = ["services:"]
    for svc, target in GROUPS[group]:
        lines += [f"  {svc}:", f'    ports: !override ["{ports[svc]}:{target}/tcp"]', f"    labels: {label}"]
    lines += ["volumes:", *[f"  {svc}-data: {{labels: {label}}}" for svc, _ in GROUPS[group]]]
    lines += ["networks:", f"  default: {{labels: {label}}}"]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def podman_healthchecks(project: str) -> Iterator[None]:
    """On Podman without systemd nothing runs a healthcheck and `up --wait` never ends: the raw
    script does what its user would, `podman healthcheck run` for the project's containers every
    second (the bench's interval) while compose waits. On Docker, nothing."""
    if kit_proc.ENGINE != "podman":
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0):
            listed = subprocess.run(
                ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"],
                capture_output=True,
                text=True,
            )
            for cid in listed.stdout.split():
                subprocess.run(["podman", "healthcheck", "run", cid], capture_output=True)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


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
        with podman_healthchecks(project):
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
