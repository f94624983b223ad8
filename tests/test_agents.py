"""devup as the setup and teardown of agent tools (SPEC §8): `up --here`/`--worktree`,
`down --here`, `path`, `exec`, Claude Code's WorktreeCreate/WorktreeRemove hooks, `integrate`.

Worktrees are made the way the tools make them (plain `git worktree add`, at
`.claude/worktrees/<name>` inside the main checkout as Claude Code places them); the world is
checked through git, the engine and /proc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devup import attach, claude_code, errors, paths
from tests import world
from tests.conftest import HTTP_SERVICE, Repo, busybox_web, isolated
from tests.test_faults import session_processes

docker = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

HYBRID = f"""
{isolated("hybrid")}
[groups.infra]
files = ["compose/infra.yaml"]
wait_timeout = 60

[services.web]
run = "{HTTP_SERVICE}"
port = true
depends_on = ["infra"]
ready = {{ http = "/" }}
ready_timeout = 30
"""

HOST = f"""
{isolated("host")}
[services.web]
run = "{HTTP_SERVICE}"
port = true
ready = {{ tcp = true }}
ready_timeout = 30
"""


def get(port: int) -> str:
    deadline = time.monotonic() + 15  # a container without a healthcheck is up once it runs
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def agent_worktree(repo: Repo, name: str = "agent-1", branch: str | None = None) -> Path:
    """A worktree as Claude Code makes one: `.claude/worktrees/<name>` on `worktree-<name>`."""
    path = repo.path / ".claude" / "worktrees" / name
    world.git(repo.path, "worktree", "add", "-q", "-b", branch or f"worktree-{name}", str(path))
    return path


def hook(
    repo: Repo, event: str, payload: dict | str, *, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devup", "hook", "claude-code", event],
        cwd=repo.path,
        input=payload if isinstance(payload, str) else json.dumps(payload),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=240,
    )


def sessions(repo: Repo) -> list[str]:
    return [s["session"] for s in json.loads(repo.devup("ls", "--json").stdout)]


def nothing_labelled(repo: Repo, name: str | None = None) -> None:
    for kind in ("container", "network", "volume"):
        assert world.labelled(kind, repo_id=repo.repo_id, session=name) == [], kind


def branch_of(path: Path) -> str:
    return world.git(path, "branch", "--show-current").strip()


# --- up --here / down --here -------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_up_here_in_a_claude_worktree_then_down_here_keeps_worktree_and_branch(make):
    repo = make(HYBRID, {"compose/infra.yaml": busybox_web("store", port=8080)})
    wt = agent_worktree(repo)
    (wt / "agent-notes.txt").write_text("work in progress\n")  # the agent's uncommitted work

    result = repo.devup("up", "--here", "--json", cwd=wt)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    # NAME defaults to the branch, slugified, and devup says what it chose.
    assert doc["session"] == "worktree-agent-1" and doc["branch"] == "worktree-agent-1"
    assert "worktree-agent-1" in result.stderr
    assert Path(doc["worktree"]) == wt
    assert world.running_containers(repo_id=repo.repo_id, session="worktree-agent-1")
    assert get(doc["ports"]["STORE"]).strip() == "worktree-agent-1"
    get(doc["ports"]["WEB"])
    env_file = (wt / ".env.devup").read_text()
    assert f"DEVUP_PORT_WEB={doc['ports']['WEB']}" in env_file and f"DEVUP_WORKTREE={wt}" in env_file
    # From the main checkout the session is found like any other.
    assert repo.devup("path", "worktree-agent-1").stdout == f"{wt}\n"

    result = repo.devup("down", "--here", cwd=wt)
    assert result.returncode == 0, result.stderr
    assert "kept" in result.stdout + result.stderr
    nothing_labelled(repo, "worktree-agent-1")
    assert world.tagged_processes(repo_id=repo.repo_id, session="worktree-agent-1") == []
    assert wt in world.worktree_paths(repo.path) and branch_of(wt) == "worktree-agent-1"
    assert (wt / "agent-notes.txt").read_text() == "work in progress\n"
    assert not (wt / ".env.devup").exists()
    assert sessions(repo) == []
    # gc neither: the worktree belongs to the tool that made it.
    assert repo.devup("gc").returncode == 0
    assert wt in world.worktree_paths(repo.path) and (wt / "agent-notes.txt").exists()
    # Teardown run twice by a tool is not an error.
    again = repo.devup("down", "--here", "--keep-worktree", cwd=wt)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_worktree_option_attaches_from_anywhere_with_a_given_name(make):
    repo = make(HOST)
    wt = agent_worktree(repo, "cx", branch="feature/Login_Form")
    outside = repo.tmp / "elsewhere"  # not inside any repository: the worktree's own is used
    outside.mkdir()
    result = repo.devup("up", "--worktree", str(wt), "--json", cwd=outside)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["session"] == "feature-login-form"
    assert repo.devup("down", "feature-login-form").returncode == 0
    result = repo.devup("up", "mine", "--worktree", str(wt), "--json", cwd=repo.path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["session"] == "mine" and Path(doc["worktree"]) == wt
    # A second NAME for the same worktree, or the same NAME for another worktree: exit 2.
    assert repo.devup("up", "other", "--worktree", str(wt)).returncode == 2
    other = agent_worktree(repo, "cy")
    assert repo.devup("up", "mine", "--worktree", str(other)).returncode == 2
    again = repo.devup("up", "--here", "mine", "--json", cwd=wt)  # a healthy session: a no-op
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["ports"] == doc["ports"]
    result = repo.devup("down", "mine")  # `down NAME` keeps an attached worktree too
    assert result.returncode == 0 and "kept" in result.stdout
    assert wt in world.worktree_paths(repo.path) and branch_of(wt) == "feature/Login_Form"
    assert world.tagged_processes(repo_id=repo.repo_id) == []


def test_gc_keeps_an_attached_worktree_in_the_worktrees_folder(make):
    """Worktrunk can be set to put its worktrees where devup puts its own: the folder name is
    then not the session's, and gc must still leave the attached worktree alone."""
    repo = make(HOST)
    wt = repo.path.parent / f"{repo.path.name}-worktrees" / "wt-made"
    world.git(repo.path, "worktree", "add", "-q", "-b", "feat", str(wt))
    (wt / "work.txt").write_text("x\n")
    world.git(wt, "add", "work.txt")
    world.git(wt, "commit", "-qm", "work")  # clean: only devup's own judgement can keep it
    assert repo.devup("up", "--here", "other-name", cwd=wt).returncode == 0
    result = repo.devup("gc")
    assert result.returncode == 0, result.stderr
    assert wt in world.worktree_paths(repo.path) and (wt / "work.txt").exists()
    assert world.tagged_processes(repo_id=repo.repo_id, session="other-name")
    assert repo.devup("down", "other-name").returncode == 0
    assert wt in world.worktree_paths(repo.path)


