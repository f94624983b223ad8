"""Hostile input and broken environments (SPEC §5.11): what a hostile contributor or an unlucky
machine does to devup, checked end to end on real git, real processes and the real engine."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import world
from tests.conftest import HTTP_SERVICE, Repo, busybox_web, isolated

HOST = isolated("host")


def state_dir(repo: Repo) -> Path:
    return repo.tmp / "state" / "repos" / repo.repo_id


def lose_record(repo: Repo, name: str) -> None:
    """The session record vanishes (a disk restored from backup, a hand `rm`): its worktree is
    now an orphan that only devup's mark can tell apart from a hand-made one."""
    (state_dir(repo) / "sessions" / f"{name}.json").unlink()


# --- gc removes only what carries devup's mark ----------------------------------------------


def test_gc_keeps_a_hand_made_worktree_with_its_ignored_files(make):
    repo = make(HOST, {".gitignore": "*.sqlite\n"})
    assert repo.devup("up", "orphan").returncode == 0
    lose_record(repo, "orphan")
    hand = repo.worktree("review-pr-7")
    world.git(repo.path, "worktree", "add", "-q", "-b", "review-pr-7", str(hand))
    (hand / "dev.sqlite").write_text("precious")

    result = repo.devup("gc", "--json")
    assert result.returncode == 0, result.stderr
    removed = [o["name"] for o in json.loads(result.stdout)["orphans"] if o["kind"] == "worktree"]
    assert removed == [str(repo.worktree("orphan"))]
    assert (hand / "dev.sqlite").read_text() == "precious"
    paths = world.worktree_paths(repo.path)
    assert hand in paths and repo.worktree("orphan") not in paths


