#!/usr/bin/env python3
"""Data: snapshots and clones of a ~1 GB PostgreSQL volume against the raw commands (issue 13).

In the same run, on the same volume (medians over the rounds):
- `devup snapshot create A` against the raw sequence a careful script would run:
  `docker pause C; docker volume create V; docker run --rm -v A:/from:ro -v V:/to IMAGE
  cp -a /from/. /to/; docker unpause C` (target <= 1.10x);
- the copy inside `devup up B --from A` (its `data` step, as devup reports it) against the same
  raw sequence (target <= 1.10x);
- `devup up B --from A` against `devup up B` with a post_up seed hook that generates the same
  rows (target: the clone at least 3x faster).

    .venv/bin/python bench/data.py                  # ~1 GB, 3 rounds
    .venv/bin/python bench/data.py --rows 400000 --rounds 1 --json out.json   # a quick look

Needs a Docker engine, Compose v2, devup-local/postgres:15 (DEVUP_BENCH_POSTGRES for another)
and psycopg (the test extra). Leaves nothing behind: every session is taken down, every
snapshot and raw volume removed, the repository and devup's state live in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POSTGRES = os.environ.get("DEVUP_BENCH_POSTGRES", "devup-local/postgres:15")
# What a seed or migration would make: a table with its primary key and a secondary index.
# 1.6 million rows make a data directory of about 1 GB (table, indexes and WAL).
SEED_SQL = (
    "create table big as select g as id, md5(g::text) as tag, repeat('x', 200) as pad "
    "from generate_series(1, {rows}) g; alter table big add primary key (id); "
    "create index big_tag on big (tag); checkpoint"
)
COMPOSE = f"""
services:
  postgres:
    image: {POSTGRES}
    environment:
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: postgres
      POSTGRES_DB: app
      POSTGRES_HOST_AUTH_METHOD: trust
    ports: ["5432"]
    volumes: [pgdata:/var/lib/postgresql/data]
    stop_signal: SIGINT
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres -h 127.0.0.1"]
      interval: 1s
      timeout: 3s
      retries: 120
volumes:
  pgdata: {{}}
"""
SEED_PY = """
import os, sys, psycopg
if os.environ.get("BENCH_SEED") == "1":
    url = f"postgresql://postgres@127.0.0.1:{os.environ['DEVUP_PORT_POSTGRES']}/app"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sys.argv[1])
"""


def sh(args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench: `{' '.join(args)}` exited {done.returncode}:\n{done.stderr[-2000:]}")
    return done.stdout


def timed(args: list[str], **kw: object) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"bench: `{' '.join(args)}` exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds, done.stderr


def settle() -> None:
    """Flush what the previous copy left dirty (a GB of it): each measurement starts with the
    same writeback backlog, none, instead of paying for the previous one's."""
    os.sync()
    time.sleep(1)