def test_down_after_the_tool_removed_the_attached_worktree(make):
    """Cursor has no teardown hook and deletes old worktrees itself: `down NAME` still works."""
    repo = make(HOST)
    wt = agent_worktree(repo)
    assert repo.devup("up", "--here", "a1", cwd=wt).returncode == 0
    assert world.tagged_processes(repo_id=repo.repo_id, session="a1")
    world.git(repo.path, "worktree", "remove", "--force", str(wt))
    result = repo.devup("down", "a1")
    assert result.returncode == 0, result.stderr
    assert session_processes(repo, "a1") == [] and sessions(repo) == []
    assert "worktree-agent-1" in world.branches(repo.path)


def test_attach_refuses_what_is_not_a_worktree_of_this_repository(make, tmp_path):
    repo = make(HOST)
    plain = tmp_path / "plain"
    plain.mkdir()
    (repo.path / "src").mkdir()
    other = tmp_path / "other"
    other.mkdir()
    world.git(other, "init", "-q", "-b", "main")
    world.git(other, "commit", "-q", "--allow-empty", "-m", "i")
    foreign = tmp_path / "other-wt"
    world.git(other, "worktree", "add", "-q", "-b", "x", str(foreign))
    detached = tmp_path / "detached"
    world.git(repo.path, "worktree", "add", "-q", "--detach", str(detached))
    mine = agent_worktree(repo, "b1")
    cases = {
        "the main checkout (--here)": (["up", "--here"], repo.path),
        "the main checkout (--worktree)": (["up", "--worktree", str(repo.path)], repo.path),
        "a plain directory": (["up", "--worktree", str(plain)], repo.path),
        "a folder of the main checkout": (["up", "--worktree", str(repo.path / "src")], repo.path),
        "another repository's worktree": (["up", "--worktree", str(foreign)], repo.path),
        "a missing path": (["up", "--worktree", str(tmp_path / "nope")], repo.path),
        "a detached worktree": (["up", "--here"], detached),
        "--here and --worktree": (["up", "--here", "--worktree", str(detached)], repo.path),
        "--branch that is not the worktree's": (["up", "--here", "--branch", "zz"], mine),
        "--base with an attached worktree": (["up", "--here", "--base", "main"], mine),
        "a NAME that is not a NAME": (["up", "Bad_Name", "--here"], mine),
        "down --here in the main checkout": (["down", "--here"], repo.path),
        "down --here in a folder of the main checkout": (["down", "--here"], repo.path / "src"),
        "down NAME --here in the main checkout": (["down", "x", "--here"], repo.path),
    }
    for what, (args, cwd) in cases.items():
        result = repo.devup(*args, cwd=cwd)
        assert result.returncode == 2, (what, result.stdout, result.stderr)
        assert "error:" in result.stderr, what
    assert sessions(repo) == []
    for folder in (plain, foreign, detached, mine, repo.path):
        assert not (folder / ".env.devup").exists()
    assert world.tagged_processes(repo_id=repo.repo_id) == []


