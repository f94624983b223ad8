"""Concurrency under load (SPEC §5.14): twenty loops on twenty sessions, run at once, each command
ending as the single-run contract says, and nothing left behind, checked through git, /proc, the
engine and the lease file, not through devup's answers.

Each loop owns its session, so exit 4 (another run holds *this* session) must never appear; every
command of the cycle is exit 0 in a single run (`status` of a session that is up included;
`snapshot ls` asks the engine even in a host-mode repository, and the engine is up here), so
every command is expected to be exit 0 under load too. A command that takes longer than
COMMAND_TIMEOUT fails the test as well: slowness is tolerated, a hang is not.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import world
from tests.conftest import HTTP_SERVICE, Repo, busybox_web, isolated, port_range

HOST_SESSIONS = 17
CONTAINER_SESSIONS = 3
LOAD_SECONDS = 60.0
# Generous: twenty loops share two cores with whatever else runs on the machine.
COMMAND_TIMEOUT = 180.0

SERVICE = f'[services.web]\nrun = "{HTTP_SERVICE}"\nport = true\nready = {{ http = "/" }}\n'


def _cycle(name: str) -> list[tuple[str, list[str]]]:
    """One round of a loop, in order: (label, devup arguments)."""
    return [
        ("up", ["up", name]),
        ("env", ["env", name, "--format", "json"]),
        ("status", ["status", name]),
        ("exec", ["exec", name, "--", "true"]),
        ("ls", ["ls", "--json"]),
        ("snapshot ls", ["snapshot", "ls"]),
        ("stop", ["stop", name]),
        ("up (resume)", ["up", name]),
        ("down", ["down", name]),
    ]


@dataclass(frozen=True)
class Ran:
    session: str
    command: str
    code: int | None  # None: timed out (and killed)
    seconds: float
    problem: str  # "" when the command ended as the contract says
    err: str


def _judge(repo: Repo, name: str, command: str, result: subprocess.CompletedProcess[str]) -> str:
    """What is wrong with one command's outcome ("" when nothing): its exit code first, then what
    it printed where that is cheap to check."""
    if result.returncode != 0:
        return f"exit {result.returncode}, expected 0"
    if command == "env":
        seen = json.loads(result.stdout).get("DEVUP_SESSION")
        if seen != name:
            return f"env says DEVUP_SESSION={seen!r}"
    if command == "ls":
        rows = json.loads(result.stdout)
        mine = [r for r in rows if r["session"] == name]
        if [r["status"] for r in mine] != ["up"]:
            return f"ls lists {name} as {[r['status'] for r in mine]}, expected ['up']"
        # A compose service's first port is there under two keys (WEB and WEB_8080): one lease.
        ports = [p for r in rows for p in set(r["ports"].values())]
        if len(ports) != len(set(ports)):  # SPEC §5.5: leases are disjoint between sessions
            return f"ls shows a port leased twice: {sorted(ports)}"
    if command == "down":
        # SPEC §2/§5.6: down removes the worktree, never the branch (made from NAME by the first up)
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", f"refs/heads/{name}"], cwd=repo.path, capture_output=True
        )
        if found.returncode != 0:
            return f"down deleted branch {name}"
    return ""


def _loop(repo: Repo, name: str, deadline: float, ran: list[Ran], upped: set[str]) -> None:
    """Cycles on session `name` until the deadline (at least one whole cycle). When time is up in
    the middle of a cycle, the session is taken down and the loop ends. A command that ends
    otherwise than the contract says ends the loop too (the test's cleanup takes it down)."""
    cycles = 0
    exists = False
    while cycles == 0 or time.monotonic() < deadline:
        for command, args in _cycle(name):
            if cycles and time.monotonic() >= deadline and command != "down":
                if not exists:
                    return
                command, args = "down", ["down", name]
            t0 = time.monotonic()
            try:
                result = repo.devup(*args, timeout=COMMAND_TIMEOUT)
            except subprocess.TimeoutExpired:
                ran.append(Ran(name, command, None, time.monotonic() - t0, "timed out", ""))
                return
            problem = _judge(repo, name, command, result)
            ran.append(Ran(name, command, result.returncode, time.monotonic() - t0, problem, result.stderr))
            if problem:
                return
            if command.startswith("up"):
                exists = True
                upped.add(name)
            elif command == "down":
                exists = False
                if time.monotonic() >= deadline:
                    return
        cycles += 1


def _leftovers(repo: Repo) -> list[str]:
    """Everything of the repository's sessions still in the world."""
    found = [f"process {p.pid}" for p in world.tagged_processes(repo_id=repo.repo_id)]
    for kind in ("container", "network", "volume"):
        found += [f"{kind} {n}" for n in world.labelled(kind, repo_id=repo.repo_id)]
    lease_file = Path(os.environ["DEVUP_HOME"]) / "ports.json"
    if lease_file.exists():
        leases = json.loads(lease_file.read_text())["leases"]
        found += [
            f"lease of port {port} ({lease['session']})"
            for port, lease in leases.items()
            if lease["repo"] == repo.repo_id
        ]
    found += [f"worktree {p}" for p in world.worktree_paths(repo.path) if p != repo.path]
    folder = repo.path.parent / f"{repo.path.name}-worktrees"
    found += [f"folder {p}" for p in (folder.iterdir() if folder.is_dir() else [])]
    state = Path(os.environ["DEVUP_HOME"]) / "repos" / repo.repo_id
    found += [f"record {p.name}" for p in (state / "sessions").glob("*.json")]
    found += [f"journal {p.name}" for p in (state / "journals").glob("*.jsonl")]
    return found


def _branch_problems(repo: Repo, upped: set[str]) -> list[str]:
    """The branches are main and one per session that came up, each a plain local branch where
    main is (made from NAME, nothing committed, no upstream): devup made no other, deleted none."""
    problems = []
    names = set(world.branches(repo.path))
    if names != {"main"} | upped:
        problems.append(f"branches {sorted(names)}, expected main and {sorted(upped)}")
    main = world.git(repo.path, "rev-parse", "main").strip()
    for name in sorted(names & upped):
        if world.git(repo.path, "rev-parse", f"refs/heads/{name}").strip() != main:
            problems.append(f"branch {name} is not at main's commit")
        upstream = subprocess.run(
            ["git", "config", f"branch.{name}.merge"], cwd=repo.path, capture_output=True
        )
        if upstream.returncode == 0:
            problems.append(f"branch {name} has an upstream")
    return problems


def _force_down(repo: Repo) -> None:
    """After a failure: down what is still there, so the fixture's sweep finds only real leaks."""
    listed = repo.devup("ls", "--json", timeout=COMMAND_TIMEOUT)
    for row in json.loads(listed.stdout or "[]"):
        repo.devup("down", row["session"], "--force", timeout=COMMAND_TIMEOUT)


def _summary(ran: list[Ran]) -> str:
    counts: dict[tuple[str, int | None], int] = {}
    for r in ran:
        counts[(r.command, r.code)] = counts.get((r.command, r.code), 0) + 1
    return ", ".join(f"{cmd} exit {code}: {n}" for (cmd, code), n in sorted(counts.items(), key=str))


@pytest.mark.docker
def test_twenty_loops_on_twenty_sessions_never_busy_and_leave_nothing(make, engine) -> None:
    host = make(isolated("host", ports=port_range(60)) + SERVICE, folder="host")
    cont = make(
        isolated("container", ports=port_range(20)) + '[groups.app]\nfiles = ["compose.yaml"]\n',
        {"compose.yaml": busybox_web()},
        folder="cont",
    )
    loops = [(host, f"h{i:02d}") for i in range(1, HOST_SESSIONS + 1)]
    loops += [(cont, f"c{i}") for i in range(1, CONTAINER_SESSIONS + 1)]
    ran: list[Ran] = []  # list.append is atomic: the threads share it without a lock
    upped: dict[Path, set[str]] = {host.path: set(), cont.path: set()}
    started = time.monotonic()
    deadline = started + LOAD_SECONDS
    threads = [
        threading.Thread(target=_loop, args=(repo, name, deadline, ran, upped[repo.path]), name=name)
        for repo, name in loops
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        # Look at the world before any cleanup of ours, which would hide what devup left.
        left = {r.path.name: _leftovers(r) for r in (host, cont)}
        branches = {r.path.name: _branch_problems(r, upped[r.path]) for r in (host, cont)}
    finally:
        for repo in (host, cont):
            _force_down(repo)
            # down keeps the branches (checked above): the test deletes them itself
            for name in sorted(upped[repo.path]):
                subprocess.run(["git", "branch", "-D", name], cwd=repo.path, capture_output=True)

    summary = _summary(ran)
    busy = [r for r in ran if r.code == 4]
    assert not busy, f"exit 4 on sessions no other run held: {[(r.session, r.command) for r in busy]}\n" + (
        "\n".join(f"--- {r.session} {r.command}:\n{r.err[-1500:]}" for r in busy[:3])
    )
    wrong = [r for r in ran if r.problem]
    assert not wrong, f"{summary}\n" + "\n".join(
        f"--- {r.session} {r.command} ({r.seconds:.1f} s): {r.problem}\n{r.err[-1500:]}" for r in wrong[:5]
    )
    assert left == {"host": [], "cont": []}, f"left behind: {left}"
    assert branches == {"host": [], "cont": []}, branches
    # Every loop ran at least one whole cycle, every command of it exit 0.
    cycles = sum(1 for r in ran if r.command == "up (resume)")
    assert cycles >= len(loops), summary
    slowest = {
        c: max(r.seconds for r in ran if r.command == c) for c in dict.fromkeys(r.command for r in ran)
    }
    print(f"\n{len(ran)} commands in {elapsed:.0f} s ({len(ran) / elapsed:.1f}/s): {summary}")
    print("slowest: " + ", ".join(f"{c} {s:.1f} s" for c, s in slowest.items()))


# --- reaping judges a session again under its lock ---------------------------------------------
#
# Found while writing the load test above, which meets that moment only by chance. Every `up`
# reaps the repository's orphaned sessions (SPEC §5.13): it looks at each record and its worktree
# without a lock, then acts. A session whose own `down` is between removing its worktree and
# removing its record looks orphaned in that moment. These tests stop the world in that moment by
# holding the lease file's lock (the lock every `down` takes last, and every `up` takes to lease),
# and let a0, a session orphaned for real, keep the reaper busy.


class _LeaseFile:
    """The state's lease-file lock, held by the test as a busy fleet holds it for a moment."""

    def __init__(self) -> None:
        self.path = Path(os.environ["DEVUP_HOME"]) / "ports.lock"
        self.fd: int | None = None

    def hold(self) -> None:
        self.fd = os.open(self.path, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _flocks(path: Path) -> tuple[bool, set[int]]:
    """(whether some process holds a flock on `path`, the pids waiting for it), from /proc/locks."""
    st = os.stat(path)
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    held, waiting = False, set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1] == "->" and fields[2] == "FLOCK" and fields[6] == where:
            waiting.add(int(fields[5]))
        elif fields[1] == "FLOCK" and fields[5] == where:
            held = True
    return held, waiting


def _wait(what: str, done, timeout: float = COMMAND_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _reaper_busy_with_a0(make, tmp_path: Path) -> tuple[Repo, subprocess.Popen[str], _LeaseFile]:
    """Sessions a0 (orphaned for real: another tool removed its worktree) and a1 (up); a1's
    `down` caught between removing its worktree and removing its record while `up b` looks for
    what to reap, then let go. Returns once a1 is down and b's reaper is in a0's post_down hook,
    which waits for the test's go (a file `a0-go`): the reaper's next session is a1."""
    wait = (
        f'if [ "$DEVUP_SESSION" = a0 ]; then touch {tmp_path}/a0-in; i=0; '
        f"while [ ! -e {tmp_path}/a0-go ] && [ $i -lt 3000 ]; do sleep 0.05; i=$((i+1)); done; fi"
    )
    repo = make(
        isolated("host") + '[services.tiny]\nrun = "exec sleep 3600"\n' + f"[hooks]\npost_down = '{wait}'\n"
    )
    for name in ("a0", "a1"):
        assert repo.devup("up", name).returncode == 0
    shutil.rmtree(repo.worktree("a0"))
    world.git(repo.path, "worktree", "prune")
    lease = _LeaseFile()
    lease.hold()
    try:
        down_a1 = repo.popen("down", "a1")
        _wait("a1's worktree removed", lambda: not repo.worktree("a1").exists())  # its record not yet
        up_b = repo.popen("up", "b")  # reaps a0, then a1: both look orphaned now
        _wait("b's reaper at the lease file (down of a0)", lambda: up_b.pid in _flocks(lease.path)[1])
    finally:
        lease.release()
    assert down_a1.wait(timeout=COMMAND_TIMEOUT) == 0, down_a1.stderr.read()
    _wait("a0's post_down", (tmp_path / "a0-in").exists)
    return repo, up_b, lease


def test_reaping_never_brings_down_a_session_that_came_back_up(make, tmp_path: Path) -> None:
    repo, up_b, _ = _reaper_busy_with_a0(make, tmp_path)
    again = repo.devup("up", "a1")  # a1's owner goes on: up after down
    assert again.returncode == 0, again.stderr
    (tmp_path / "a0-go").touch()
    _, err = up_b.communicate(timeout=COMMAND_TIMEOUT)
    assert up_b.returncode == 0, err
    assert "session a0 orphaned: brought down" in err
    assert "a1" not in err, err
    env = repo.devup("env", "a1")
    assert env.returncode == 0, env.stderr
    assert repo.worktree("a1").is_dir() and world.tagged_processes(repo_id=repo.repo_id, session="a1")
    for name in ("a1", "b"):
        assert repo.devup("down", name).returncode == 0


def test_reaping_never_holds_a_session_gone_meanwhile_against_its_owner(make, tmp_path: Path) -> None:
    repo, up_b, lease = _reaper_busy_with_a0(make, tmp_path)
    (a1_lock,) = (Path(os.environ["DEVUP_HOME"]) / "repos" / repo.repo_id / "locks").glob("a1.lock")
    lease.hold()
    try:
        (tmp_path / "a0-go").touch()
        # b's reaper is past a1 (b waits for the lease file to lease its own port), or holds a1's
        # lock while it waits for the lease file.
        _wait("the reaper at a1", lambda: up_b.pid in _flocks(lease.path)[1] or _flocks(a1_lock)[0])
        up_a1 = repo.popen("up", "a1")  # a1's owner goes on: up after down
        _wait(
            "up a1 to end or to wait for the lease file",
            lambda: up_a1.poll() is not None or up_a1.pid in _flocks(lease.path)[1],
        )
    finally:
        lease.release()
    _, err = up_a1.communicate(timeout=COMMAND_TIMEOUT)
    assert up_a1.returncode == 0, err  # exit 4 here: b's reaper held a1, a session of another
    _, err = up_b.communicate(timeout=COMMAND_TIMEOUT)
    assert up_b.returncode == 0, err
    for name in ("a1", "b"):
        assert repo.devup("down", name).returncode == 0


def test_up_retries_git_that_met_another_worktree_half_written(make, tmp_path: Path) -> None:
    """git (2.39) that lists a repository's worktrees while another git adds or removes one can
    read that one's `commondir` empty or gone and die with "failed to read" before it changed
    anything: 5 of 192 `up`s of bench/fleet.py met it with real git (`worktree add -b` having
    created its branch already). Here a git in front of the real one dies so, once, on the first
    `worktree list` and on the first `worktree add` (after creating the branch for `-b`, as git
    does): `up` retries it as the lock contention it is (SPEC §5.7) and is exit 0."""
    real = shutil.which("git")
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "git"
    fake.write_text(
        "#!/bin/sh\n"
        'case " $* " in\n'
        '  *" worktree list "*) met="$0.met-list" ;;\n'
        '  *" worktree add "*) met="$0.met-add" ;;\n'
        '  *) exec "$REAL_GIT" "$@" ;;\n'
        "esac\n"
        '[ -e "$met" ] && exec "$REAL_GIT" "$@"\n'
        ': > "$met"\n'
        'if [ "$2" = add ] && [ "$3" = -b ]; then "$REAL_GIT" branch "$4" "$6"; fi\n'
        "echo 'fatal: failed to read .git/worktrees/other/commondir: Success' >&2\n"
        "exit 128\n"
    )
    fake.chmod(0o755)
    repo = make(isolated("host") + '[services.tiny]\nrun = "exec sleep 3600"\n')
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "REAL_GIT": real}
    up = repo.devup("up", "a", env=env)
    assert up.returncode == 0, up.stderr
    assert (bin_dir / "git.met-list").exists() and (bin_dir / "git.met-add").exists()
    assert world.git(repo.worktree("a"), "branch", "--show-current").strip() == "a"
    assert repo.devup("down", "a").returncode == 0