def devup_cmd() -> list[str]:
    script = Path(sys.executable).parent / "devup"
    return [str(script)] if script.exists() else [sys.executable, "-m", "devup"]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_600_000, help="rows (default: a ~1 GB data directory)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--copy-only",
        action="store_true",
        help="only the copies (no seed-hook comparison); seed through docker exec",
    )
    parser.add_argument("--json", type=Path, help="write the samples and medians to this file")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="devup-bench-data-"))
    env = {
        **os.environ,
        "DEVUP_HOME": str(tmp / "state"),
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }
    repo = tmp / "benchdata"
    devup = devup_cmd()
    sessions: list[str] = []
    raw_volumes: list[str] = []
    try:
        repo.mkdir()
        sh(["git", "init", "-q", "-b", "main"], cwd=repo, env=env)
        (repo / "compose").mkdir()
        (repo / "compose" / "db.yaml").write_text(COMPOSE)
        (repo / "seed.py").write_text(SEED_PY)
        sql = SEED_SQL.format(rows=args.rows)
        seed = f'{sys.executable} {repo / "seed.py"} "{sql}"'
        (repo / "devup.toml").write_text(
            f'[project]\nname = "bd{os.getpid() % 10000}"\nmode = "container"\n'
            "[ports]\nrange = [31000, 31099]\n"
            '[groups.db]\nfiles = ["compose/db.yaml"]\nwait_timeout = 300\n'
            f"[hooks]\npost_up = {{ run = {json.dumps(seed)}, timeout = 900 }}\n"
        )
        sh(["git", "add", "-A"], cwd=repo, env=env)
        sh(["git", "commit", "-qm", "bench"], cwd=repo, env=env)

        def up(name: str, *extra: str, seed: bool = False) -> tuple[float, str]:
            sessions.append(name)
            return timed(
                [*devup, "up", name, *extra], cwd=repo, env={**env, "BENCH_SEED": "1" if seed else "0"}
            )

        def rows_in(session: str) -> int:
            [c] = sh(
                [
                    "docker",
                    "ps",
                    "-q",
                    "--filter",
                    f"label=dev.devup.session={session}",
                    "--filter",
                    "label=dev.devup.repo",
                ]
            ).split()
            return int(
                sh(
                    [
                        "docker",
                        "exec",
                        c,
                        "psql",
                        "-U",
                        "postgres",
                        "-d",
                        "app",
                        "-tAc",
                        "select count(*) from big",
                    ]
                )
            )

        print(f"bench: seeding session a with {args.rows} rows", file=sys.stderr)
        if args.copy_only:
            # The seed hook reaches the database on this machine's loopback; an engine in a
            # network namespace of its own (bench/data_xfs.py) is reached through docker exec.
            seeded, _ = up("a")
            t0 = time.perf_counter()
            [c] = sh(["docker", "ps", "-q", "--filter", "label=dev.devup.session=a"]).split()
            sh(["docker", "exec", c, "psql", "-U", "postgres", "-d", "app", "-c", sql])
            seeded += time.perf_counter() - t0
        else:
            seeded, _ = up("a", seed=True)
        record = json.loads((tmp / "state").joinpath(*_record_path(tmp, "a")).read_text())
        project = record["groups"][0]["project"]
        volume = f"{project}_pgdata"
        container = sh(
            ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}"]
        ).strip()
        size = (
            int(
                sh(["docker", "run", "--rm", "-v", f"{volume}:/d:ro", POSTGRES, "du", "-sk", "/d"]).split()[0]
            )
            * 1024
        )
        print(f"bench: volume {volume}: {size / 2**30:.2f} GiB (seeded in {seeded:.1f} s)", file=sys.stderr)

        samples: dict[str, list[float]] = {
            k: [] for k in ("raw_copy_s", "snapshot_s", "clone_copy_s", "up_from_s", "up_seed_s")
        }

        def raw_copy(tag: str) -> float:
            raw = f"bench-raw-{os.getpid()}-{tag}"
            raw_volumes.append(raw)
            settle()
            t0 = time.perf_counter()
            sh(["docker", "pause", container])
            sh(["docker", "volume", "create", raw])
            sh(
                [
                    "docker",
                    "run",
                    "--rm",
                    "-v",
                    f"{volume}:/from:ro",
                    "-v",
                    f"{raw}:/to",
                    POSTGRES,
                    "cp",
                    "-a",
                    "/from/.",
                    "/to/",
                ]
            )
            sh(["docker", "unpause", container])
            seconds = time.perf_counter() - t0
            sh(["docker", "volume", "rm", raw])
            return seconds

        def devup_snapshot(tag: str) -> float:
            settle()
            seconds, _ = timed([*devup, "snapshot", "create", "a", "--as", tag], cwd=repo, env=env)
            sh([*devup, "snapshot", "rm", tag], cwd=repo, env=env)
            return seconds

        raw_copy("warm")  # untimed: the first read of the volume pays for the page cache
        for r in range(1, args.rounds + 1):
            # Alternate who goes first, so that drift on a shared machine favours neither.
            if r % 2:
                samples["raw_copy_s"].append(raw_copy(str(r)))
                samples["snapshot_s"].append(devup_snapshot(f"r{r}"))
            else:
                samples["snapshot_s"].append(devup_snapshot(f"r{r}"))
                samples["raw_copy_s"].append(raw_copy(str(r)))

            settle()
            seconds, err = up(f"from{r}", "--from", "a")
            samples["up_from_s"].append(seconds)
            step = re.search(r"✓ data\s+([\d.]+)s", err)
            if step is None:
                raise SystemExit(f"bench: no `data` step in the output of up --from:\n{err[-2000:]}")
            samples["clone_copy_s"].append(float(step.group(1)))
            count = rows_in(f"from{r}")
            if count != args.rows:
                raise SystemExit(f"bench: the clone from{r} holds {count} rows, not {args.rows}")
            sh([*devup, "down", f"from{r}"], cwd=repo, env=env)

            if not args.copy_only:
                settle()
                seconds, _ = up(f"seed{r}", seed=True)
                samples["up_seed_s"].append(seconds)
                sh([*devup, "down", f"seed{r}"], cwd=repo, env=env)
            print(
                f"bench: round {r}: " + ", ".join(f"{k}={v[-1]:.2f}" for k, v in samples.items() if v),
                file=sys.stderr,
            )

        med = {k: statistics.median(v) for k, v in samples.items() if v}
        ratios = {
            "snapshot_vs_raw": med["snapshot_s"] / med["raw_copy_s"],
            "clone_copy_vs_raw": med["clone_copy_s"] / med["raw_copy_s"],
        }
        if not args.copy_only:
            ratios["seed_vs_clone"] = med["up_seed_s"] / med["up_from_s"]
        print(
            f"volume: {size / 2**30:.2f} GiB of PostgreSQL data, {args.rows} rows; medians of {args.rounds}"
        )
        print(f"raw pause + volume create + cp -a + unpause  {med['raw_copy_s']:7.2f} s")
        print(
            f"devup snapshot create                      {med['snapshot_s']:7.2f} s  {ratios['snapshot_vs_raw']:.2f}x raw (target <= 1.10x)"
        )
        print(
            f"devup up --from: its data step             {med['clone_copy_s']:7.2f} s  {ratios['clone_copy_vs_raw']:.2f}x raw (target <= 1.10x)"
        )
        print(f"devup up B --from A (whole up)             {med['up_from_s']:7.2f} s")
        if not args.copy_only:
            print(
                f"devup up B + seed hook (same rows)         {med['up_seed_s']:7.2f} s  clone {ratios['seed_vs_clone']:.1f}x faster (target >= 3x)"
            )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"rows": args.rows, "bytes": size, "samples": samples, "medians": med, "ratios": ratios},
                    indent=2,
                )
            )
        return 0
    finally:
        for name in reversed(sessions):
            subprocess.run([*devup, "down", name, "--force"], cwd=repo, env=env, capture_output=True)
        listed = subprocess.run(
            [*devup, "snapshot", "ls", "--json"], cwd=repo, env=env, capture_output=True, text=True
        )
        with _quiet():
            snaps = [s["snapshot"] for s in json.loads(listed.stdout)]
            if snaps:
                subprocess.run([*devup, "snapshot", "rm", *snaps], cwd=repo, env=env, capture_output=True)
        for raw in raw_volumes:
            subprocess.run(["docker", "volume", "rm", "-f", raw], capture_output=True)
        # The router (SPEC §9) of this run's state folder, if the sessions' hostnames started it.
        subprocess.run([*devup, "gc"], cwd=repo, env=env, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def _record_path(tmp: Path, name: str) -> list[str]:
    [found] = list((tmp / "state").glob(f"repos/*/sessions/{name}.json"))
    return list(found.relative_to(tmp / "state").parts)


class _quiet:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], (ValueError, KeyError, TypeError))  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
