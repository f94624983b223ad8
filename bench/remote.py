"""devup on a remote engine against the raw sequence on the same engine, in the same run.

Run from the repository root, as root:  .venv/bin/python bench/remote.py [--rounds N]

The remote engine is a second dockerd in a network namespace the bench creates and removes
(tests/remote_engine.py: a veth pair in 198.18.0.0/15, TCP to the namespace's address only),
reached through a docker context `remote`. The project is bench/run.py's (hybrid: groups `a`
and `b`, native services `web1` and `web2`). Each round, in alternating order:

- devup: `devup up NAME --context remote` (a new session: worktree, both groups there, both
  services here, the no-op hook), timed; then `devup down NAME`, timed.
- raw: `git worktree add`; `docker --context remote compose -p P -f G.yaml -f override up -d
  --wait` per group in turn (ports chosen free on the engine's host beforehand, untimed); both
  processes started and polled until they answer; `sh -c true`; timed. Teardown: stop the
  processes, `compose down -v` per group, `git worktree remove`, timed.

A measurement, not a test: it prints the medians and their ratios and exits 0 whatever they
are; 1 only when it could not measure or clean up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from kit.proc import BENCH_LABEL, BUSYBOX, GROUPS, NATIVE, POLL, BenchBroken, Ran, answers, port_is_free, run  # noqa: E402
from kit.project import Ctx, RawEnv, setup  # noqa: E402
from kit.raw import raw_override  # noqa: E402
from kit.report import step_lines  # noqa: E402

from tests.remote_engine import CONTEXT, RemoteEngine, Unavailable, remote_engine  # noqa: E402


def free_there(engine: RemoteEngine, port: int, published: set[int]) -> bool:
    """What a careful script checks on the remote host: not published, nothing answering."""
    if port in published:
        return False
    try:
        with socket.create_connection((engine.address, port), timeout=0.5):
            return False
    except OSError:
        return True


def published(engine: RemoteEngine) -> set[int]:
    out = engine.docker("ps", "--format", "{{.Ports}}")
    found = set()
    for part in out.replace("\n", ",").split(","):
        if "->" in part:
            found.add(int(part.split("->")[0].rsplit(":", 1)[1]))
    return found


def raw_up(ctx: Ctx, engine: RemoteEngine, name: str) -> RawEnv:
    raw = RawEnv(
        name=name,
        branch=f"raw-{name}",
        worktree=ctx.tmp / "raw-worktrees" / name,
        projects={g: f"benchraw-{ctx.run_id}-{name}-{g}" for g in GROUPS},
    )
    ctx.raws.append(raw)
    overrides = ctx.tmp / "raw-overrides" / name
    overrides.mkdir(parents=True)
    taken = published(engine)
    ports: dict[str, int] = {}
    for svc in [s for g in GROUPS.values() for s, _ in g]:
        while True:
            port = ctx.port_base + 150 + ctx.raw_port_next % 150
            ctx.raw_port_next += 1
            if free_there(engine, port, taken):
                ports[svc] = port
                break
    web_ports = {}
    for svc in NATIVE:
        while True:
            port = ctx.port_base + 150 + ctx.raw_port_next % 150
            ctx.raw_port_next += 1
            if port_is_free(port):
                web_ports[svc] = port
                break
    logs = ctx.tmp / "raw-logs" / name
    logs.mkdir(parents=True)
    web = f"{shlex.quote(sys.executable)} -m http.server $PORT --bind 127.0.0.1"

    t0 = time.perf_counter()
    run(["git", "worktree", "add", "-b", raw.branch, str(raw.worktree)], cwd=ctx.repo, env=ctx.env)
    for group, project in raw.projects.items():
        override = overrides / f"{group}.override.yaml"
        override.write_text(raw_override(group, ports, ctx.run_id))
        run(
            [
                "docker", "--context", CONTEXT, "compose", "-p", project,
                "-f", str(raw.worktree / "compose" / f"{group}.yaml"), "-f", str(override),
                "up", "-d", "--wait",
            ],
            cwd=raw.worktree,
            env=ctx.env,
        )  # fmt: skip
    for svc in NATIVE:
        with open(logs / f"{svc}.log", "ab") as log:
            raw.procs.append(
                subprocess.Popen(
                    ["sh", "-c", web],
                    cwd=raw.worktree,
                    env={**ctx.env, "PORT": str(web_ports[svc]), "DEVUP_HOST": engine.address},
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
        if time.monotonic() > deadline:
            raise BenchBroken(f"raw processes did not answer on {sorted(waiting)}")
        time.sleep(POLL)
    run(["sh", "-c", "true"], cwd=raw.worktree, env=ctx.env)
    raw.up_s = time.perf_counter() - t0
    return raw


def raw_teardown(ctx: Ctx, raw: RawEnv) -> float:
    t0 = time.perf_counter()
    for proc in raw.procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in raw.procs:
        proc.wait(timeout=10)
    for project in reversed(list(raw.projects.values())):
        run(["docker", "--context", CONTEXT, "compose", "-p", project, "down", "-v"], env=ctx.env)
    run(["git", "worktree", "remove", "--force", str(raw.worktree)], cwd=ctx.repo, env=ctx.env)
    seconds = time.perf_counter() - t0
    ctx.raws.remove(raw)
    run(["git", "branch", "-D", raw.branch], cwd=ctx.repo, env=ctx.env)
    return seconds


def force_cleanup(ctx: Ctx, engine: RemoteEngine) -> list[str]:
    """Whatever a broken round left: sessions downed, raw projects removed; what remains is listed."""
    for name in sorted(ctx.sessions):
        ctx.dv("down", name, "--force", check=False)
    for raw in list(ctx.raws):
        for proc in raw.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for project in raw.projects.values():
            run(
                ["docker", "--context", CONTEXT, "compose", "-p", project, "down", "-v", "-t", "1"],
                env=ctx.env,
                check=False,
            )
    left = []
    for label in (f"dev.devup.repo={ctx.repo_id}", f"{BENCH_LABEL}={ctx.run_id}"):
        for kind, cmd in (
            ("container", ["ps", "-a"]),
            ("volume", ["volume", "ls"]),
            ("network", ["network", "ls"]),
        ):
            fmt = "{{.Names}}" if kind == "container" else "{{.Name}}"
            out = engine.docker(*cmd, "--filter", f"label={label}", "--format", fmt, check=False)
            left += [f"{kind} {n}" for n in out.split()]
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "devup")], check=True)
    try:
        with remote_engine(BUSYBOX) as engine, tempfile.TemporaryDirectory(prefix="devup-bench-") as tmp:
            return measure(engine, Path(tmp), args.rounds)
    except Unavailable as exc:
        print(f"cannot start the remote engine: {exc}", file=sys.stderr)
        return 1


def measure(engine: RemoteEngine, tmp: Path, rounds: int) -> int:
    ctx = setup(tmp)
    ctx.env["DOCKER_CONFIG"] = str(engine.config_dir)
    ctx.env.pop("DOCKER_HOST", None)
    ctx.env.pop("DOCKER_CONTEXT", None)
    samples: dict[str, list[float]] = {"devup up": [], "raw up": [], "devup down": [], "raw down": []}
    broken = False
    last_up: Ran | None = None
    try:
        for n in range(1, rounds + 1):
            name = f"up-r{n}"
            sides = ["raw", "devup"] if n % 2 else ["devup", "raw"]
            for side in sides:
                if side == "raw":
                    raw = raw_up(ctx, engine, f"r{n}")
                    samples["raw up"].append(raw.up_s)
                    samples["raw down"].append(raw_teardown(ctx, raw))
                else:
                    ctx.sessions.add(name)
                    up = last_up = ctx.dv("up", name, "--context", CONTEXT)
                    samples["devup up"].append(up.seconds)
                    down = ctx.dv("down", name)
                    samples["devup down"].append(down.seconds)
                    ctx.sessions.discard(name)
            print(
                f"round {n}: devup up {samples['devup up'][-1]:.2f}s, raw up {samples['raw up'][-1]:.2f}s; "
                f"devup down {samples['devup down'][-1]:.2f}s, raw down {samples['raw down'][-1]:.2f}s",
                file=sys.stderr,
            )
    except BenchBroken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        broken = True
    finally:
        left = force_cleanup(ctx, engine)
    med = {k: statistics.median(v) for k, v in samples.items() if v}
    print(
        f"remote engine {engine.host} (docker context {CONTEXT}), {len(samples['devup up'])} rounds, medians:"
    )
    for metric in ("up", "down"):
        if f"devup {metric}" in med and f"raw {metric}" in med:
            d, r = med[f"devup {metric}"], med[f"raw {metric}"]
            target = "  (target <= 1.10x)" if metric == "up" else ""
            print(f"  {metric:<5} devup {d:.2f}s  raw {r:.2f}s  ratio {d / r:.2f}x{target}")
    for k, v in samples.items():
        print(f"  samples {k}: {', '.join(f'{x:.2f}' for x in v)}")
    if last_up is not None:
        print("  timeline of the last devup up (when each progress line reached the bench):")
        print(step_lines(last_up))
    print(f"  load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if left:
        print("LEFT BEHIND on the remote engine: " + ", ".join(left))
    return 1 if broken or left else 0


if __name__ == "__main__":
    sys.exit(main())
