"""devup's side and the rounds that alternate the two sides."""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kit.proc import LS_SESSIONS, BenchBroken, Ran, docker_lines, log, run, tail
from kit.project import Ctx
from kit.raw import raw_force_teardown, raw_teardown, raw_up


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
        raise BenchBroken(f"devup up {name} exited {ran.code}:\n{tail(ran.out + ran.err)}")
    return ran


def devup_down(ctx: Ctx, name: str) -> Ran:
    ran = ctx.dv("down", name, check=False)
    if ran.code != 0:
        raise BenchBroken(f"devup down {name} exited {ran.code}:\n{tail(ran.out + ran.err)}")
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
        raise BenchBroken(f"devup up {name} with a fault exited {failed.code}, not 1:\n{tail(failed.err)}")
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
        raise BenchBroken(f"devup up --mode host exited {bad[0].code}:\n{tail(bad[0].err)}")
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


def measure(ctx: Ctx, opts: argparse.Namespace, samples: Samples, extra: dict[str, object]) -> None:
    """Start-up runs, a warm-up, the `ls` sessions, then `opts.rounds` rounds in which the raw
    sequence and devup take turns going first."""
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
