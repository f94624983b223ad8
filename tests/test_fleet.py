"""Many sessions (SPEC §5.13): limits, LRU eviction, idle stop, expiry and orphans, each checked
through git, /proc, the engine and the ports, not through devup's own state."""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import world
from tests.conftest import HTTP_SERVICE, busybox_web, isolated

SERVICE = f'[services.web]\nrun = "{HTTP_SERVICE}"\nport = true\nready = {{ http = "/" }}\n'


def _host(make, limits: str = ""):
    return make(isolated("host") + (f"[limits]\n{limits}\n" if limits else "") + SERVICE)


def _alive(repo, name: str) -> bool:
    return world.tagged_processes(repo_id=repo.repo_id, session=name) != []


def test_max_sessions_refuses_one_more_with_exit_6_and_nothing_created(make) -> None:
    repo = _host(make, "max_sessions = 2")
    assert repo.devup("up", "a").returncode == 0
    assert repo.devup("up", "b").returncode == 0
    assert repo.devup("stop", "b").returncode == 0  # any status counts
    third = repo.devup("up", "c", "--json")
    assert third.returncode == 6, third.stderr
    assert "max_sessions" in third.stderr
    assert not repo.worktree("c").exists() and "c" not in world.branches(repo.path)
    assert not _alive(repo, "c")
    assert repo.devup("up", "b").returncode == 0  # resuming an existing session is no new one
    assert repo.devup("down", "a").returncode == 0
    assert repo.devup("up", "c").returncode == 0  # room again
    for name in ("b", "c"):
        assert repo.devup("down", name).returncode == 0


def test_max_running_stops_the_least_recently_used_and_never_removes_it(make) -> None:
    repo = _host(make, "max_running = 2")
    for name in ("a", "b"):
        assert repo.devup("up", name).returncode == 0
    time.sleep(1.1)
    assert repo.devup("env", "a").returncode == 0  # a use: b is now the least recently used
    port_b = json.loads(repo.devup("ls", "--json").stdout)[1]["ports"]["WEB"]
    third = repo.devup("up", "c")
    assert third.returncode == 0, third.stderr
    assert "stopped session b" in third.stderr
    assert _alive(repo, "a") and _alive(repo, "c") and not _alive(repo, "b")
    assert repo.worktree("b").is_dir() and "b" in world.branches(repo.path)  # stopped, not removed
    rows = {r["session"]: r for r in json.loads(repo.devup("ls", "--json").stdout)}
    assert rows["b"]["status"] == "stopped" and rows["b"]["ports"]["WEB"] == port_b  # lease kept
    for name in ("a", "b", "c"):
        assert repo.devup("down", name).returncode == 0


def test_max_running_with_evict_none_is_exit_6(make) -> None:
    repo = _host(make, 'max_running = 1\nevict = "none"')
    assert repo.devup("up", "a").returncode == 0
    second = repo.devup("up", "b")
    assert second.returncode == 6 and "max_running" in second.stderr, second.stderr
    assert _alive(repo, "a") and not repo.worktree("b").exists() and "b" not in world.branches(repo.path)
    assert repo.devup("down", "a").returncode == 0


def test_idle_sessions_are_stopped_by_the_next_up_of_another(make) -> None:
    repo = _host(make, 'idle_stop = "2s"')
    assert repo.devup("up", "a").returncode == 0
    time.sleep(2.5)
    other = repo.devup("up", "b")
    assert other.returncode == 0, other.stderr
    assert not _alive(repo, "a") and _alive(repo, "b")
    assert repo.worktree("a").is_dir()
    assert {r["session"]: r["status"] for r in json.loads(repo.devup("ls", "--json").stdout)}[
        "a"
    ] == "stopped"
    for name in ("a", "b"):
        assert repo.devup("down", name).returncode == 0


