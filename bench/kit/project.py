"""The throwaway project both sides run: compose files, devup.toml, the git repository."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from kit.proc import BUSYBOX, GROUPS, NATIVE, TAG_ENV, BenchBroken, Ran, run


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


@dataclass
class RawEnv:
    name: str
    branch: str
    worktree: Path
    projects: dict[str, str]  # group -> compose project
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    up_s: float = 0.0


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