def test_gc_never_lists_the_main_checkout(make):
    # Worktrees next to the main checkout: the main checkout sits in the worktrees folder.
    repo = make(HOST.replace("[ports]", 'worktrees = ".."\n[ports]'))
    assert repo.devup("up", "next").returncode == 0
    (repo.path / "local.sqlite").write_text("x")
    dry = repo.devup("gc", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["orphans"] == []
    assert repo.devup("gc").returncode == 0
    assert (repo.path / "local.sqlite").exists() and (repo.path / ".git").is_dir()
    assert world.worktree_paths(repo.path)[:1] == [repo.path]


def test_gc_keeps_an_orphan_worktree_with_ignored_files_unless_forced(make):
    repo = make(HOST, {".gitignore": "*.sqlite\n"})
    assert repo.devup("up", "lost").returncode == 0
    lose_record(repo, "lost")
    wt = repo.worktree("lost")
    (wt / "dev.sqlite").write_text("precious")
    result = repo.devup("gc", "--json")
    assert result.returncode == 1
    (orphan,) = [o for o in json.loads(result.stdout)["orphans"] if o["kind"] == "worktree"]
    assert not orphan["removed"] and "dev.sqlite" in orphan["error"]
    assert (wt / "dev.sqlite").read_text() == "precious"
    assert repo.devup("gc", "--force").returncode == 0
    assert wt not in world.worktree_paths(repo.path) and not wt.exists()


def test_gc_keeps_a_session_record_made_before_the_mark_existed(make):
    repo = make(HOST)
    assert repo.devup("up", "old").returncode == 0
    # A worktree devup made before it wrote marks: no mark, but a record, so it is no orphan.
    private = Path(world.git(repo.worktree("old"), "rev-parse", "--absolute-git-dir").strip())
    (private / "devup-session").unlink()
    assert repo.devup("gc").returncode == 0
    assert repo.worktree("old") in world.worktree_paths(repo.path)
    assert os.path.isdir(repo.worktree("old"))


# --- [worktree].copy stays inside the main checkout and the worktree ------------------------


def outside_dir(repo: Repo) -> Path:
    """A folder outside the repository, standing in for /etc or a victim's home."""
    folder = repo.tmp / "outside"
    folder.mkdir(exist_ok=True)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_copy_refuses_a_committed_symlink_that_leads_out_of_the_worktree(make):
    repo = make(
        HOST + '[worktree]\ncopy = ["config/master.key"]\n',
        {".gitignore": "config/master.key\n", "config/app.yaml": "app: 1\n"},
    )
    outside = outside_dir(repo)
    (outside / "unrelated").write_text("keep")
    # A contributor's branch replaces config/ by a link to a folder outside the repository.
    scratch = repo.tmp / "scratch"
    world.git(repo.path, "worktree", "add", "-q", "-b", "evil", str(scratch))
    world.git(scratch, "rm", "-rq", "config")
    (scratch / "config").symlink_to(outside)
    world.git(scratch, "add", "config")
    world.git(scratch, "commit", "-qm", "config is a link")
    world.git(repo.path, "worktree", "remove", str(scratch))
    (repo.path / "config" / "master.key").write_text("secret")
    before = snapshot(outside)

    result = repo.devup("up", "evil")
    assert result.returncode == 2, result.stderr
    assert "config/master.key" in result.stderr and "outside" in result.stderr
    assert snapshot(outside) == before
    assert world.worktree_paths(repo.path) == [repo.path]
    assert (repo.path / "config" / "master.key").read_text() == "secret"


def test_copy_refuses_an_untracked_symlink_that_leads_out_of_the_main_checkout(make):
    repo = make(HOST + '[worktree]\ncopy = ["sub/shadow", "sub/*"]\n')
    outside = outside_dir(repo)
    (outside / "shadow").write_text("root:hash")
    (repo.path / "sub").symlink_to(outside)
    before = world.branches(repo.path)
    result = repo.devup("up", "s1")
    assert result.returncode == 2, result.stderr
    assert "sub/shadow" in result.stderr
    assert world.branches(repo.path) == before
    assert not repo.worktree("s1").exists()
    assert world.worktree_paths(repo.path) == [repo.path]


@pytest.mark.parametrize("entry", ["ABSOLUTE/shadow", "../outside/shadow", "conf/../../outside/shadow"])
def test_copy_paths_outside_the_main_checkout_are_a_config_error(make, entry):
    repo = make(HOST)
    outside = outside_dir(repo)
    (outside / "shadow").write_text("root:hash")
    entry = entry.replace("ABSOLUTE", str(outside))
    repo.write("devup.toml", (repo.path / "devup.toml").read_text() + f'[worktree]\ncopy = ["{entry}"]\n')
    repo.commit("copy outside")
    result = repo.devup("up", "c1")
    assert result.returncode == 2, result.stderr
    assert "devup.toml:" in result.stderr and "worktree.copy" in result.stderr
    assert not repo.worktree("c1").exists()
    assert world.worktree_paths(repo.path) == [repo.path]


# --- state folders, journals and lease files: private, trusted, and per session -------------


def devup_with_umask(repo: Repo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", 'umask 000; exec "$0" -m devup "$@"', sys.executable, *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_state_folders_are_private_whatever_the_umask(make):
    repo = make(HOST + f'[services.web]\nrun = "{HTTP_SERVICE}"\nport = true\nready = {{ http = "/" }}\n')
    result = devup_with_umask(repo, "up", "u1")
    assert result.returncode == 0, result.stderr
    home = repo.tmp / "state"
    folders = [home, *(p for p in home.rglob("*") if p.is_dir() and not p.is_symlink())]
    assert len(folders) > 5
    assert {str(p): oct(p.stat().st_mode & 0o777) for p in folders if p.stat().st_mode & 0o077} == {}
    assert repo.devup("down", "u1").returncode == 0


def plant_journal(repo: Repo, name: str, canary: Path) -> Path:
    """A journal devup did not write: its one undo record would run a command."""
    path = state_dir(repo) / "journals" / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [
        {"op": "begin", "session": name, "resumed": False, "pid": 1, "branch": name, "mode": "host"},
        {
            "op": "push",
            "id": 0,
            "undo": {
                "kind": "hook_undo",
                "args": {"name": "post_up", "command": f"touch {canary}", "cwd": "/", "env": {}},
                "label": "undo",
            },
        },
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


@pytest.mark.parametrize("how", ["other owner", "group writable", "world writable"])
def test_a_journal_someone_else_could_have_written_is_never_run(make, how):
    repo = make(HOST)
    assert repo.devup("up", "good").returncode == 0
    canary = repo.tmp / "canary"
    path = plant_journal(repo, "evil", canary)
    if how == "other owner":
        os.chown(path, 65534, 65534)
    else:
        path.chmod(0o620 if how == "group writable" else 0o606)
    gc = repo.devup("gc")
    assert "Traceback" not in gc.stderr and "devup runs nothing from it" in gc.stderr
    recover = repo.devup("recover", "evil")
    assert recover.returncode != 0 and "devup runs nothing from it" in recover.stderr
    assert repo.devup("up", "evil").returncode != 0
    assert not canary.exists()
    # Only that session is affected.
    assert repo.devup("status", "good").returncode == 0
    assert repo.worktree("good") in world.worktree_paths(repo.path)
    assert repo.devup("down", "good").returncode == 0


CORRUPT_LINES = {
    "binary": b"\xff\xfe\x00garbage",
    "bare number": b"42",
    "push without id": b'{"op": "push", "undo": {"kind": "hook_undo", "args": {}, "label": "x"}}',
    "text": b"not json at all",
}


@pytest.mark.parametrize("kind", list(CORRUPT_LINES))
def test_a_corrupt_journal_line_affects_only_its_session(make, kind):
    repo = make(HOST)
    assert repo.devup("up", "good").returncode == 0
    path = plant_journal(repo, "bad", repo.tmp / "canary")
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join([lines[0], CORRUPT_LINES[kind], lines[1]]) + b"\n")
    ls = repo.devup("ls", "--json")
    assert ls.returncode == 0, ls.stderr
    assert [s["session"] for s in json.loads(ls.stdout)] == ["good"]
    assert "bad.jsonl is corrupt" in ls.stderr
    for args in (["recover"], ["gc"], ["status", "good"]):
        result = repo.devup(*args)
        assert "Traceback" not in result.stderr, (args, result.stderr)
    assert repo.devup("status", "good").returncode == 0
    assert repo.devup("gc").returncode == 0
    assert repo.worktree("good") in world.worktree_paths(repo.path)
    assert not (repo.tmp / "canary").exists()
    assert repo.devup("down", "good").returncode == 0


def test_a_binary_session_record_affects_only_its_session(make):
    repo = make(HOST)
    assert repo.devup("up", "good").returncode == 0
    (state_dir(repo) / "sessions" / "bad.json").write_bytes(b"\xff\xfe\x00\x01binary")
    ls = repo.devup("ls", "--json")
    assert ls.returncode == 0, ls.stderr
    assert [s["session"] for s in json.loads(ls.stdout)] == ["good"]
    status = repo.devup("status", "bad")
    assert status.returncode != 0 and "corrupt" in status.stderr and "Traceback" not in status.stderr
    gc = repo.devup("gc")
    assert gc.returncode == 0 and "Traceback" not in gc.stderr
    assert repo.devup("status", "good").returncode == 0
    assert repo.devup("down", "good").returncode == 0


@pytest.mark.parametrize(
    "garbage", [b"{not json", b"\xff\xfe", b'{"leases": {"abc": {"repo": 1}}}', b"[1, 2]", b"42"]
)
def test_a_damaged_lease_file_is_rebuilt_from_the_session_records(make, garbage):
    low = random.randrange(10000, 18000)
    repo = make(
        isolated("host", ports=f"[{low}, {low + 1}]")
        + f'[services.web]\nrun = "{HTTP_SERVICE}"\nport = true\nready = {{ http = "/" }}\n'
    )
    first = repo.up_json("a")["ports"]["WEB"]
    assert repo.devup("stop", "a").returncode == 0  # its port is free, but still leased to it
    ports_json = repo.tmp / "state" / "ports.json"
    ports_json.write_bytes(garbage)
    second = repo.devup("up", "b", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["ports"]["WEB"] != first
    assert "rebuilt" in second.stderr
    assert [p.read_bytes() for p in ports_json.parent.glob("ports.json.corrupt-*")] == [garbage]
    assert repo.devup("down", "b").returncode == 0
    assert repo.up_json("a")["ports"]["WEB"] == first  # a keeps its port
    assert repo.devup("down", "a").returncode == 0


# --- names, numbers and config files --------------------------------------------------------


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_a_session_name_with_a_final_newline_is_refused(make, command):
    repo = make(HOST)
    result = repo.devup(command, "abc\n")
    assert result.returncode == 2, result.stderr
    assert "invalid session name" in result.stderr
    assert world.worktree_paths(repo.path) == [repo.path] and world.branches(repo.path) == ["main"]


@pytest.mark.parametrize(
    "snippet, key",
    [
        (f'[services.web]\nrun = "{HTTP_SERVICE}"\nstop_timeout = inf\n', "services.web.stop_timeout"),
        (f'[services.web]\nrun = "{HTTP_SERVICE}"\nready_timeout = nan\n', "services.web.ready_timeout"),
        ('[hooks]\npost_up = { run = "true", timeout = inf }\n', "hooks.post_up.timeout"),
        ('[hooks]\npost_up = { run = "true", timeout = 1e300 }\n', "hooks.post_up.timeout"),
        ('[groups.db]\nfiles = ["c.yaml"]\nwait_timeout = inf\n', "groups.db.wait_timeout"),
        ('[groups."db\\n"]\nfiles = ["c.yaml"]\n', "groups.db\n"),
        ('[env]\nA = "x$B"\nB = "y${A}"\n', "env.A"),
    ],
)
def test_unbounded_numbers_bad_names_and_cycles_are_config_errors(make, snippet, key):
    repo = make(HOST + snippet)
    result = repo.devup("up", "n1")
    assert result.returncode == 2, result.stderr
    assert "devup.toml:" in result.stderr and key in result.stderr
    assert "Traceback" not in result.stderr
    assert world.worktree_paths(repo.path) == [repo.path] and world.branches(repo.path) == ["main"]


def test_a_down_hook_with_an_infinite_timeout_is_ignored_not_a_crash(make):
    repo = make(HOST)
    assert repo.devup("up", "d1").returncode == 0
    marker = repo.tmp / "ran"
    repo.write("devup.toml", HOST + f'[hooks]\npost_down = {{ run = "touch {marker}", timeout = inf }}\n')
    result = repo.devup("down", "d1")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert repo.worktree("d1") not in world.worktree_paths(repo.path)


@pytest.mark.parametrize(
    "content, expect",
    [
        (b'[project]\nname = "caf\xe9"\n', "devup.toml:2: not valid UTF-8"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested too deeply"),
    ],
)
def test_unreadable_config_files_are_config_errors(make, content, expect):
    repo = make(HOST)
    (repo.path / "devup.toml").write_bytes(content)
    result = repo.devup("up", "r1")
    assert result.returncode == 2, result.stderr
    assert expect in result.stderr and "Traceback" not in result.stderr
    assert world.worktree_paths(repo.path) == [repo.path]


@pytest.mark.parametrize("where", ["a file", "the root"])
def test_a_worktrees_folder_that_is_a_file_or_the_root_is_refused(make, where):
    repo = make(HOST)
    target = "/" if where == "the root" else "../afile"
    (repo.tmp / "afile").write_text("not a folder")
    repo.write("devup.toml", HOST.replace("[ports]", f'worktrees = "{target}"\n[ports]'))
    result = repo.devup("up", "w1")
    assert result.returncode == 2, result.stderr
    assert "project.worktrees" in result.stderr
    assert (repo.tmp / "afile").read_text() == "not a folder"
    assert world.worktree_paths(repo.path) == [repo.path] and world.branches(repo.path) == ["main"]


@pytest.mark.parametrize("branch", ["@", "0123456789abcdef0123456789abcdef01234567"])
def test_branch_names_git_reads_as_something_else_are_refused(make, branch):
    repo = make(HOST)
    result = repo.devup("up", "x1", "--branch", branch)
    assert result.returncode == 2, result.stderr
    assert "cannot be a session's branch" in result.stderr
    assert world.worktree_paths(repo.path) == [repo.path] and world.branches(repo.path) == ["main"]


def test_status_of_a_path_outside_the_state_folder_is_refused(make):
    repo = make(HOST)
    assert repo.devup("up", "good").returncode == 0
    # A record-shaped file outside the sessions folder, as `../../x` would reach it.
    sessions = state_dir(repo) / "sessions"
    (sessions.parent.parent / "x.json").write_bytes((sessions / "good.json").read_bytes())
    for command in ("status", "env", "logs", "down"):
        result = repo.devup(command, "../../x")
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "invalid session name" in result.stderr
    assert repo.devup("status", "good").returncode == 0
    assert repo.devup("down", "good").returncode == 0


# --- a rollback survives a closed pipe, a full disk and a read-only state folder ------------

ROLLBACK = (
    HOST
    + f'[services.web]\nrun = "{HTTP_SERVICE}"\nport = true\nready = {{ http = "/" }}\n'
    + '[hooks]\npost_create = { run = "true", undo = "true" }\n'
)


def assert_nothing_left(repo: Repo, name: str) -> None:
    assert world.worktree_paths(repo.path) == [repo.path]
    assert world.branches(repo.path) == ["main"]
    assert world.tagged_processes(repo_id=repo.repo_id, session=name) == []


def test_a_closed_pipe_never_stops_the_rollback(make):
    repo = make(ROLLBACK)
    result = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m devup up p1 2>&1 | head -1; exit "${{PIPESTATUS[0]}}"'],
        cwd=repo.path,
        capture_output=True,
        text=True,
        env={**os.environ, "DEVUP_FAULT": "raise@before:commit"},
        timeout=120,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert len(result.stdout.splitlines()) == 1
    assert_nothing_left(repo, "p1")
    ls = repo.devup("ls", "--json")
    assert json.loads(ls.stdout) == [] and ls.stderr == ""


def test_a_closed_stdout_never_stops_the_rollback_of_a_json_run(make):
    repo = make(ROLLBACK)
    result = subprocess.run(
        [
            "bash",
            "-c",
            f'"{sys.executable}" -m devup up p2 --json 2>/dev/null | true; exit "${{PIPESTATUS[0]}}"',
        ],
        cwd=repo.path,
        capture_output=True,
        text=True,
        env={**os.environ, "DEVUP_FAULT": "raise@before:commit"},
        timeout=120,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert_nothing_left(repo, "p2")


@pytest.fixture
def small_state(tmp_path):
    """DEVUP_HOME on a tiny tmpfs of its own, so a test can fill it or make it read-only."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run it as root (CI does)")
    home = tmp_path / "state"
    home.mkdir(exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(home)], check=True)
    yield home
    subprocess.run(["mount", "-o", "remount,rw", str(home)], capture_output=True)
    subprocess.run(["umount", "-l", str(home)], check=True)


@pytest.mark.parametrize("breakage", ["full", "read-only"])
def test_a_full_or_read_only_state_folder_never_stops_the_rollback(make, small_state, breakage):
    # The hook breaks the state folder, then fails: everything after runs on a broken disk.
    breaker = (
        f"dd if=/dev/zero of={small_state}/filler bs=64k 2>/dev/null; false"
        if breakage == "full"
        else f"mount -o remount,ro {small_state}; false"
    )
    # No hostname router: its log, open for writing in the state folder, would keep the
    # read-only remount from happening at all.
    no_router = isolated("host", routes=False) + "[routes]\nhostnames = false\n"
    repo = make(ROLLBACK.replace(HOST, no_router, 1) + f'pre_spawn = "{breaker}"\n')
    result = repo.devup("up", "f1", "--json")
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    # The worktree, the branch and the service are undone whatever the disk says.
    assert_nothing_left(repo, "f1")
    assert result.returncode == 3, result.stderr
    assert doc["status"] == "rollback_incomplete" and doc["leftovers"]
    # The disk mended, `recover` finishes.
    if breakage == "full":
        (small_state / "filler").unlink()
    else:
        subprocess.run(["mount", "-o", "remount,rw", str(small_state)], check=True)
    recover = repo.devup("recover", "f1", "--json")
    if recover.returncode == 3:
        # The first rollback could not journal what it undid, so its worktree hooks' undos are
        # due again, and their folder (the worktree it removed) is gone: each is reported once,
        # never run in another folder (SPEC §5.14); the next `recover` finishes.
        [outcome] = json.loads(recover.stdout)
        leftovers = outcome["leftovers"]
        assert leftovers and all("undo of hook" in lo and "is gone" in lo for lo in leftovers), leftovers
        recover = repo.devup("recover", "f1")
    assert recover.returncode == 0, recover.stderr
    assert_nothing_left(repo, "f1")
    assert json.loads(repo.devup("ls", "--json").stdout) == []
    assert repo.devup("up", "f1", "--no-hooks").returncode == 0  # the hook would break it again
    assert repo.devup("down", "f1").returncode == 0


# --- hooks: a timeout bounds the whole hook, output is a bounded tail -----------------------


def test_a_hook_that_backgrounds_a_process_returns_with_the_hook(make):
    repo = make(HOST + '[hooks]\npost_up = "sleep 300 &"\n')
    # The default hook timeout is 600 s: returning at all within the bound below shows the
    # background child's open pipe no longer holds `up`.
    result = repo.devup("up", "h1", timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(world.tagged_processes(repo_id=repo.repo_id, session="h1")) == 1
    assert repo.devup("down", "h1", timeout=120).returncode == 0
    assert world.tagged_processes(repo_id=repo.repo_id, session="h1") == []


def test_a_hook_timeout_bounds_the_hook_even_when_a_child_escapes_its_group(make):
    repo = make(HOST + '[hooks]\npost_up = { run = "setsid sleep 300 & sleep 60", timeout = 2 }\n')
    result = repo.devup("up", "h2", "--json", timeout=120)
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "rolled_back" and "timed out" in doc["error"]["message"]
    assert_nothing_left(repo, "h2")


def test_hook_output_is_a_bounded_tail(make):
    repo = make(
        HOST
        + "[hooks]\npost_up = \"head -c 300000000 /dev/zero | tr '\\\\\\\\0' x; echo; echo last words; exit 3\"\n"
    )
    # A wrapper process of its own measures devup's peak memory (the largest of its children).
    peak_file = repo.tmp / "peak"
    wrapper = (
        "import resource, subprocess, sys; code = subprocess.run(sys.argv[2:]).returncode; "
        "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
        "sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, str(peak_file), sys.executable, "-m", "devup", "up", "h3", "--json"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=200,
    )
    peak_kib = int(peak_file.read_text())
    assert result.returncode == 1, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert "exited 3" in doc["error"]["message"] and "last words" in doc["error"]["message"]
    assert len(result.stdout) < 20_000 and len(result.stderr) < 20_000
    # 300 MB went through the pipe; devup kept a tail of it (it used 925 MB before).
    assert peak_kib < 250 * 1024
    assert_nothing_left(repo, "h3")


# --- found by reading the code: the runner, process stops -----------------------------------


def test_a_signal_while_a_child_starts_never_leaves_the_child_running(monkeypatch):
    """SIGINT lands right after the child exists but before `run` could register it: the
    child must still be stopped when devup unwinds (it was orphaned before)."""
    from devup import runner
    from devup.errors import Interrupted

    started: list[int] = []
    real_popen = subprocess.Popen

    class SignalledPopen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self.pid)
            os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode, i.e. right here

    monkeypatch.setattr(subprocess, "Popen", SignalledPopen)
    with pytest.raises(Interrupted), runner.interruptible():
        runner.run(["sleep", "60"], timeout=120)
    monkeypatch.undo()
    (pid,) = started
    try:
        for _ in range(100):  # terminate_all() sent SIGTERM: it ends at once (at most 10 s)
            if not world.pid_running(pid):
                break
            time.sleep(0.1)
        assert not world.pid_running(pid)
    finally:
        runner._stopping.clear()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_stopping_a_process_that_exits_after_the_liveness_check_is_success(monkeypatch):
    from devup import processes

    proc = subprocess.Popen(["true"])
    started = processes.start_time(proc.pid) or 0.0
    proc.wait()
    # The race: alive when checked, gone before its group is looked up.
    monkeypatch.setattr(processes, "is_alive", lambda pid, started: True)
    processes.stop(proc.pid, started, timeout=1)


def test_a_rolled_back_resume_gives_back_the_lease_it_moved_off(make):
    low = random.randrange(10000, 18000)
    repo = make(
        isolated("host", ports=f"[{low}, {low + 1}]")
        + f'[services.web]\nrun = "{HTTP_SERVICE}"\nport = true\nready = {{ http = "/" }}\n'
    )
    first = repo.up_json("r")["ports"]["WEB"]
    assert repo.devup("stop", "r").returncode == 0
    foreign = socket.socket()
    foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    foreign.bind(("127.0.0.1", first))
    foreign.listen()
    try:
        # The resume moves off the taken port, then fails: the rollback must give it back.
        failed = repo.devup("up", "r", env={"DEVUP_FAULT": "raise@before:commit"})
        assert failed.returncode == 1, failed.stderr
    finally:
        foreign.close()
    # Another session must not be handed the port r's record still names.
    other = repo.devup("up", "s", "--json")
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["ports"]["WEB"] != first
    assert repo.devup("down", "s").returncode == 0
    assert repo.up_json("r")["ports"]["WEB"] == first
    assert repo.devup("down", "r").returncode == 0


def test_a_programming_error_in_a_step_is_rolled_back_and_reported_as_a_bug(make):
    repo = make(ROLLBACK)
    result = repo.devup("up", "bug1", "--json", env={"DEVUP_FAULT": "bug@after:env_file"})
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "rolled_back" and doc["error"]["step"] == "env_file"
    crash_log = repo.tmp / "state" / "crash.log"
    assert "unexpected error" in doc["error"]["message"] and str(crash_log) in doc["error"]["message"]
    assert "TypeError: injected programming error" in crash_log.read_text()
    assert "Traceback" in crash_log.read_text()
    assert_nothing_left(repo, "bug1")


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_status_exits_0_or_1_when_the_engine_does_not_answer(make):
    repo = make(
        isolated("container") + '[groups.web]\nfiles = ["compose/web.yaml"]\n',
        {"compose/web.yaml": busybox_web("store", port=8080, volume=None)},
    )
    assert repo.devup("up", "st1").returncode == 0
    try:
        # An engine that does not answer (on a session bound to its engine, the recorded one
        # answers and status is 0; either way never 2).
        result = repo.devup(
            "status", "st1", "--json", env={"DOCKER_HOST": f"unix://{repo.tmp}/no-engine.sock"}
        )
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr
        if result.returncode == 1:
            units = json.loads(result.stdout)["units"]
            assert units and all(not u["healthy"] and u["state"].startswith("unknown") for u in units)
    finally:
        assert repo.devup("down", "st1").returncode == 0


def test_a_submodule_checkout_is_its_own_repository(make, tmp_path):
    sub = make(HOST)
    superproject = tmp_path / "super"
    superproject.mkdir()
    world.git(superproject, "init", "-q", "-b", "main")
    world.git(
        superproject, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub.path), "lib"
    )
    world.git(superproject, "commit", "-qm", "add lib")
    checkout = superproject / "lib"
    result = sub.devup("up", "m1", cwd=checkout)
    assert result.returncode == 0, result.stderr
    wt = tmp_path / "super" / "lib-worktrees" / "m1"
    assert wt in world.worktree_paths(checkout)
    assert json.loads(sub.devup("ls", "--json", cwd=checkout).stdout)[0]["worktree"] == str(wt)
    assert json.loads(sub.devup("ls", "--json", cwd=wt).stdout)[0]["session"] == "m1"
    assert world.worktree_paths(superproject) == [superproject]
    assert sub.devup("down", "m1", cwd=checkout).returncode == 0
    assert not wt.exists()


# --- the rest of the audit's low findings ---------------------------------------------------


def test_down_stops_what_the_post_down_hook_left_running(make):
    repo = make(HOST + '[hooks]\npost_down = "sleep 300 &"\n')
    assert repo.devup("up", "pd1").returncode == 0
    result = repo.devup("down", "pd1", timeout=120)
    assert result.returncode == 0, result.stderr
    assert world.tagged_processes(repo_id=repo.repo_id, session="pd1") == []


def test_down_from_a_shell_with_the_sessions_tags_does_not_kill_itself(make):
    repo = make(ROLLBACK)
    assert repo.devup("up", "t1").returncode == 0
    service = world.tagged_processes(repo_id=repo.repo_id, session="t1")
    assert service
    # The shell a hook or a service gives a user carries the session's tags.
    tags = {"DEVUP_SESSION": "t1", "DEVUP_REPO_ID": repo.repo_id, "DEVUP_UNIT": "service:web"}
    result = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -m devup down t1; echo "down exited $?"'],
        cwd=repo.path,
        capture_output=True,
        text=True,
        env={**os.environ, **tags},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "down exited 0" in result.stdout, result.stderr
    assert not any(world.pid_running(p.pid) for p in service)
    assert world.worktree_paths(repo.path) == [repo.path]


def test_a_worktree_deleted_by_hand_is_degraded_and_up_recreates_it(make):
    repo = make(HOST + '[worktree]\ncopy = [".env"]\n', {".gitignore": ".env\n"})
    (repo.path / ".env").write_text("SECRET=1\n")
    assert repo.devup("up", "wd1").returncode == 0
    wt = repo.worktree("wd1")
    shutil.rmtree(wt)
    assert repo.devup("status", "wd1").returncode == 1
    ls = json.loads(repo.devup("ls", "--json").stdout)
    assert [s["status"] for s in ls] == ["degraded"]
    result = repo.devup("up", "wd1", "--json")
    assert result.returncode == 0, result.stderr
    assert wt.is_dir() and (wt / ".env").read_text() == "SECRET=1\n" and (wt / ".env.devup").is_file()
    assert world.git(wt, "rev-parse", "--abbrev-ref", "HEAD").strip() == "wd1"
    assert repo.devup("status", "wd1").returncode == 0
    assert repo.devup("down", "wd1").returncode == 0
    assert not wt.exists() and world.branches(repo.path) == ["main", "wd1"]


def test_the_env_file_is_never_staged(make):
    repo = make(HOST, {".gitignore": "*.log\n"})
    assert repo.devup("up", "g1").returncode == 0
    wt = repo.worktree("g1")
    world.git(wt, "add", "-A")
    assert ".env.devup" not in world.git(wt, "status", "--porcelain", "--untracked-files=all", "--ignored=no")
    assert ".env.devup" not in world.git(wt, "diff", "--cached", "--name-only")
    assert repo.devup("down", "g1", "--force").returncode == 0


@pytest.mark.parametrize("rule", ["!.env.devup", "!.env*", "!/.env.devup"])
def test_a_branch_gitignore_that_unignores_the_env_file_is_refused(make, rule):
    repo = make(HOST, {".gitignore": f"*.devup\n{rule}\n"})
    result = repo.devup("up", "g2")
    assert result.returncode == 2, result.stderr
    assert rule in result.stderr and ".env.devup" in result.stderr
    assert world.worktree_paths(repo.path) == [repo.path] and world.branches(repo.path) == ["main"]
