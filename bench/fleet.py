"""devup under a fleet's load (SPEC §5.13, §5.14), against the raw tools in the same run.

    .venv/bin/python bench/fleet.py [--seconds N] [--loops N] [--containers N] [--json FILE]

1. The load: LOOPS loops at once (threads), each on a session of its own, doing `up`, `env`,
   `status`, `exec NAME -- true`, `ls`, `snapshot ls`, `stop`, `up`, `down` over and over for
   SECONDS; CONTAINERS of them on a second repository in container mode (one busybox group),
   the others in host mode (one `python -m http.server` service with a port and an HTTP
   readiness check). One more thread runs the hand-made equivalent meanwhile (`git worktree
   add` + the process + a poll; `git worktree list`; `python -c pass`; the process stopped +
   `git worktree remove`). Printed: commands per second, the latency percentiles of `up` and
   `ls` and of the raw equivalents, and every command's exit code counts.
2. The reaping cost of `up`: `devup up` of a new host-mode session (then `down`) in a repository
   with CROWD stopped sessions on record, and in one with none, in pairs, alternating which goes
   first, with the raw sequence in both repositories in the same rounds; and the reaping alone
   (`fleet.reap`, what `up` runs first), timed in a process of its own in each repository.

A measurement, not a test: it exits 0 once everything was measured and cleaned up, whatever the
figures (an exit other than 0 under load is listed under UNEXPECTED EXITS); 1 when it could not
measure or clean up; 130 when interrupted (after cleaning up). See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shlex
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kit.cleanup import cleanup
from kit.hostraw import HostRaw, free_port, raw_host_down, raw_host_force, raw_host_up
from kit.loops import Load, percentile, run_load
from kit.proc import TAG_ENV, BenchBroken, log, run, tail
from kit.project import Ctx, compose_file, devup_version, make_repo, preflight
from kit.rounds import devup_down, devup_up

WEB = f"{shlex.quote(sys.executable)} -m http.server $PORT --bind 127.0.0.1"


def host_toml(project: str, ports: range) -> str:
    return (
        f'[project]\nname = "{project}"\nmode = "host"\n\n'
        f"[ports]\nrange = [{ports.start}, {ports.stop - 1}]\n\n"
        f'[services.web]\nrun = {json.dumps(WEB)}\nport = true\nready = {{ http = "/" }}\n'
    )


def container_toml(project: str, ports: range) -> str:
    return (
        f'[project]\nname = "{project}"\nmode = "container"\n\n'
        f"[ports]\nrange = [{ports.start}, {ports.stop - 1}]\n\n"
        '[groups.app]\nfiles = ["compose.yaml"]\n'
    )


class World:
    """The run's repositories (each a kit Ctx), in one temp dir, and the port windows."""

    def __init__(self, tmp: Path, opts: argparse.Namespace) -> None:
        self.tmp = tmp
        self.run_id = os.urandom(3).hex()
        script = Path(sys.executable).parent / "devup"
        self.devup = [str(script)] if script.is_file() else [sys.executable, "-m", "devup"]
        self.env = {
            **os.environ,
            TAG_ENV: self.run_id,
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        }
        for var in ("DEVUP_FAULT", "XDG_STATE_HOME"):
            self.env.pop(var, None)
        # Windows in 21000..30899 (below the kernel's ephemeral range, clear of the test suites'
        # 10000-20000), one per repository and one for the raw processes.
        widths = {
            "host": opts.loops + 20,
            "container": opts.containers + 10,
            "crowd": opts.crowd + 20,
            "empty": 10,
            "raw": 10,
        }
        base = random.randrange(21000, 30900 - sum(widths.values()))
        self.ports: dict[str, range] = {}
        for key, width in widths.items():
            self.ports[key] = range(base, base + width)
            base += width
        self.contexts: list[Ctx] = []
        self.raw_live: list[HostRaw] = []

    def repo(self, label: str, toml: str, files: dict[str, str], state: str) -> Ctx:
        project = f"fleet-{self.run_id}-{label}"
        repo = self.tmp / label / "proj"
        env = {**self.env, "DEVUP_HOME": str(self.tmp / state)}
        make_repo(repo, {"devup.toml": toml, **files}, env)
        ctx = Ctx(
            tmp=self.tmp,
            repo=repo,
            empty_repo=repo,
            state=self.tmp / state,
            run_id=self.run_id,
            project=project,
            devup=self.devup,
            env=env,
        )
        # devup's repository id: its git common dir's real path, hashed (devup/paths.py repo_id_of).
        ctx.repo_id = hashlib.sha256(str((repo / ".git").resolve()).encode()).hexdigest()[:16]
        self.contexts.append(ctx)
        return ctx


