"""logs, gc, init, doctor and the JSON documents, end to end (issue: the tool people reach for)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests import world
from tests.conftest import BUSYBOX, busybox_web

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

LOGGY = f"""
[project]
name = "tools"
mode = "hybrid"

[groups.infra]
files = ["compose/infra.yaml"]

[services.talker]
run = "{sys.executable} -u -c 'import time\\nprint(\\"hello from talker\\")\\nwhile True: time.sleep(1)'"
ready = {{ log = "hello from talker" }}
"""


def test_logs_show_container_and_native_lines(make):
    repo = make(LOGGY, {"compose/infra.yaml": busybox_web("store", port=8080)})
    doc = repo.up_json("l")
    subprocess.run(
        ["wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{doc['ports']['STORE']}/"], check=False
    )
    container = world.labelled("container", repo_id=repo.repo_id, session="l")[0]
    world.docker("exec", container, "sh", "-c", "echo marker-from-container > /proc/1/fd/1")
    out = repo.devup("logs", "l").stdout
    assert "talker | hello from talker" in out
    assert "infra/store | marker-from-container" in out
    only = repo.devup("logs", "l", "talker", "-n", "5").stdout
    assert only.strip() == "talker | hello from talker"
    assert repo.devup("logs", "l", "nope").returncode == 1
    follower = subprocess.Popen(
        [sys.executable, "-m", "devup", "logs", "l", "-f"],
        cwd=repo.path,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=0,
        start_new_session=True,
        # as under a background job (`scripts/test &`): SIGINT inherited ignored must still stop it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        # Synchronise on what the follower prints, not on a sleep: first the old lines, then a
        # line written after it started, which only a follower that follows can show.
        seen = _read_until(follower, "hello from talker", timeout=30)
        world.docker("exec", container, "sh", "-c", "echo written-while-following > /proc/1/fd/1")
        seen += _read_until(follower, "infra/store | written-while-following", timeout=30)
        os.killpg(follower.pid, signal.SIGINT)
        out, _ = follower.communicate(timeout=15)
    finally:
        if follower.poll() is None:  # it did not stop: fail without leaving it behind
            os.killpg(follower.pid, signal.SIGKILL)
            follower.communicate()
    assert follower.returncode in (0, 130), seen + out
    assert repo.devup("down", "l").returncode == 0


def _read_until(proc: subprocess.Popen[str], needle: str, *, timeout: float) -> str:
    """What `proc` prints up to the first line holding `needle`; fails after `timeout`.

    Reads the descriptor itself: a buffered reader would hide lines it already holds from select.
    """
    import selectors

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    got = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            got += chunk
            if needle.encode() in got:
                return got.decode(errors="replace")
    raise AssertionError(f"{needle!r} not printed within {timeout} s; got:\n{got.decode(errors='replace')}")


def test_gc_removes_orphans_and_leaves_foreign_things(make):
    repo = make(LOGGY, {"compose/infra.yaml": busybox_web("store", port=8080)})
    repo.up_json("g")
    repo.up_json("keep")
    # Orphan "g": forget its record, as a lost state dir would.
    state = repo.tmp / "state" / "repos" / repo.repo_id
    (state / "sessions" / "g.json").unlink()
    labels = ["--label", "dev.devup.session=vol-only", "--label", f"dev.devup.repo={repo.repo_id}"]
    world.docker("volume", "create", *labels, "devup-gc-planted")
    foreign_c = world.docker("run", "-d", "--label", "dev.devup.session=g", BUSYBOX, "sleep", "300").strip()
    world.docker("volume", "create", "--label", "dev.devup.session=g", "devup-gc-foreign")
    foreign_dir = repo.worktree("foreign")
    foreign_dir.mkdir(parents=True)
    try:
        dry = json.loads(repo.devup("gc", "--dry-run", "--json").stdout)
        kinds = {(o["kind"], o["session"]) for o in dry["orphans"]}
        assert {
            ("container", "g"),
            ("network", "g"),
            ("volume", "g"),
            ("volume", "vol-only"),
            ("process", "g"),
            ("lease", "g"),
            ("worktree", "g"),
        } <= kinds
        assert world.labelled("container", repo_id=repo.repo_id, session="g")  # dry run touched nothing
        done = repo.devup("gc", "--json")
        assert done.returncode == 0, done.stderr
        assert all(o["removed"] for o in json.loads(done.stdout)["orphans"])
        for kind in ("container", "network", "volume"):
            assert world.labelled(kind, repo_id=repo.repo_id, session="g") == []
        assert world.tagged_processes(repo_id=repo.repo_id, session="g") == []
        assert not repo.worktree("g").exists()
        # Foreign things (no repo label, or not a worktree of ours) are untouched; the live session too.
        assert world.docker("inspect", "-f", "{{.State.Running}}", foreign_c).strip() == "true"
        assert "devup-gc-foreign" in world.docker("volume", "ls", "-q")
        assert foreign_dir.is_dir()
        assert repo.devup("status", "keep").returncode == 0
    finally:
        subprocess.run(["docker", "rm", "-f", foreign_c], capture_output=True)
        subprocess.run(
            ["docker", "volume", "rm", "-f", "devup-gc-foreign", "devup-gc-planted"], capture_output=True
        )
    assert repo.devup("down", "keep").returncode == 0


def test_init_writes_a_config_that_comes_up(make, monkeypatch):
    repo = make("")
    (repo.path / "devup.toml").unlink()
    result = repo.devup("init", "--with", "postgres,redis")
    assert result.returncode == 0, result.stderr
    # The next commands: the new files must be committed before `up` can read them.
    assert "git add devup.toml compose/postgres.yaml compose/redis.yaml" in result.stdout
    assert "devup up NAME" in result.stdout
    assert repo.devup("init").returncode == 2  # never overwrites
    for t in ("postgres", "redis"):
        subprocess.run(
            ["docker", "compose", "-f", str(repo.path / "compose" / f"{t}.yaml"), "config", "-q"], check=True
        )
    repo.commit("init")
    env = {"DEVUP_POSTGRES_IMAGE": "devup-local/postgres:15", "DEVUP_REDIS_IMAGE": "devup-local/redis:7"}
    doc = repo.up_json("i", "--mode", "container", env=env)
    assert {"POSTGRES", "REDIS"} <= set(doc["ports"])
    assert repo.devup("status", "i").returncode == 0
    assert repo.devup("down", "i").returncode == 0
    assert repo.devup("init", "--with", "nope").returncode == 2


def test_doctor_json_reports_versions(make):
    repo = make("")
    doc = json.loads(repo.devup("doctor", "--json").stdout)
    assert doc["ok"] is True
    for name in ("git", "engine", "compose"):
        assert doc["checks"][name]["ok"] and doc["checks"][name]["version"]
    broken = repo.devup("doctor", "--json", env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["checks"]["engine"]["fix"]


def test_json_documents_have_specs_fields(make):
    repo = make(LOGGY, {"compose/infra.yaml": busybox_web("store", port=8080)})
    up = repo.up_json("j")
    assert set(up) >= {
        "session",
        "status",
        "mode",
        "branch",
        "worktree",
        "projects",
        "ports",
        "env_file",
        "resumed",
        "duration_s",
    }
    [row] = json.loads(repo.devup("ls", "--json").stdout)
    assert (
        set(row)
        == {
            "session",
            "status",
            "mode",
            "branch",
            "worktree",
            "ports",
            "engine",
            "last_used",
            "expires",
            "changed",
            "urls",  # SPEC §9: the hostname URLs, target -> URL
        }
        and row["status"] == "up"
    )  # SPEC §2
    status = json.loads(repo.devup("status", "j", "--json").stdout)
    assert status["status"] == "up" and status["units"]
    failed = repo.devup("up", "j2", "--json", env={"DEVUP_FAULT": "raise@after:worktree"})
    doc = json.loads(failed.stdout)
    assert set(doc) >= {"session", "status", "error", "leftovers"} and doc["status"] == "rolled_back"
    assert set(doc["error"]) >= {"step", "message"} and doc["error"]["step"] == "worktree"
    assert json.loads(repo.devup("stop", "j", "--json").stdout)["status"] == "stopped"
    assert json.loads(repo.devup("down", "j", "--json").stdout)["status"] == "down"


def test_the_bundled_example_comes_up_and_answers(make):
    """What `scripts/demo` does: the example in a fresh repository, `devup up demo`, its URL."""
    import shutil
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "examples" / "demo"
    # Router ports of its own for where 80/443 (and the default fallback) are another router's:
    # the README's demo, left running, has one (conftest.isolated does the same for the others).
    low = random.randrange(41000, 49000, 2)
    repo = make(
        (root / "devup.toml").read_text() + f"\n[routes]\nhttp_port = {low}\nhttps_port = {low + 1}\n"
    )
    for item in root.iterdir():
        if item.name != "devup.toml":
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, repo.path / item.name)
    repo.commit("the example")
    # The example's hooks and app run `python` with its packages: the test venv's.
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    try:
        doc = repo.up_json("demo", env=env)
        url = f"http://127.0.0.1:{doc['ports']['WEB']}"
        with urllib.request.urlopen(f"{url}/health", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"{url}/", timeout=10) as resp:
            page = resp.read().decode()
        assert "demo" in page and "apples" in page  # the session name and a row seeded by post_up
        assert {"POSTGRES", "REDIS", "WEB"} <= set(doc["ports"])
        if shutil.which("caddy"):  # and at its hostname (SPEC §9), over HTTPS from devup's authority
            import subprocess

            root = Path(os.environ["DEVUP_HOME"]) / "router/data/pki/authorities/local/root.crt"
            hostname = doc["urls"]["web"]
            shown = subprocess.run(
                ["curl", "-fsS", "--max-time", "10", "--cacert", str(root), hostname],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "apples" in shown and hostname.split("/")[2].split(":")[0] in shown  # "served at"
    finally:
        down = repo.devup("down", "demo", "--force", env=env)
    assert down.returncode == 0, down.stderr
    for kind in ("container", "network", "volume"):
        assert world.labelled(kind, repo_id=repo.repo_id, session="demo") == []
