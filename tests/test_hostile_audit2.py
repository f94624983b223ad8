"""The second hostile-input audit (findings/hostile-input.md, new-M* and new-L*): where devup acts,
what it keeps, and what a hostile or unlucky machine does to it. End to end: real git, real
processes, the real engine; the world is checked from outside (files, git, /proc)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from devup.paths import NAME_RE
from tests import world
from tests.conftest import BUSYBOX, HTTP_SERVICE, Repo, isolated

HOST = (
    isolated("host")
    + f"""
[services.web]
run = "{HTTP_SERVICE}"
port = true
ready = {{ tcp = true }}
ready_timeout = 30
"""
)


def state_dir(repo: Repo) -> Path:
    return repo.tmp / "state" / "repos" / repo.repo_id


def gc_worktrees(repo: Repo) -> list[str]:
    """Run `gc`; the worktrees it listed as orphans."""
    result = repo.devup("gc", "--json")
    assert result.returncode == 0, result.stderr
    return [o["name"] for o in json.loads(result.stdout)["orphans"] if o["kind"] == "worktree"]


# --- new-M1: gc never removes a worktree devup kept or attached ------------------------------


def test_gc_never_removes_a_worktree_that_down_kept(make):
    repo = make(HOST)
    assert repo.devup("up", "kw").returncode == 0
    wt = repo.worktree("kw")
    (wt / "notes.txt").write_text("mine\n")
    world.git(wt, "add", "notes.txt")
    world.git(wt, "commit", "-qm", "notes")  # a clean worktree: gc's dirty check does not save it

    result = repo.devup("down", "kw", "--keep-worktree")
    assert result.returncode == 0, result.stderr
    assert gc_worktrees(repo) == []
    assert wt in world.worktree_paths(repo.path) and (wt / "notes.txt").read_text() == "mine\n"


def test_gc_never_removes_an_attached_worktree_up_or_down(make):
    repo = make(HOST)
    assert repo.devup("up", "orphan").returncode == 0
    # The record is lost (a restored disk, a hand `rm`): the worktree still carries devup's mark
    # for `orphan`, and attaching it makes it the user's.
    (state_dir(repo) / "sessions" / "orphan.json").unlink()
    wt = repo.worktree("orphan")
    attached = repo.devup("up", "kw2", "--worktree", str(wt))
    assert attached.returncode == 0, attached.stderr

    assert gc_worktrees(repo) == []
    assert wt in world.worktree_paths(repo.path)
    assert world.tagged_processes(repo_id=repo.repo_id, session="kw2")  # kw2 still runs

    down = repo.devup("down", "kw2")
    assert down.returncode == 0, down.stderr
    assert "kept" in down.stdout + down.stderr
    assert gc_worktrees(repo) == []
    assert wt in world.worktree_paths(repo.path) and wt.is_dir()


# --- new-M2: a hook's undo never runs outside its own folder ----------------------------------


def test_a_hook_undo_whose_folder_is_gone_is_a_leftover_and_never_runs_elsewhere(make, tmp_path):
    ran_in = tmp_path / "undo-ran-in"
    repo = make(HOST + f'[hooks]\npost_up = {{ run = "true", undo = "pwd > {ran_in}" }}\n')
    killed = repo.devup("up", "h1", env={"DEVUP_FAULT": "kill@after:post_up"})
    assert killed.returncode == -9, killed.stderr
    wt = repo.worktree("h1")
    shutil.rmtree(wt)  # an agent tool, or a person, removed the worktree meanwhile

    recovered = repo.devup("recover", "h1")
    assert recovered.returncode == 3, recovered.stdout + recovered.stderr
    said = recovered.stdout + recovered.stderr
    assert "undo of hook post_up" in said and f"{wt} is gone" in said and f"pwd > {ran_in}" in said
    assert not ran_in.exists()  # not in /, not in the main checkout, nowhere
    # The rest was undone; what can never run is reported once, so recover finishes.
    assert world.tagged_processes(repo_id=repo.repo_id, session="h1") == []
    again = repo.devup("recover", "h1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert not ran_in.exists()
    assert wt not in world.worktree_paths(repo.path)
    assert "h1" not in world.branches(repo.path)
    assert json.loads(repo.devup("ls", "--json").stdout) == []


# --- new-M3: pre_down runs in the worktree or not at all --------------------------------------


def test_pre_down_is_skipped_with_a_note_when_the_worktree_is_gone(make, tmp_path):
    ran_in = tmp_path / "pre-down-ran-in"
    repo = make(HOST + f'[hooks]\npre_down = "pwd > {ran_in}"\n')
    assert repo.devup("up", "here").returncode == 0
    assert repo.devup("down", "here").returncode == 0
    assert ran_in.read_text().strip() == str(repo.worktree("here"))  # its own folder
    ran_in.unlink()

    assert repo.devup("up", "pd").returncode == 0
    shutil.rmtree(repo.worktree("pd"))
    down = repo.devup("down", "pd")
    assert down.returncode == 0, down.stderr
    assert not ran_in.exists()  # never in the main checkout
    assert "pre_down skipped" in down.stdout + down.stderr
    assert world.tagged_processes(repo_id=repo.repo_id, session="pd") == []
    assert json.loads(repo.devup("ls", "--json").stdout) == []


# --- new-M4: a repository's git hook that backgrounds a process never holds `up` ---------------


@pytest.mark.parametrize("child", ["sleep 20", "setsid sleep 20"])
def test_a_git_hook_that_leaves_a_background_child_does_not_hold_up(make, tmp_path, child):
    pids = tmp_path / "hook-children"
    repo = make(HOST)
    hook = repo.path / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\n{child} &\necho $! >> {pids}\n")
    hook.chmod(0o755)
    try:
        started = time.monotonic()
        result = repo.devup("up", "g1")
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert pids.exists()  # the hook ran, and its child was still there when git returned
        assert elapsed < 10, f"up took {elapsed:.1f} s: it waited for the hook's child"
        assert repo.devup("down", "g1").returncode == 0
    finally:
        for pid in pids.read_text().split() if pids.exists() else []:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


# --- new-M5: agent worktree names never share a session ---------------------------------------


def create_hook(repo: Repo, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devup", "hook", "claude-code", "worktree-create"],
        cwd=repo.path,
        input=json.dumps({"hook_event_name": "WorktreeCreate", "cwd": str(repo.path), "name": name}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_agent_worktree_names_that_slug_alike_never_share_a_session(make):
    repo = make(isolated("host"))
    long = "implement-the-new-login-page-with-oauth-part-"
    names = ["Agent One", "agent_one", "agent/one", "agent-one", long + "1", long + "2"]
    made = {}
    for name in names:
        result = create_hook(repo, name)
        assert result.returncode == 0, (name, result.stderr)
        made[name] = Path(result.stdout.strip())
    assert len(set(made.values())) == len(names), made  # six worktrees, one per name
    listed = json.loads(repo.devup("ls", "--json").stdout)
    assert len({s["session"] for s in listed}) == len(names)
    for session in listed:
        assert NAME_RE.fullmatch(session["session"]), session["session"]
    assert made["agent-one"] == repo.worktree("agent-one")  # a valid NAME is used as it is
    worktrees = world.worktree_paths(repo.path)
    assert all(path in worktrees for path in made.values())
    # The same name again is the same session.
    again = create_hook(repo, "Agent One")
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.strip()) == made["Agent One"]
    assert len(json.loads(repo.devup("ls", "--json").stdout)) == len(names)


# --- new-M6: a volume that binds a host folder is not session data ----------------------------


def host_volume_compose(folder: Path) -> str:
    return f"""