@pytest.mark.parametrize(
    "fault,then",
    [
        ("kill@after:env_file", "recover"),
        ("kill@after:service:web", "recover"),
        ("kill@before:commit", "gc"),
        ("raise@after:service:web", None),
    ],
)
def test_a_failed_or_killed_up_here_leaves_the_attached_worktree_intact(make, fault, then):
    repo = make(HOST)
    wt = agent_worktree(repo)
    (wt / "uncommitted.txt").write_text("agent work\n")
    world.git(wt, "add", "uncommitted.txt")  # staged, not committed
    (wt / "untracked.txt").write_text("more\n")
    head = world.git(wt, "rev-parse", "HEAD")

    result = repo.devup("up", "--here", cwd=wt, env={"DEVUP_FAULT": fault})
    assert result.returncode == (-9 if fault.startswith("kill") else 1), result.stderr
    if then:
        assert repo.devup(then).returncode == 0
    assert wt in world.worktree_paths(repo.path) and branch_of(wt) == "worktree-agent-1"
    assert (wt / "uncommitted.txt").read_text() == "agent work\n"
    assert (wt / "untracked.txt").read_text() == "more\n"
    assert world.git(wt, "rev-parse", "HEAD") == head
    assert "A  uncommitted.txt" in world.git(wt, "status", "--porcelain")
    assert not (wt / ".env.devup").exists()
    assert session_processes(repo, "worktree-agent-1") == []
    assert sessions(repo) == []


# --- path / exec -----------------------------------------------------------------------------------


def test_path_and_exec(make):
    repo = make(HOST)
    doc = repo.up_json("x")
    wt = Path(doc["worktree"])
    result = repo.devup("path", "x")
    assert result.returncode == 0 and result.stdout == f"{wt}\n" and result.stderr == ""
    code = "import os, sys; print(os.getcwd()); print(os.environ['DEVUP_PORT_WEB']); sys.exit(7)"
    result = repo.devup("exec", "x", "--", sys.executable, "-c", code, env={"KEEP_ME": "1"})
    assert result.returncode == 7, result.stderr
    assert result.stdout.splitlines() == [str(wt), str(doc["ports"]["WEB"])]
    # Options after CMD are CMD's; the caller's environment is kept.
    result = repo.devup(
        "exec",
        "x",
        "--",
        "sh",
        "-c",
        'echo "$KEEP_ME $DEVUP_SESSION" "$@"',
        "-",
        "--json",
        env={"KEEP_ME": "1"},
    )
    assert result.stdout == "1 x --json\n", result.stderr
    assert repo.devup("exec", "x", "--", "no-such-command-here").returncode == 127
    for args in (["path", "nope"], ["exec", "nope", "--", "true"], ["path", "Bad_Name"]):
        result = repo.devup(*args)
        assert result.returncode == 2 and result.stdout == "", args
        assert args[1] in result.stderr, args
    assert repo.devup("down", "x").returncode == 0


