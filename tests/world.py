"""Look at the world the way a user would: through git, the engine and /proc, not devup's state."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def labelled(kind: str, *, repo_id: str, session: str | None = None) -> list[str]:
    """Names of containers/networks/volumes carrying devup's labels for this repo (and session)."""
    # One label filter, the session compared here: Podman 4.3 answers a volume list filtered by
    # two labels with the volumes carrying either (Docker: both).
    filters = ["--filter", f"label=dev.devup.repo={repo_id}"]
    cmd = {"container": ["ps", "-a"], "network": ["network", "ls"], "volume": ["volume", "ls"]}[kind]
    fmt = ("{{.Names}}" if kind == "container" else "{{.Name}}") + '\t{{.Label "dev.devup.session"}}'
    rows = [line.split("\t") for line in docker(*cmd, *filters, "--format", fmt).splitlines() if line]
    return sorted(name for name, of in rows if session is None or of == session)


def running_containers(*, repo_id: str, session: str) -> list[str]:
    out = docker(
        "ps",
        "--filter",
        f"label=dev.devup.repo={repo_id}",
        "--filter",
        f"label=dev.devup.session={session}",
        "--format",
        "{{.Names}}",
    )
    return sorted(filter(None, out.splitlines()))


def tagged_processes(*, repo_id: str, session: str | None = None) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
            mine = env.get("DEVUP_REPO_ID") == repo_id and (
                session is None or env.get("DEVUP_SESSION") == session
            )
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def pid_running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, waiting for init to reap it, has ended)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def branches(repo: Path) -> list[str]:
    return sorted(git(repo, "branch", "--format=%(refname:short)").split())


def worktree_paths(repo: Path) -> list[Path]:
    return [
        Path(line.split(" ", 1)[1])
        for line in git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def published_ports(container: str) -> dict[str, str]:
    data = json.loads(docker("inspect", container))[0]
    ports = data["NetworkSettings"]["Ports"] or {}
    return {k: v[0]["HostPort"] for k, v in ports.items() if v}


def port_bound(port: int) -> bool:
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
        for c in psutil.net_connections("tcp")
    )


def stop_router(state: Path) -> int | None:
    """Stop the router (caddy) of devup state folder `state` if it runs; its pid, or None."""
    try:
        data = json.loads((state / "router" / "router.json").read_text())
        proc = psutil.Process(int(data["pid"]))
        if (
            abs(proc.create_time() - float(data["start_time"])) >= 0.01
            or proc.status() == psutil.STATUS_ZOMBIE
        ):
            return None
    except (OSError, ValueError, KeyError, psutil.Error):
        return None
    proc.terminate()
    try:
        proc.wait(10)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.Error:
        pass
    return proc.pid


def router_routes(state: Path) -> list[str]:
    """The @id of each route on the router of devup state folder `state`, asked of the router
    itself (its admin API on a unix socket, where caddy wants an empty Host); [] when none runs."""
    sock = state / "router" / "admin.sock"
    if not sock.exists():
        return []
    result = subprocess.run(
        [
            "curl",
            "-fsS",
            "--unix-socket",
            str(sock),
            "-H",
            "Host;",
            "http://router/config/apps/http/servers/devup/routes",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        return []  # a socket left by a router that is gone: no route answers
    return [r["@id"] for r in json.loads(result.stdout or "[]") or [] if "@id" in r]