# --- the load --------------------------------------------------------------------------------


def load_phase(world: World, opts: argparse.Namespace) -> Load:
    """Both repositories share a state folder (one lease file), as a machine's sessions do."""
    host = world.repo("host", host_toml(f"fleet-{world.run_id}-host", world.ports["host"]), {}, "state-load")
    loops = [(host, "host", f"h{i:02d}") for i in range(1, opts.loops - opts.containers + 1)]
    if opts.containers:
        cont = world.repo(
            "container",
            container_toml(f"fleet-{world.run_id}-container", world.ports["container"]),
            {"compose.yaml": compose_file([("web", 8080)])},
            "state-load",
        )
        loops += [(cont, "container", f"c{i}") for i in range(1, opts.containers + 1)]
    log("fleet: warm-up (untimed): a session of each repository up and down")
    for ctx in list(world.contexts):
        devup_up(ctx, "warm")
        devup_down(ctx, "warm")
    log(f"fleet: {len(loops)} loops for {opts.seconds:.0f} s, and the raw probe")
    return run_load(loops, (host, world.ports["raw"]), opts.seconds)


# --- the reaping cost of up ------------------------------------------------------------------


def crowd(ctx: Ctx, count: int) -> float:
    """`count` host-mode sessions, brought up and stopped 4 at a time; returns the time taken."""
    names = [f"s{i:03d}" for i in range(1, count + 1)]
    ctx.sessions.update(names)
    t0 = time.perf_counter()
    for command in ("up", "stop"):
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda n, c=command: ctx.dv(c, n, check=False), names))
        bad = [r for r in results if r.code != 0]
        if bad:
            raise BenchBroken(f"devup {command} exited {bad[0].code}:\n{tail(bad[0].err)}")
    return time.perf_counter() - t0


# What `up` runs first (session.up: fleet.reap), timed alone in a process of its own in the
# repository: the part of `up` that grows with the sessions on record.
REAP_ALONE = """
import sys, time
from pathlib import Path
from devup import fleet
from devup.workspace import open_workspace

class Quiet:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None

ws = open_workspace(Path.cwd())
fleet.reap(ws, Quiet())  # warm: imports, caches
times = []
for _ in range(5):
    t0 = time.perf_counter()
    fleet.reap(ws, Quiet())
    times.append(time.perf_counter() - t0)
print(sorted(times)[2])
"""


def reap_alone(ctx: Ctx) -> float:
    """The median of 5 `fleet.reap` calls in the repository, in seconds."""
    ran = run([sys.executable, "-c", REAP_ALONE], cwd=ctx.repo, env=ctx.env)
    return float(ran.out.strip())


def reap_phase(world: World, opts: argparse.Namespace) -> dict[str, list[float]]:
    """Pairs of rounds: devup up+down and the raw up+down, in the crowded repository and in the
    empty one (each with a state folder of its own: the empty one has no other session on
    record anywhere). Rounds alternate which repository goes first, and devup or raw."""
    crowded = world.repo(
        "crowd", host_toml(f"fleet-{world.run_id}-crowd", world.ports["crowd"]), {}, "state-crowd"
    )
    empty = world.repo(
        "empty", host_toml(f"fleet-{world.run_id}-empty", world.ports["empty"]), {}, "state-empty"
    )
    log(f"fleet: {opts.crowd} stopped sessions on record in the crowded repository")
    samples: dict[str, list[float]] = {"crowd_create_s": [crowd(crowded, opts.crowd)]}
    sides = [("crowded", crowded), ("empty", empty)]
    for _, ctx in sides:  # untimed warm-up of both sides
        devup_up(ctx, "warm")
        devup_down(ctx, "warm")
    for i in range(1, opts.rounds + 1):
        log(f"fleet: reaping round {i}/{opts.rounds}")
        for side, ctx in sides if i % 2 else reversed(sides):
            for kind in ("devup", "raw") if i % 2 else ("raw", "devup"):
                if kind == "devup":
                    name = f"new-r{i}"
                    ctx.sessions.add(name)
                    up, down = devup_up(ctx, name).seconds, devup_down(ctx, name).seconds
                else:
                    up = raw_host_up(ctx, f"raw-r{i}", free_port(world.ports["raw"]), world.raw_live)
                    down = raw_host_down(ctx, world.raw_live[-1], world.raw_live)
                samples.setdefault(f"{kind}_up_{side}", []).append(up)
                samples.setdefault(f"{kind}_down_{side}", []).append(down)
            samples.setdefault(f"reap_alone_{side}", []).append(reap_alone(ctx))
    return samples