def test_path_and_exec_start_without_the_heavy_libraries(make):
    """Agent tools call these in loops: neither the config model, the Docker SDK, rich,
    tenacity, GitPython nor typer is imported on the common path (`python -X importtime`)."""
    repo = make(HOST)
    repo.up_json("x")
    heavy = {"pydantic", "docker", "rich", "tenacity", "git", "typer", "click", "psutil", "yaml"}
    for args in (["path", "x"], ["exec", "x", "--", "true"]):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "devup", *args],
            cwd=repo.path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        modules = {
            line.split("|")[-1].strip().split(".")[0]
            for line in result.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert "devup" in modules and modules & heavy == set(), (args, modules & heavy)
    assert repo.devup("down", "x").returncode == 0


# --- the Claude Code hooks -------------------------------------------------------------------------


def commit_of(repo: Repo) -> str:
    return world.git(repo.path, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize(
    "variant",
    ["name", "worktree_name", "base_commit", "base_ref_and_unknown_fields"],
)
def test_create_hook_payload_variants(make, variant):
    repo = make(HOST)
    first = commit_of(repo)
    repo.write("later.txt", "later\n")
    repo.commit("later")
    payload: dict = {"session_id": "abc", "hook_event_name": "WorktreeCreate", "cwd": str(repo.path)}
    expected_branch = "agent-a1b2"
    if variant == "name":
        payload["name"] = "agent-a1b2"
    elif variant == "worktree_name":
        # Not a NAME as it is: slugified, with a short hash of the name (SPEC §8).
        payload["worktree_name"] = "Agent_A1B2"
        expected_branch = attach.agent_session_name("Agent_A1B2")
        assert expected_branch.startswith("agent-a1b2-")
    elif variant == "base_commit":
        payload.update(name="agent-a1b2", base_commit=first)
    else:
        payload.update(
            name="agent-a1b2",
            base_ref="main",
            transcript_path="/x.jsonl",
            isolation_type="worktree",
            extra={},
        )
    result = hook(repo, "worktree-create", payload)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and result.stdout.endswith("\n"), result.stdout
    path = Path(lines[0])
    assert path.is_absolute() and path.is_dir()
    assert path in world.worktree_paths(repo.path)
    assert branch_of(path) == expected_branch
    at = world.git(path, "rev-parse", "HEAD").strip()
    assert at == (first if variant == "base_commit" else commit_of(repo))
    assert (path / ".env.devup").is_file()
    assert world.tagged_processes(repo_id=repo.repo_id, session=expected_branch)

    result = hook(repo, "worktree-remove", {"worktree_path": str(path), "cwd": str(repo.path)})
    assert result.returncode == 0, result.stderr
    assert path not in world.worktree_paths(repo.path) and not path.exists()
    assert session_processes(repo, expected_branch) == []
    assert sessions(repo) == []


def test_create_hook_proceeds_while_the_writer_keeps_the_pipe_open(make, tmp_path):
    repo = make(HOST)
    err = (tmp_path / "stderr").open("w+")  # a file, not a pipe: nobody has to drain it
    proc = subprocess.Popen(
        [sys.executable, "-m", "devup", "hook", "claude-code", "worktree-create"],
        cwd=repo.path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    # Split inside the object and never closed: the hook must parse as it reads.
    proc.stdin.write(json.dumps({"cwd": str(repo.path)})[:-1] + ', "na')
    proc.stdin.flush()
    time.sleep(0.3)
    proc.stdin.write('me": "open-pipe"}\n')
    proc.stdin.flush()
    try:
        code = proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the create hook waited for an end of input that never came")
    out = proc.stdout.read()
    proc.stdin.close()
    err.close()
    assert code == 0, (tmp_path / "stderr").read_text()
    [line] = out.splitlines()
    assert branch_of(Path(line)) == "open-pipe"
    assert hook(repo, "worktree-remove", {"worktree_path": line}).returncode == 0


def test_payload_reader_reads_one_object_and_gives_up_clearly():
    read, write = os.pipe()
    try:
        text = '  {"name": "é-x", "nested": {"a": [1, 2]}} trailing'.encode()
        cut = text.index("é".encode()) + 1  # inside a multi-byte character
        threading.Timer(0.2, lambda: os.write(write, text[cut:])).start()
        os.write(write, text[:cut])
        assert claude_code.read_payload(read, timeout=10) == {"name": "é-x", "nested": {"a": [1, 2]}}
        with pytest.raises(errors.PayloadError, match=r"after 0\.3 s"):
            claude_code.read_payload(read, timeout=0.3)  # "trailing" and nothing more: no object
    finally:
        os.close(write)
        os.close(read)
    for bad, message in (("[1, 2]", "not a JSON object"), ('{"a": ', "ended inside"), ("", "ended before")):
        read, write = os.pipe()
        os.write(write, bad.encode())
        os.close(write)
        with pytest.raises(errors.PayloadError, match=message):
            claude_code.read_payload(read, timeout=5)
        os.close(read)


def test_slugify_gives_spec_names():
    assert attach.slugify("worktree-agent-1") == "worktree-agent-1"
    assert attach.slugify("Feature/Auth_Login") == "feature-auth-login"
    assert attach.slugify("--x--") == "x"
    assert attach.slugify("a" * 39 + "-b" + "c" * 10) == "a" * 39
    assert attach.slugify("ü/ß") == ""


def test_agent_session_names_keep_names_apart():
    assert attach.agent_session_name("agent-a152e1a99a158c3fc") == "agent-a152e1a99a158c3fc"
    alike = ["Agent One", "agent_one", "agent/one", "ü/ß", "日本", "x" * 41, "x" * 40 + "y"]
    named = [attach.agent_session_name(n) for n in alike]
    assert len(set(named)) == len(alike) and "agent-one" not in named
    assert all(paths.NAME_RE.fullmatch(n) for n in named), named
    assert named[0].startswith("agent-one-") and len(named[5]) == 40
    assert attach.agent_session_name("Agent One") == named[0]  # the same name, the same session
    spaced = [attach.agent_session_name(n) for n in ("  Agent One  ", "agent-one ", "agent-one")]
    assert len({*spaced, named[0]}) == 4  # spaces make another name: never the same session


def test_create_hook_failing_post_up_exits_non_zero_with_nothing_left(make):
    repo = make(HOST + '\n[hooks]\npost_up = "echo seeding; exit 3"\n')
    result = hook(repo, "worktree-create", {"name": "agent-f", "cwd": str(repo.path)})
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "post_up" in result.stderr and "seeding" in result.stderr
    assert repo.worktree("agent-f") not in world.worktree_paths(repo.path)
    assert not repo.worktree("agent-f").exists()
    assert "agent-f" not in world.branches(repo.path)
    assert session_processes(repo, "agent-f") == []
    assert sessions(repo) == []
    bad = hook(repo, "worktree-create", '{"cwd": "."}')
    assert bad.returncode == 2 and bad.stdout == "" and "name" in bad.stderr


def test_remove_hook_refuses_a_dirty_worktree_and_removes_a_clean_session(make):
    repo = make(HOST)
    result = hook(repo, "worktree-create", {"name": "agent-d", "cwd": str(repo.path)})
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    (path / "half-done.py").write_text("print('not committed')\n")
    payload = {"worktree_path": str(path), "cwd": str(repo.path), "hook_event_name": "WorktreeRemove"}
    refused = hook(repo, "worktree-remove", payload)
    assert refused.returncode != 0
    assert "uncommitted" in refused.stderr and "half-done.py" in refused.stderr
    assert (path / "half-done.py").exists() and path in world.worktree_paths(repo.path)
    assert world.tagged_processes(repo_id=repo.repo_id, session="agent-d")  # still running
    (path / "half-done.py").unlink()
    result = hook(repo, "worktree-remove", payload)
    assert result.returncode == 0, result.stderr
    assert not path.exists() and session_processes(repo, "agent-d") == []
    again = hook(repo, "worktree-remove", payload)  # gone already: nothing to do
    assert again.returncode == 0 and "nothing to do" in again.stderr


# --- integrate claude-code -------------------------------------------------------------------------

USER_SETTINGS = {
    "model": "opus",
    "permissions": {"allow": ["Bash(npm test)"], "deny": []},
    "hooks": {
        "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./check.sh"}]}],
        "WorktreeRemove": [{"hooks": [{"type": "command", "command": "./archive.sh", "timeout": 30}]}],
    },
    "env": {"FOO": "1"},
}


