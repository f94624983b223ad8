"""Benchmark of SPEC §8's agent entry points against what they stand on, in the same run.

    .venv/bin/python bench/agents.py [--rounds N] [--runs N] [--json FILE]

- the Claude Code create hook (`devup hook claude-code worktree-create`, payload on stdin) against
  `devup up NAME` of the same kind of session: the hook's overhead (target: at most 0.05 s);
- `devup path NAME` and `devup exec NAME -- true` against `python -c pass` with the same
  interpreter: devup's start-up cost on these two paths (target: at most 0.15 s each).

A measurement, not a test: it prints medians and verdicts and exits 0 whatever they say; 1 only
when a command it needs failed. It builds a throwaway repository (host mode, one native service)
in a temp dir with DEVUP_HOME inside it, and removes everything it made.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOOK_TARGET = 0.05
START_TARGET = 0.15
TOML = """[project]
name = "agentsbench"
mode = "host"
[ports]
range = [{low}, {high}]

[services.tiny]
run = "exec sleep 3600"
"""


class Broken(Exception):
    """The bench could not take a measurement."""


def devup_argv() -> list[str]:
    script = Path(sys.executable).with_name("devup")
    return [str(script)] if script.exists() else [sys.executable, "-m", "devup"]


def timed(args: list[str], *, cwd: Path, env: dict[str, str], stdin: str | None = None) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise Broken(f"`{' '.join(args)}` exited {done.returncode}: {done.stderr.strip()[-400:]}")
    return elapsed


def build(tmp: Path) -> tuple[Path, dict[str, str]]:
    repo = tmp / "repo"
    repo.mkdir()
    low = 31000 + (os.getpid() % 200) * 20
    (repo / "devup.toml").write_text(TOML.format(low=low, high=low + 19))
    env = {
        **os.environ,
        "DEVUP_HOME": str(tmp / "state"),
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }
    env.pop("DEVUP_FAULT", None)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return repo, env


def hook_vs_up(repo: Path, env: dict[str, str], rounds: int) -> dict[str, list[float]]:
    devup = devup_argv()
    samples: dict[str, list[float]] = {"up": [], "hook": []}
    for n in range(rounds):
        order = ["up", "hook"] if n % 2 else ["hook", "up"]  # alternate: drift favours neither
        for kind in order:
            name = f"{kind}-{n}"
            if kind == "up":
                samples["up"].append(timed([*devup, "up", name], cwd=repo, env=env))
                timed([*devup, "down", name], cwd=repo, env=env)
            else:
                payload = json.dumps({"name": name, "cwd": str(repo), "hook_event_name": "WorktreeCreate"})
                samples["hook"].append(
                    timed(
                        [*devup, "hook", "claude-code", "worktree-create"], cwd=repo, env=env, stdin=payload
                    )
                )
                wt = repo.parent / f"{repo.name}-worktrees" / name
                removal = json.dumps({"worktree_path": str(wt)})
                timed([*devup, "hook", "claude-code", "worktree-remove"], cwd=repo, env=env, stdin=removal)
    return samples


def startup(repo: Path, env: dict[str, str], runs: int) -> dict[str, list[float]]:
    devup = devup_argv()
    timed([*devup, "up", "s"], cwd=repo, env=env)
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "devup path": [*devup, "path", "s"],
        "devup exec -- true": [*devup, "exec", "s", "--", "true"],
    }
    samples: dict[str, list[float]] = {k: [] for k in commands}
    try:
        for _ in range(runs):  # interleaved, so a busy moment hits all three alike
            for key, args in commands.items():
                samples[key].append(timed(args, cwd=repo, env=env))
    finally:
        timed([*devup, "down", "s"], cwd=repo, env=env)
        timed([*devup, "gc"], cwd=repo, env=env)  # the router of the hostnames, if it started one
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7, help="create-hook/up pairs (default 7)")
    parser.add_argument("--runs", type=int, default=20, help="runs of each start-up command (default 20)")
    parser.add_argument("--json", type=Path, help="write samples, medians and verdicts to this file")
    opts = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="devup-agents-bench-"))
    try:
        repo, env = build(tmp)
        timed([*devup_argv(), "up", "warm"], cwd=repo, env=env)  # untimed warm-up
        timed([*devup_argv(), "down", "warm"], cwd=repo, env=env)
        pairs = hook_vs_up(repo, env, opts.rounds)
        starts = startup(repo, env, opts.runs)
    except Broken as exc:
        print(f"bench broken: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in {**pairs, **starts}.items()}
    rows = [
        (
            "create hook over `devup up`",
            med["hook"] - med["up"],
            HOOK_TARGET,
            f"{med['hook']:.3f} vs {med['up']:.3f}",
        ),
        (
            "`devup path` over `python -c pass`",
            med["devup path"] - med["python -c pass"],
            START_TARGET,
            f"{med['devup path']:.3f} vs {med['python -c pass']:.3f}",
        ),
        (
            "`devup exec NAME -- true` over `python -c pass`",
            med["devup exec -- true"] - med["python -c pass"],
            START_TARGET,
            f"{med['devup exec -- true']:.3f} vs {med['python -c pass']:.3f}",
        ),
    ]
    print(f"{'metric':<48} {'overhead':>9} {'target':>7}  verdict  medians (s)")
    for label, overhead, target, detail in rows:
        verdict = "ok" if overhead <= target else "FAIL"
        print(f"{label:<48} {overhead:>8.3f}s {target:>6.2f}s  {verdict:<7}  {detail}")
    print(f"({opts.rounds} hook/up pairs, {opts.runs} runs of each start-up command, medians)")
    if opts.json:
        doc = {
            "samples": {**pairs, **starts},
            "medians": med,
            "overheads": {label: overhead for label, overhead, _, _ in rows},
            "targets": {label: target for label, _, target, _ in rows},
        }
        opts.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