def test_a_commit_in_the_worktree_is_a_use(make) -> None:
    repo = _host(make, 'idle_stop = "3s"')
    assert repo.devup("up", "a").returncode == 0
    time.sleep(2)
    world.git(repo.worktree("a"), "commit", "--allow-empty", "-qm", "work")
    time.sleep(1.5)
    assert repo.devup("up", "b").returncode == 0
    assert _alive(repo, "a")  # used 1.5 s ago by its commit, not idle
    for name in ("a", "b"):
        assert repo.devup("down", name).returncode == 0


def test_ttl_expires_a_session_keeping_its_branch_and_a_dirty_worktree(make) -> None:
    repo = _host(make)
    assert repo.devup("up", "a", "--ttl", "2s").returncode == 0
    assert repo.devup("up", "d", "--ttl", "2s").returncode == 0
    (repo.worktree("d") / "notes.txt").write_text("mine\n")  # uncommitted work
    rows = {r["session"]: r for r in json.loads(repo.devup("ls", "--json").stdout)}
    assert rows["a"]["expires"] and rows["a"]["last_used"]
    time.sleep(2.5)
    gc = repo.devup("gc", "--json")
    assert gc.returncode == 0, gc.stderr
    reaped = {r["session"]: r for r in json.loads(gc.stdout)["reaped"]}
    assert reaped["a"]["why"] == "expired" and reaped["d"]["why"] == "expired"
    assert not _alive(repo, "a") and not _alive(repo, "d")
    assert json.loads(repo.devup("ls", "--json").stdout) == []
    assert not repo.worktree("a").exists() and "a" in world.branches(repo.path)  # the branch stays
    assert (repo.worktree("d") / "notes.txt").read_text() == "mine\n"  # the work stays


def test_a_session_whose_worktree_another_tool_removed_is_reaped_by_the_next_up(make) -> None:
    repo = _host(make)
    assert repo.devup("up", "a").returncode == 0
    port = json.loads(repo.devup("ls", "--json").stdout)[0]["ports"]["WEB"]
    shutil.rmtree(repo.worktree("a"))  # an agent app, `rm -rf`
    world.git(repo.path, "worktree", "prune")
    assert repo.devup("up", "b").returncode == 0
    assert not _alive(repo, "a")
    (b,) = json.loads(repo.devup("ls", "--json").stdout)
    assert b["session"] == "b"
    # Its lease is released: free, or leased again to b.
    assert b["ports"]["WEB"] == port or not world.port_bound(port)
    assert "a" in world.branches(repo.path)
    assert repo.devup("down", "b").returncode == 0


@pytest.mark.docker
def test_an_orphaned_session_keeps_its_data_as_a_snapshot(make, engine) -> None:
    repo = make(
        isolated("container") + '[groups.app]\nfiles = ["compose.yaml"]\n', {"compose.yaml": busybox_web()}
    )
    assert repo.devup("up", "a").returncode == 0
    (volume,) = [
        v for v in world.labelled("volume", repo_id=repo.repo_id, session="a") if v.endswith("_data")
    ]
    world.docker(
        "run", "--rm", "-v", f"{volume}:/d", "devup-local/busybox:latest", "sh", "-c", "echo kept > /d/f"
    )
    world.git(repo.path, "worktree", "remove", "--force", str(repo.worktree("a")))
    gc = repo.devup("gc", "--json")
    assert gc.returncode == 0, gc.stderr
    (reaped,) = json.loads(gc.stdout)["reaped"]
    assert reaped["why"] == "orphaned" and reaped["snapshot"].startswith("a-orphaned-")
    for kind in ("container", "network"):
        assert world.labelled(kind, repo_id=repo.repo_id, session="a") == []
    snaps = json.loads(repo.devup("snapshot", "ls", "--json").stdout)
    assert [s["name"] for s in snaps] == [reaped["snapshot"]]
    assert repo.devup("up", "b", "--from", reaped["snapshot"]).returncode == 0
    (copy,) = [v for v in world.labelled("volume", repo_id=repo.repo_id, session="b") if v.endswith("_data")]
    seen = world.docker("run", "--rm", "-v", f"{copy}:/d", "devup-local/busybox:latest", "cat", "/d/f")
    assert seen.strip() == "kept"
    assert repo.devup("down", "b").returncode == 0
    assert repo.devup("snapshot", "rm", reaped["snapshot"]).returncode == 0