def test_integrate_keeps_every_other_setting_is_idempotent_and_remove_restores(make):
    repo = make(HOST)
    settings = repo.path / ".claude" / "settings.json"
    settings.parent.mkdir()
    original = json.dumps(USER_SETTINGS, indent=4)
    settings.write_text(original)
    wt = agent_worktree(repo)

    result = repo.devup("integrate", "claude-code", cwd=wt)  # from a worktree: the main checkout's file
    assert result.returncode == 0, result.stderr
    merged = json.loads(settings.read_text())
    assert {k: v for k, v in merged.items() if k != "hooks"} == {
        k: v for k, v in USER_SETTINGS.items() if k != "hooks"
    }
    assert merged["hooks"]["PreToolUse"] == USER_SETTINGS["hooks"]["PreToolUse"]
    assert merged["hooks"]["WorktreeRemove"][0] == USER_SETTINGS["hooks"]["WorktreeRemove"][0]
    commands = {
        event: [h["command"] for g in merged["hooks"][event] for h in g["hooks"]]
        for event in ("WorktreeCreate", "WorktreeRemove")
    }
    assert commands == {
        "WorktreeCreate": ["devup hook claude-code worktree-create"],
        "WorktreeRemove": ["./archive.sh", "devup hook claude-code worktree-remove"],
    }
    once = settings.read_bytes()
    assert repo.devup("integrate", "claude-code").returncode == 0
    assert settings.read_bytes() == once

    result = repo.devup("integrate", "claude-code", "--remove")
    assert result.returncode == 0, result.stderr
    assert json.loads(settings.read_text()) == USER_SETTINGS
    assert repo.devup("integrate", "claude-code", "--remove").returncode == 0
    assert json.loads(settings.read_text()) == USER_SETTINGS
    assert not any(p.name.startswith(".settings.json.") for p in settings.parent.iterdir())

    # No file yet: created; --remove takes it away again.
    settings.unlink()
    assert repo.devup("integrate", "claude-code").returncode == 0
    assert set(json.loads(settings.read_text())["hooks"]) == {"WorktreeCreate", "WorktreeRemove"}
    assert repo.devup("integrate", "claude-code", "--remove").returncode == 0
    assert not settings.exists()

    # A broken file is exit 2 and left as it was.
    settings.parent.mkdir(exist_ok=True)
    settings.write_text('{"model": "opus",')
    result = repo.devup("integrate", "claude-code")
    assert result.returncode == 2 and "settings.json" in result.stderr
    assert settings.read_text() == '{"model": "opus",'