# --- the report ------------------------------------------------------------------------------


def stats_line(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:<44} {'-':>5}"
    cells = [percentile(values, q) for q in (50, 90, 99)] + [max(values)]
    return f"  {label:<44} {len(values):>5} " + " ".join(f"{v:7.2f}" for v in cells)


def load_report(load: Load, opts: argparse.Namespace) -> dict[str, object]:
    devup_cmds = [c for c in load.cmds if c.repo != "raw"]
    in_time = [c for c in devup_cmds if c.end <= opts.seconds]
    started = [c for c in load.cmds if c.start < opts.seconds]
    print(
        f"\nLOAD: {opts.loops} loops ({opts.loops - opts.containers} host-mode sessions, "
        f"{opts.containers} container-mode) for {opts.seconds:.0f} s; load average (1 min) "
        f"{min(load.loadavg):.1f}-{max(load.loadavg):.1f} on {os.cpu_count()} CPUs"
    )
    rate = len(in_time) / opts.seconds
    print(f"devup commands finished within the {opts.seconds:.0f} s: {len(in_time)} ({rate:.2f} per second)")

    def times(repo: str | None, command: str) -> list[float]:
        return [c.seconds for c in started if c.command == command and repo in (None, c.repo) and c.code == 0]

    print(f"\nlatency under load (s), exit 0 only{'':<14}  n     p50     p90     p99     max")
    rows = {
        "up, new session (host)": times("host", "up"),
        "up, new session (container)": times("container", "up"),
        "up, resume of a stopped session (host)": times("host", "up (resume)"),
        "up, resume of a stopped session (container)": times("container", "up (resume)"),
        "ls (host repository)": times("host", "ls"),
        "ls (container repository)": times("container", "ls"),
        "down (host)": times("host", "down"),
        "env, status, exec (host)": times("host", "env") + times("host", "status") + times("host", "exec"),
        "raw up: worktree add + process + poll": times("raw", "raw up"),
        "raw down: process stopped + worktree remove": times("raw", "raw down"),
        "raw ls: git worktree list": times("raw", "git worktree list"),
        "python -c pass": times("raw", "python -c pass"),
    }
    for label, values in rows.items():
        print(stats_line(label, values))

    def p50(key: str) -> float | None:
        return statistics.median(rows[key]) if rows[key] else None

    print("\nratios of the medians under the same load (devup / raw)")
    for label, a, b in (
        (
            "up of a new host session / raw up",
            "up, new session (host)",
            "raw up: worktree add + process + poll",
        ),
        ("down of a host session / raw down", "down (host)", "raw down: process stopped + worktree remove"),
        ("ls / git worktree list", "ls (host repository)", "raw ls: git worktree list"),
        ("ls / python -c pass", "ls (host repository)", "python -c pass"),
        ("env, status, exec / python -c pass", "env, status, exec (host)", "python -c pass"),
    ):
        x, y = p50(a), p50(b)
        print(f"  {label:<44} " + (f"{x / y:6.2f}x  ({x:.2f} s vs {y:.2f} s)" if x and y else "-"))

    codes: dict[str, dict[int, int]] = {}
    for c in devup_cmds:
        codes.setdefault(c.command, {}).setdefault(c.code, 0)
        codes[c.command][c.code] += 1
    print("\nexit codes of devup's commands (all of them, the last `down` after the time was up included)")
    for command, counts in codes.items():
        print(f"  {command:<32} " + ", ".join(f"exit {k}: {v}" for k, v in sorted(counts.items())))
    unexpected = [c for c in devup_cmds if c.code != 0]
    broken_raw = [c for c in load.cmds if c.repo == "raw" and c.code != 0]
    if unexpected:
        print(f"\nUNEXPECTED EXITS ({len(unexpected)}; every command here is exit 0 in a single run):")
        for c in unexpected[:10]:
            print(f"  - {c.session} `{c.command}` exit {c.code} at {c.start:.1f} s after {c.seconds:.1f} s:")
            print("      " + c.err.replace("\n", "\n      "))
    else:
        print("\nevery devup command under load exited 0, as in a single run")
    if broken_raw:
        print(f"\nRAW PROBE BROKEN {len(broken_raw)} time(s): {broken_raw[0].err}")
    return {
        "commands": [c.__dict__ for c in load.cmds],
        "loadavg": load.loadavg,
        "rate": rate,
        "exit_codes": {k: {str(c): n for c, n in v.items()} for k, v in codes.items()},
    }