services:
  store:
    image: {BUSYBOX}
    init: true
    command: ["sh", "-c", "echo mine > /data/own && exec sleep 600"]
    volumes: [data:/data, shared:/host]
volumes:
  data: {{}}
  shared:
    driver_opts: {{type: none, o: bind, device: {folder}}}
"""


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_a_volume_that_binds_a_host_folder_is_left_out_of_snapshots_clones_and_restores(make, tmp_path):
    folder = tmp_path / "shared-host-folder"
    folder.mkdir()
    (folder / "precious").write_text("every session's\n")
    repo = make(
        isolated("container") + '[groups.db]\nfiles = ["compose/db.yaml"]\n',
        {"compose/db.yaml": host_volume_compose(folder)},
    )
    try:
        repo.up_json("s1")
        created = repo.devup("snapshot", "create", "s1", "--as", "snap1", "--json")
        assert created.returncode == 0, created.stderr
        [snap] = [
            s for s in json.loads(repo.devup("snapshot", "ls", "--json").stdout) if s["snapshot"] == "snap1"
        ]
        assert [v["key"] for v in snap["volumes"]] == ["data"]  # never the host folder

        (folder / "later").write_text("written after the snapshot\n")
        restored = repo.devup("snapshot", "restore", "s1", "snap1", "--json")
        assert restored.returncode == 0, restored.stderr
        assert sorted(p.name for p in folder.iterdir()) == [
            "later",
            "precious",
        ]  # not emptied, not rolled back

        repo.up_json("s2", "--from", "s1")
        (folder / "after-clone").write_text("seen by every session\n")
        [container] = world.running_containers(repo_id=repo.repo_id, session="s2")
        seen = subprocess.run(
            ["docker", "exec", container, "cat", "/host/after-clone"], capture_output=True, text=True
        )
        assert seen.returncode == 0 and seen.stdout == "seen by every session\n", (
            seen.stderr
        )  # the folder itself
        assert (folder / "precious").read_text() == "every session's\n"
    finally:
        for name in ("s1", "s2"):
            repo.devup("down", name, "--force")
        for snap in json.loads(repo.devup("snapshot", "ls", "--json").stdout or "[]"):
            repo.devup("snapshot", "rm", snap["snapshot"])


# --- new-L1: a FIFO in the state folder hangs nothing --------------------------------------


@pytest.mark.parametrize("where", ["sessions/zz.json", "journals/zz.jsonl", "locks/zz.lock"])
def test_a_fifo_in_the_state_folder_affects_only_its_session(make, where):
    repo = make(HOST)
    assert repo.devup("up", "good").returncode == 0
    fifo = state_dir(repo) / where
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo, 0o600)
    for args in (("ls", "--json"), ("gc", "--dry-run"), ("gc",), ("status", "good"), ("recover", "good")):
        try:
            result = repo.devup(*args, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`devup {' '.join(args)}` hung on the FIFO {where}")
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
    listed = json.loads(repo.devup("ls", "--json", timeout=30).stdout)
    assert "good" in [s["session"] for s in listed]
    assert world.tagged_processes(repo_id=repo.repo_id, session="good")
    assert repo.worktree("good") in world.worktree_paths(repo.path)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)  # left for the user to look at, not removed
    assert repo.devup("down", "good", timeout=30).returncode == 0


# --- new-L2: a closed stderr (or stdout) is no reason to fail -------------------------------


def devup_closed(repo: Repo, shell_redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    """devup with one of its standard descriptors closed by the shell (`2>&-`, `>&-`)."""
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {shell_redirect}', "sh", sys.executable, "-m", "devup", *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_devup_does_its_job_with_stderr_or_stdout_closed(make):
    repo = make(HOST)
    up = devup_closed(repo, "2>&-", "up", "closed", "--json")
    assert up.returncode == 0, up.stdout
    assert json.loads(up.stdout)["status"] == "up"
    assert repo.worktree("closed") in world.worktree_paths(repo.path)
    assert world.tagged_processes(repo_id=repo.repo_id, session="closed")

    listed = devup_closed(repo, "2>&-", "ls")
    assert listed.returncode == 0 and "closed" in listed.stdout
    assert devup_closed(repo, "2>&-", "status", "nosuch").returncode == 2
    assert devup_closed(repo, ">&-", "ls").returncode == 0
    assert devup_closed(repo, ">&-", "path", "closed").returncode == 0
    assert devup_closed(repo, "<&- 2>&-", "env", "closed").returncode == 0

    down = devup_closed(repo, "2>&-", "down", "closed")
    assert down.returncode == 0, down.stdout
    assert repo.worktree("closed") not in world.worktree_paths(repo.path)
    assert world.tagged_processes(repo_id=repo.repo_id, session="closed") == []


# --- new-L6: an attached worktree's own .env.devup is never overwritten or deleted ------------


def test_an_attached_worktrees_own_env_file_is_refused_and_never_deleted(make):
    repo = make(HOST)
    wt = repo.path.parent / "agent-wt"
    world.git(repo.path, "worktree", "add", "-q", "-b", "agent-wt", str(wt))
    own = wt / ".env.devup"
    own.write_text("MY_SECRET=keepme\n")

    refused = repo.devup("up", "--here", cwd=wt)
    assert refused.returncode == 2, refused.stderr
    assert ".env.devup" in refused.stderr and "did not write it" in refused.stderr
    assert own.read_text() == "MY_SECRET=keepme\n"
    assert json.loads(repo.devup("ls", "--json").stdout) == []
    assert world.tagged_processes(repo_id=repo.repo_id) == []

    own.unlink()
    assert repo.devup("up", "--here", cwd=wt).returncode == 0
    # devup's own file (a record lost since) is recognised and attached again.
    (state_dir(repo) / "sessions" / "agent-wt.json").unlink()
    again = repo.devup("up", "--here", cwd=wt)
    assert again.returncode == 0, again.stderr
    # The user puts their own file in its place: `down` leaves it.
    own.write_text("MY_SECRET=keepme\n")
    down = repo.devup("down", "--here", cwd=wt)
    assert down.returncode == 0, down.stderr
    assert own.read_text() == "MY_SECRET=keepme\n"
    repo.devup("gc")  # what the lost record's run left running
    assert world.tagged_processes(repo_id=repo.repo_id) == []


# --- new-L7: [env] never shadows devup's own variables ----------------------------------------


@pytest.mark.parametrize("key", ["DEVUP_SESSION", "DEVUP_PORT_WEB", "DEVUP_ANYTHING", "PORT"])
def test_an_env_key_that_shadows_devups_variables_is_a_config_error(make, key):
    repo = make(HOST + f'[env]\nOTHER = "1"\n{key} = "x"\n')
    result = repo.devup("up", "e1")
    assert result.returncode == 2, result.stderr
    assert f"env.{key}" in result.stderr and "devup.toml:" in result.stderr
    assert "Traceback" not in result.stderr and "unexpected error" not in result.stderr
    assert not repo.worktree("e1").exists() and "e1" not in world.branches(repo.path)


# --- claude-code-cli.md F4: a refused removal reaches the user's terminal ---------------------


def run_with_terminal(args: list[str], *, cwd: Path, stdin: str) -> tuple[int, str, str]:
    """Run `args` as Claude Code runs a hook: stdin, stdout and stderr are pipes, and the user's
    terminal (a pseudo-terminal here) is the controlling terminal. Returns the exit code, stderr
    and what reached the terminal."""
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # setsid(), then the pty becomes the controlling terminal
            preexec_fn=lambda: fcntl.ioctl(slave, termios.TIOCSCTTY, 0),
            pass_fds=(slave,),
        )
        _, err = proc.communicate(stdin, timeout=120)
        os.close(slave)
        slave = -1
        seen = b""
        while select.select([master], [], [], 0.5)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer is gone
                break
            if not chunk:
                break
            seen += chunk
        return proc.returncode, err, seen.decode(errors="replace")
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


def test_a_refused_worktree_remove_is_shown_on_the_users_terminal(make):
    repo = make(HOST)
    created = create_hook(repo, "agent-d")
    assert created.returncode == 0, created.stderr
    wt = Path(created.stdout.strip())
    (wt / "half-done.py").write_text("print('not committed')\n")
    payload = json.dumps({"hook_event_name": "WorktreeRemove", "worktree_path": str(wt), "cwd": str(wt)})
    code, err, terminal = run_with_terminal(
        [sys.executable, "-m", "devup", "hook", "claude-code", "worktree-remove"], cwd=wt, stdin=payload
    )
    assert code == 1, err
    assert "half-done.py" in err  # stderr and the exit code, as before
    assert "NOT removed" in terminal and "agent-d is still running" in terminal, terminal
    assert "half-done.py" in terminal and "--force" in terminal, terminal
    assert wt in world.worktree_paths(repo.path) and (wt / "half-done.py").exists()
    assert world.tagged_processes(repo_id=repo.repo_id, session="agent-d")
    assert repo.devup("down", "agent-d", "--force").returncode == 0


# --- L1, L5, L12 (partly fixed in the first audit): the rest ---------------------------------


def test_a_devup_toml_that_is_a_folder_or_a_dangling_symlink_is_named_as_such(make):
    repo = make(HOST)
    (repo.path / "devup.toml").unlink()
    (repo.path / "devup.toml").mkdir()
    result = repo.devup("up", "l1")
    assert result.returncode == 2
    assert "devup.toml is a folder, not a file" in result.stderr, result.stderr
    (repo.path / "devup.toml").rmdir()
    (repo.path / "devup.toml").symlink_to("elsewhere.toml")
    result = repo.devup("up", "l1")
    assert result.returncode == 2
    assert "is a symlink to elsewhere.toml, which does not exist" in result.stderr, result.stderr
    assert world.worktree_paths(repo.path) == [repo.path]


@pytest.mark.parametrize("folder", ["/etc", "/usr/local/bin"])
def test_worktrees_in_a_folder_of_the_operating_system_are_refused(make, folder):
    repo = make(HOST.replace("[project]\n", f'[project]\nworktrees = "{folder}"\n'))
    result = repo.devup("up", "cf")
    assert result.returncode == 2, result.stderr
    assert "a folder of the operating system" in result.stderr, result.stderr
    assert not Path(folder, "cf").exists()
    assert world.worktree_paths(repo.path) == [repo.path]


def test_worktrees_under_the_home_folder_are_expanded_not_a_literal_tilde(make):
    repo = make(HOST.replace("[project]\n", '[project]\nworktrees = "~/wts"\n'))
    home = Path(os.environ["HOME"])
    up = repo.devup("up", "tl")
    assert up.returncode == 0, up.stderr
    assert home / "wts" / "tl" in world.worktree_paths(repo.path)
    assert not (repo.path / "~").exists()
    assert repo.devup("down", "tl").returncode == 0
    assert not (home / "wts" / "tl").exists()


def test_a_full_ref_name_as_branch_is_refused_with_the_branch_name(make):
    repo = make(HOST)
    result = repo.devup("up", "rf", "--branch", "refs/heads/foo")
    assert result.returncode == 2
    assert "pass --branch foo" in result.stderr, result.stderr
    assert "refs/heads/refs/heads/foo" not in world.git(repo.path, "for-each-ref", "--format=%(refname)")
    assert world.worktree_paths(repo.path) == [repo.path]


def test_a_full_state_disk_is_said_as_such_and_leaves_no_ghost_session(make, tmp_path):
    repo = make(HOST)
    state = tmp_path / "small-state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(state)], check=True)
    try:
        env = {"DEVUP_HOME": str(state)}
        assert repo.devup("ls", env=env).returncode == 0  # the state folders exist
        with contextlib.suppress(OSError), open(state / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 65536)
        full = repo.devup("up", "f2", env=env)
        assert full.returncode == 1, full.stderr
        assert "No space left on device" in full.stderr, full.stderr
        assert "unexpected" not in full.stderr and "None" not in full.stderr, full.stderr
        assert world.worktree_paths(repo.path) == [repo.path]
        (state / "filler").unlink()
        listed = repo.devup("ls", env=env)
        assert listed.returncode == 0 and "f2" not in listed.stdout, listed.stdout
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


@pytest.mark.parametrize("host", ["tcp://127.0.0.1:99999", "ssh://127.0.0.1:abc", "ssh://[::1"])
def test_a_docker_host_that_is_no_address_is_a_clear_error_never_a_crash(make, host):
    """new-L12: the SDK's and urllib's ValueError escaped as "unexpected error"."""
    repo = make(
        isolated("container") + '[groups.app]\nfiles = ["app.yaml"]\n', {"app.yaml": "services: {}\n"}
    )
    up = repo.devup("up", "bad", env={"DOCKER_HOST": host})
    assert up.returncode == 2, up.stderr
    assert "is not an engine address" in up.stderr and "unexpected" not in up.stderr, up.stderr
    for args in (["gc", "--dry-run"], ["ls"]):
        result = repo.devup(*args, env={"DOCKER_HOST": host})
        assert result.returncode == 0 and "unexpected" not in result.stderr, result.stderr
        if args[0] == "gc":  # says why that engine was not checked: not that it does not answer
            assert "is not an engine address" in result.stderr, result.stderr
    assert world.worktree_paths(repo.path) == [repo.path]