def test_status_names_a_foreign_process_on_a_services_leased_port(make) -> None:
    import os
    import signal
    import subprocess
    import sys

    repo = _host(make)
    assert repo.devup("up", "a").returncode == 0
    (row,) = json.loads(repo.devup("ls", "--json").stdout)
    port = row["ports"]["WEB"]
    for proc in world.tagged_processes(repo_id=repo.repo_id, session="a"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(0.5)
    squatter = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 10
        while not world.port_bound(port) and time.time() < deadline:
            time.sleep(0.1)
        status = repo.devup("status", "a")
        assert status.returncode == 1
        assert f"answers from pid {squatter.pid}" in status.stdout + status.stderr, status.stdout
    finally:
        squatter.kill()
        squatter.wait()
    assert repo.devup("down", "a").returncode == 0


def test_down_stops_a_hook_daemon_that_cleared_its_environment(make) -> None:
    import psutil

    repo = make(
        isolated("host")
        + SERVICE
        + "[hooks]\npost_up = \"setsid env -i sh -c 'exec sleep 313' >/dev/null 2>&1 < /dev/null &\"\n"
    )
    assert repo.devup("up", "a").returncode == 0

    def sleepers() -> list[psutil.Process]:
        wt = str(repo.worktree("a"))
        return [
            p
            for p in psutil.process_iter(["cmdline", "cwd"])
            if p.info["cmdline"] == ["sleep", "313"] and (p.info["cwd"] or "").startswith(wt)
        ]

    deadline = time.time() + 5
    while not sleepers() and time.time() < deadline:
        time.sleep(0.1)
    (daemon,) = sleepers()
    assert "DEVUP_SESSION" not in daemon.environ()  # no tag to find it by
    assert repo.devup("down", "a").returncode == 0
    assert sleepers() == []


def _claude_hook(repo, event: str, payload: dict) -> str:
    """Claude Code 2.1.197's hook call, as claude-code-cli.md captured it."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "devup", "hook", "claude-code", {"WorktreeCreate": "worktree-create"}[event]],
        cwd=repo.path,
        input=json.dumps({"session_id": "b0d1cf98", "hook_event_name": event, **payload}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_claude_code_subagent_and_self_removed_worktrees_leave_nothing_running_after_gc(make) -> None:
    """claude-code-cli.md F1 (a subagent's hook-made worktree is kept and never removed) and F2
    (Claude removes the worktree itself with `git worktree remove --force`): `[limits].expire`
    bounds the first, orphan reaping the second; after `gc` nothing of either runs."""
    repo = _host(make, 'expire = "3s"')
    agent = _claude_hook(repo, "WorktreeCreate", {"cwd": str(repo.path), "name": "agent-a152e1a99a158c3fc"})
    removed = _claude_hook(repo, "WorktreeCreate", {"cwd": str(repo.path), "name": "feat-u"})
    ports = [r["ports"]["WEB"] for r in json.loads(repo.devup("ls", "--json").stdout)]
    world.git(repo.path, "worktree", "remove", "--force", removed)  # Claude's own fallback
    time.sleep(3.5)
    gc = repo.devup("gc", "--json")
    assert gc.returncode == 0, gc.stderr
    reaped = {r["session"]: r["why"] for r in json.loads(gc.stdout)["reaped"]}
    assert reaped == {"agent-a152e1a99a158c3fc": "expired", "feat-u": "orphaned"}
    assert world.tagged_processes(repo_id=repo.repo_id) == []
    assert json.loads(repo.devup("ls", "--json").stdout) == []
    assert not Path(agent).exists()
    assert all(not world.port_bound(p) for p in ports)


def _set_limits(repo, limits: str) -> None:
    text = (repo.path / "devup.toml").read_text()
    (repo.path / "devup.toml").write_text(text + f"[limits]\n{limits}\n")


def _spawn(repo, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devup", *args],
        cwd=repo.path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextlib.contextmanager
def _held(repo, name: str) -> Iterator[None]:
    """Session `name`'s lock held, as another devup run holds it."""
    path = repo.tmp / "state" / "repos" / repo.repo_id / "locks" / f"{name}.lock"
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def test_resumes_at_the_same_time_never_overshoot_max_running(make) -> None:
    """Two resumes of stopped sessions at once are both counted: one gets the last place."""
    repo = make(isolated("host") + SERVICE + '[hooks]\npost_up = "sleep 3"\n')
    for name in ("a", "b", "c"):
        assert repo.devup("up", name).returncode == 0
    for name in ("b", "c"):
        assert repo.devup("stop", name).returncode == 0
    _set_limits(repo, 'max_running = 2\nevict = "none"')
    procs = [_spawn(repo, "up", name) for name in ("b", "c")]
    codes = sorted(p.wait(timeout=120) for p in procs)
    assert codes == [0, 6], [p.stderr.read() if p.stderr else "" for p in procs]
    running = [r["session"] for r in json.loads(repo.devup("ls", "--json").stdout) if r["status"] == "up"]
    assert len(running) == 2 and "a" in running, running
    for name in ("a", "b", "c"):
        assert repo.devup("down", name).returncode == 0


def test_too_few_sessions_to_evict_is_exit_6_before_any_is_stopped(make) -> None:
    """Two places needed, one of the running sessions held by another run: none is stopped."""
    repo = _host(make)
    for name in ("a", "b"):
        assert repo.devup("up", name).returncode == 0
    _set_limits(repo, "max_running = 1")
    with _held(repo, "b"):
        third = repo.devup("up", "c")
    assert third.returncode == 6, third.stderr
    assert "nothing was changed" in third.stderr
    assert _alive(repo, "a") and _alive(repo, "b") and not repo.worktree("c").exists()
    for name in ("a", "b"):
        assert repo.devup("down", name).returncode == 0


def test_an_up_never_waits_for_another_ups_eviction(make) -> None:
    """SPEC §5.14: `up c` stops `a` to make room, which takes 8 s; `up d` meanwhile answers at
    once (it finds no session it could stop: exit 6), not after that stop."""
    slow = (
        "[services.slow]\n"
        "run = \"trap '' TERM; while true; do sleep 1; done\"\n"
        'stop_timeout = 8\nready = { cmd = "true" }\n'
    )
    repo = make(isolated("host") + slow)
    for name in ("a", "b"):
        assert repo.devup("up", name).returncode == 0
    _set_limits(repo, "max_running = 2")
    evicting = _spawn(repo, "up", "c")
    time.sleep(2)  # c has claimed a and is stopping it
    started = time.monotonic()
    other = repo.devup("up", "d")
    took = time.monotonic() - started
    assert evicting.wait(timeout=60) == 0, evicting.stderr.read() if evicting.stderr else ""
    assert took < 5, f"up d took {took:.1f} s: it waited for up c's eviction of a"
    assert other.returncode == 6, other.stderr
    for name in ("a", "b", "c"):
        assert repo.devup("down", name, "--force").returncode == 0


def test_down_says_it_keeps_a_worktree_the_session_found_there(make) -> None:
    """Expiry kept a worktree with uncommitted work; `up` found it and used it; `down` leaves it
    (devup did not make it this time) and says so, not just "removed"."""
    repo = _host(make)
    assert repo.devup("up", "y", "--ttl", "1s").returncode == 0
    (repo.worktree("y") / "work.txt").write_text("unsaved\n")
    time.sleep(1.5)
    assert repo.devup("gc").returncode == 0
    assert repo.worktree("y").is_dir() and not _alive(repo, "y")  # expired, the work kept
    assert repo.devup("up", "y").returncode == 0
    down = repo.devup("down", "y", "--force", "--json")
    assert down.returncode == 0, down.stderr
    message = json.loads(down.stdout)["message"]
    assert str(repo.worktree("y")) in message and "kept" in message, message
    assert (repo.worktree("y") / "work.txt").read_text() == "unsaved\n"