# --- eight agents at once ----------------------------------------------------------------------------


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_eight_create_hooks_in_parallel_then_eight_remove_hooks(make):
    toml = f"""
{isolated("container")}
[groups.store]
files = ["compose/store.yaml"]
wait_timeout = 120
"""
    repo = make(toml, {"compose/store.yaml": busybox_web("kv", port=8080, health=False)})
    names = [f"agent-{i}" for i in range(8)]
    payload = {n: json.dumps({"name": n, "cwd": str(repo.path)}) for n in names}
    with ThreadPoolExecutor(8) as pool:
        created = dict(
            zip(names, pool.map(lambda n: hook(repo, "worktree-create", payload[n]), names), strict=True)
        )
    assert {n: r.returncode for n, r in created.items()} == dict.fromkeys(names, 0), [
        r.stderr for r in created.values() if r.returncode
    ]
    paths = {n: Path(r.stdout.strip()) for n, r in created.items()}
    assert all(len(r.stdout.splitlines()) == 1 for r in created.values())
    assert len(set(paths.values())) == 8
    assert {n: branch_of(p) for n, p in paths.items()} == {n: n for n in names}
    ports, projects = {}, {}
    for n in names:
        [container] = world.running_containers(repo_id=repo.repo_id, session=n)
        ports[n] = set(world.published_ports(container).values())
        info = json.loads(world.docker("inspect", container))[0]
        projects[n] = info["Config"]["Labels"]["com.docker.compose.project"]
        assert get(int(next(iter(ports[n])))).strip() == n
    assert len(set(projects.values())) == 8
    every = [p for s in ports.values() for p in s]
    assert len(every) == len(set(every)) == 8

    with ThreadPoolExecutor(8) as pool:
        removed = list(
            pool.map(lambda n: hook(repo, "worktree-remove", {"worktree_path": str(paths[n])}), names)
        )
    assert [r.returncode for r in removed] == [0] * 8, [r.stderr for r in removed if r.returncode]
    nothing_labelled(repo)
    assert world.worktree_paths(repo.path) == [repo.path]
    assert world.tagged_processes(repo_id=repo.repo_id) == []
    assert sessions(repo) == []


def test_names_that_differ_only_by_spaces_get_sessions_of_their_own(make):
    repo = make(HOST)
    paths_ = []
    for name in ("Agent One", "  Agent One  "):
        result = hook(repo, "worktree-create", {"name": name, "cwd": str(repo.path)})
        assert result.returncode == 0, result.stderr
        paths_.append(result.stdout.strip())
    assert paths_[0] != paths_[1]
    for path in paths_:
        assert hook(repo, "worktree-remove", {"worktree_path": path, "cwd": str(repo.path)}).returncode == 0
