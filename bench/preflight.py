#!/usr/bin/env python3
"""Preflight on a monorepo: devup's compose preflight for a new session against the raw
`docker compose config` of the same files, in the same run (issue 10).

A generated repository of N files (default 50,000) holds a 3-line root-level compose file, a
committed `.env` and an `env_file`. Preflight for a new session must read the compose files as
the worktree will hold them without extracting the repository: it writes only what compose
names. For scale, the run also times extracting the whole tree (`git archive | tar -x`), which
is what a preflight that copied the repository would pay.

    .venv/bin/python bench/preflight.py                 # 50,000 files, 5 runs, medians
    .venv/bin/python bench/preflight.py --files 5000 --runs 3 --json out.json

Needs a Docker engine (preflight asks it for foreign objects) and Compose v2. Leaves nothing
behind: the repository and devup's state live in a temp dir that is removed at the end.
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

COMPOSE = "services:\n  web:\n    image: devup-local/busybox:latest\n    env_file: [web.env]\n"


def sh(args: list[str], *, cwd: Path, env: dict[str, str], stdin: bytes | None = None) -> bytes:
    return subprocess.run(args, cwd=cwd, env=env, input=stdin, check=True, capture_output=True).stdout


def build_repo(path: Path, files: int, env: dict[str, str]) -> None:
    """`files` files in 1,000 folders, one commit, via git fast-import (seconds, not minutes)."""
    path.mkdir(parents=True)
    sh(["git", "init", "-q", "-b", "main"], cwd=path, env=env)
    own = {
        "devup.toml": '[project]\nname = "mono"\nmode = "container"\n[groups.app]\nfiles = ["compose.yaml"]\n',
        "compose.yaml": COMPOSE,
        ".env": "COMPOSE_IGNORED=1\n",
        "web.env": "GREETING=hello\n",
    }
    chunks = [b"commit refs/heads/main\ncommitter bench <bench@example.invalid> 0 +0000\ndata 4\ninit\n"]

    def add(rel: str, text: str) -> None:
        data = text.encode()
        chunks.append(f"M 100644 inline {rel}\ndata {len(data)}\n".encode() + data + b"\n")

    for rel, text in own.items():
        add(rel, text)
    for i in range(files - len(own)):
        add(f"pkg{i % 1000:04d}/src/module_{i}.py", f"VALUE = {i}\n")
    sh(["git", "fast-import", "--quiet"], cwd=path, env=env, stdin=b"".join(chunks))
    sh(["git", "reset", "-q", "--hard", "main"], cwd=path, env=env)


def timed(fn: object, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t0)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the samples and medians to this file")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="devup-bench-preflight-"))
    try:
        env = {
            **os.environ,
            "DEVUP_HOME": str(tmp / "state"),
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.invalid",
        }
        os.environ["DEVUP_HOME"] = env["DEVUP_HOME"]
        repo = tmp / "mono"
        t0 = time.perf_counter()
        build_repo(repo, args.files, env)
        tracked = len(sh(["git", "ls-files", "-z"], cwd=repo, env=env).split(b"\0")) - 1
        print(
            f"bench: {tracked} tracked files generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr
        )

        from devup import compose, compose_inputs, preflight, remote, workspace
        from devup.engine.http import engine_version

        ws = workspace.open_workspace(repo)
        cfg = ws.config
        here = remote.current()
        compose.compose_command()
        engine_version(here)  # both cached for the process: not what is measured here
        counter = iter(range(10**6))

        def devup_preflight() -> None:
            # A new session each time: the branch does not exist, the files come from HEAD.
            preflight.plan(
                ws,
                cfg,
                name=f"s{next(counter)}",
                branch=None,
                base=None,
                mode=None,
                previous=None,
                engine=here,
            )

        raw_cmd = [
            *compose.compose_command(),
            "-p",
            "mono-raw",
            "-f",
            "compose.yaml",
            "config",
            "--format",
            "json",
        ]

        def raw_config() -> None:
            sh(raw_cmd, cwd=repo, env=env)

        def whole_tree() -> None:
            dest = Path(tempfile.mkdtemp(dir=tmp))
            archive = sh(["git", "archive", "--format=tar", "HEAD"], cwd=repo, env=env)
            sh(["tar", "-x", "-C", str(dest)], cwd=repo, env=env, stdin=archive)
            shutil.rmtree(dest)

        dest = Path(tempfile.mkdtemp(dir=tmp))
        written = compose_inputs.materialize(
            root=repo, commit="HEAD", groups=[["compose.yaml"]], dest=dest, worktree=tmp / "wt", env=env
        )
        devup_preflight()
        raw_config()  # warm both once
        samples = {
            "devup_preflight_s": timed(devup_preflight, args.runs),
            "raw_compose_config_s": timed(raw_config, args.runs),
            "whole_tree_extract_s": timed(whole_tree, max(1, min(args.runs, 3))),
        }
        med = {k: statistics.median(v) for k, v in samples.items()}
        ratio = med["devup_preflight_s"] / med["raw_compose_config_s"]
        print(f"repository: {tracked} files; preflight wrote {len(written)}: {', '.join(written)}")
        print(
            f"devup preflight (new session)   {med['devup_preflight_s'] * 1000:8.1f} ms  (median of {args.runs})"
        )
        print(f"raw `docker compose config`     {med['raw_compose_config_s'] * 1000:8.1f} ms")
        print(f"ratio devup / raw               {ratio:8.2f}x")
        print(
            f"extracting the whole tree       {med['whole_tree_extract_s'] * 1000:8.1f} ms  (what devup avoids)"
        )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "files": tracked,
                        "written": written,
                        "samples": samples,
                        "medians": med,
                        "ratio": ratio,
                    },
                    indent=2,
                )
            )
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