def reap_report(samples: dict[str, list[float]], opts: argparse.Namespace) -> None:
    print(
        f"\nREAPING COST OF `up`: a new host-mode session, {opts.crowd} stopped sessions on record vs "
        f"none; {opts.rounds} rounds, medians (s); {opts.crowd} sessions made and stopped in "
        f"{samples['crowd_create_s'][0]:.1f} s"
    )
    print(f"  {'':<12} {'0 others':>9} {f'{opts.crowd} others':>10} {'difference':>11} {'paired diff':>12}")
    for key in ("devup_up", "devup_down", "raw_up", "raw_down"):
        empty, crowded = samples[f"{key}_empty"], samples[f"{key}_crowded"]
        paired = statistics.median(c - e for c, e in zip(crowded, empty, strict=True))
        e, c = statistics.median(empty), statistics.median(crowded)
        print(f"  {key:<12} {e:9.3f} {c:10.3f} {c - e:+11.3f} {paired:+12.3f}")
    alone = {side: statistics.median(samples[f"reap_alone_{side}"]) * 1000 for side in ("empty", "crowded")}
    print(
        f"  `fleet.reap` alone (the first thing `up` does; in one process, median of 5 calls per round): "
        f"{alone['empty']:.1f} ms with 0 others, {alone['crowded']:.1f} ms with {opts.crowd}"
    )
    for side in ("empty", "crowded"):
        d, r = statistics.median(samples[f"devup_up_{side}"]), statistics.median(samples[f"raw_up_{side}"])
        print(f"  devup up / raw up, {side:<8} {d / r:6.2f}x")
    extra = statistics.median(
        (dc - de) - (rc - re)
        for dc, de, rc, re in zip(
            samples["devup_up_crowded"],
            samples["devup_up_empty"],
            samples["raw_up_crowded"],
            samples["raw_up_empty"],
            strict=True,
        )
    )
    print(
        f"  what devup's `up` adds per {opts.crowd} sessions beyond git's own cost (paired median): {extra:+.3f} s"
    )


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=300, help="how long the loops run (default 300)")
    parser.add_argument("--loops", type=int, default=20, help="loops, one session each (default 20)")
    parser.add_argument(
        "--containers",
        type=int,
        default=3,
        help="of the loops, container-mode sessions (default 3; 0: no engine)",
    )
    parser.add_argument(
        "--crowd", type=int, default=50, help="stopped sessions for the reaping cost (default 50)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the reaping pairs (default 7)")
    parser.add_argument("--no-load", action="store_true", help="skip the load")
    parser.add_argument("--no-reap", action="store_true", help="skip the reaping cost")
    parser.add_argument("--json", metavar="FILE", help="write every sample to FILE")
    opts = parser.parse_args(argv)
    if not 0 <= opts.containers <= opts.loops or opts.rounds < 1 or opts.seconds <= 0:
        parser.error("need 0 <= --containers <= --loops, --rounds >= 1 and --seconds > 0")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    version = devup_version()
    tmp = Path(tempfile.mkdtemp(prefix="devup-fleet-bench-"))
    world = World(tmp, opts)
    load: Load | None = None
    reap: dict[str, list[float]] | None = None
    code = 0
    try:
        if opts.containers:
            preflight()  # the engine, Compose, the busybox image; devup byte-compiled
        if not opts.no_load:
            load = load_phase(world, opts)
        if not opts.no_reap:
            reap = reap_phase(world, opts)
    except KeyboardInterrupt:
        log("fleet: interrupted; cleaning up")
        code = 130
    except BenchBroken as exc:
        log(f"fleet: broken: {exc}")
        code = 1
    finally:
        live = [*world.raw_live, *(load.raw_live if load else [])]
        for raw in live:
            raw_host_force(raw)
        problems = cleanup(
            world.contexts[0] if world.contexts else None, tmp, quiet=False, others=world.contexts[1:]
        )
        for p in problems:
            log(f"fleet: CLEANUP PROBLEM: {p}")
        if problems and code == 0:
            code = 1
    if code == 130:
        return code
    print(
        f"\ndevup fleet bench: devup at {version}; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs; load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    doc: dict[str, object] = {"devup": version, "options": vars(opts)}
    if load is not None:
        doc["load"] = load_report(load, opts)
    if reap is not None and "devup_up_empty" in reap:
        reap_report(reap, opts)
        doc["reap"] = reap
    leaks = [leak for c in world.contexts for leak in c.leaks]
    if leaks:
        print("\nLEFT BEHIND (removed by the bench since):")
        for leak in leaks:
            print(f"  - {leak}")
    else:
        print("\nleak check: no container, volume, network or process of the run remains")
    if opts.json:
        Path(opts.json).write_text(json.dumps({**doc, "leaks": leaks, "exit_code": code}, indent=1) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
