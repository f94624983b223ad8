"""devup's reconcile (SPEC §5.12) against the raw tool, measured in the same run.

Run from the repository root:  .venv/bin/python bench/converge.py [--rounds N]

A session with two compose groups (busybox web servers with healthchecks) is up. Each round
changes one service of group `app` (a commit on the session's branch), then times:
- devup: `devup up s`, which finds the change and recreates that service (the other group and
  the unchanged service are not touched);
- raw: the same change in a plain copy of that group's compose file, `docker compose -p P up -d
  --wait` of that group alone (what a person would run, knowing which group changed);
- `devup up s --dry-run` of the changed session against bare `python -c pass`.
Rounds alternate the order. Targets (issue 22): reconcile <= 1.10x raw; dry-run <= +0.3 s.
It is a measurement, not a test: it prints the figures and exits 0 unless it could not measure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSYBOX = os.environ.get("DEVUP_TEST_BUSYBOX", "devup-local/busybox:latest")
ROOT = Path(__file__).resolve().parent.parent
DEVUP = [sys.executable, "-m", "devup"]


def compose_text(tag: str, services: tuple[str, ...], port: int) -> str:
    lines = ["services:"]
    for n, svc in enumerate(services):
        text = tag if n == 0 else "steady"
        lines += [
            f"  {svc}:",
            f"    image: {BUSYBOX}",
            "    init: true",
            f'    command: ["sh", "-c", "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p {port} -h /www"]',
            f'    healthcheck: {{test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/"], '
            "interval: 1s, timeout: 2s, retries: 30}",
        ]
    return "\n".join(lines) + "\n"


def sh(args: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"bench: {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return took


def git(cwd: Path, *args: str, env: dict[str, str]) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args(argv)
    # Byte-compiled, as a regular install is (bench/README.md): where PYTHONDONTWRITEBYTECODE is
    # set, a fresh clone's devup would compile every module again on every run.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "devup")], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="devup-bench-converge-"))
    env = {
        **os.environ,
        "DEVUP_HOME": str(tmp / "state"),
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@example.invalid",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@example.invalid",
        "PYTHONPATH": str(ROOT),
    }
    repo, raw = tmp / "proj", tmp / "raw"
    repo.mkdir()
    raw.mkdir()
    raw_project = f"benchraw{os.getpid()}"
    try:
        (repo / "devup.toml").write_text(
            f'[project]\nname = "bc{os.getpid() % 100000}"\nmode = "container"\n[ports]\nrange = [27000, 27100]\n'
            '[groups.app]\nfiles = ["app.yaml"]\n[groups.infra]\nfiles = ["infra.yaml"]\n'
        )
        (repo / "app.yaml").write_text(compose_text("v0", ("a1", "a2"), 8080))
        (repo / "infra.yaml").write_text(compose_text("v0", ("i1",), 8081))
        git(repo, "init", "-q", "-b", "main", env=env)
        git(repo, "add", "-A", env=env)
        git(repo, "commit", "-qm", "init", env=env)
        sh([*DEVUP, "up", "s"], cwd=repo, env=env)
        wt = repo.parent / "proj-worktrees" / "s"
        (raw / "app.yaml").write_text(compose_text("v0", ("a1", "a2"), 8080))
        sh(["docker", "compose", "-p", raw_project, "-f", "app.yaml", "up", "-d", "--wait"], cwd=raw, env=env)
        devup_times, raw_times, dry_times, bare_times = [], [], [], []
        for n in range(1, opts.rounds + 1):
            tag = f"v{n}"
            (wt / "app.yaml").write_text(compose_text(tag, ("a1", "a2"), 8080))
            git(wt, "commit", "-qam", tag, env=env)
            (raw / "app.yaml").write_text(compose_text(tag, ("a1", "a2"), 8080))
            dry_times.append(sh([*DEVUP, "up", "s", "--dry-run"], cwd=repo, env=env))
            bare_times.append(sh([sys.executable, "-c", "pass"], cwd=repo, env=env))
            runs = [
                (devup_times, [*DEVUP, "up", "s"], repo),
                (
                    raw_times,
                    ["docker", "compose", "-p", raw_project, "-f", "app.yaml", "up", "-d", "--wait"],
                    raw,
                ),
            ]
            for times, args, cwd in runs if n % 2 else reversed(runs):
                times.append(sh(args, cwd=cwd, env=env))
        med = statistics.median
        print(f"rounds: {opts.rounds}; load average: {os.getloadavg()[0]:.2f}")
        print(f"reconcile of one group of two (devup up):   median {med(devup_times):.3f} s  {devup_times}")
        print(f"raw: docker compose up -d --wait, one group: median {med(raw_times):.3f} s")
        ratio = med(devup_times) / med(raw_times)
        print(f"ratio devup/raw: {ratio:.2f}x (target <= 1.10x)")
        extra = med(dry_times) - med(bare_times)
        print(
            f"up --dry-run of the changed session: median {med(dry_times):.3f} s, +{extra:.3f} s over bare python (target <= +0.3 s)"
        )
        return 0
    finally:
        subprocess.run([*DEVUP, "down", "s", "--force"], cwd=repo, env=env, capture_output=True)
        # The router (SPEC §9) of this run's state folder, if the session's hostnames started it.
        subprocess.run([*DEVUP, "gc"], cwd=repo, env=env, capture_output=True)
        subprocess.run(
            ["docker", "compose", "-p", raw_project, "down", "-v"], cwd=raw, env=env, capture_output=True
        )
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(repo.parent / "proj-worktrees", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
