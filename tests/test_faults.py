"""Failure atomicity, resume safety and idempotence by fault injection (SPEC §5.1, §5.2, §5.4, §5.7).

Every kind of step is present (hooks with an undo, `[worktree].copy`, two dependent compose
groups with healthchecks and named volumes, a native service with a port and an http probe);
a fault at each step point must leave the world as it was, which is checked through git, the
engine and /proc, never through devup's own state files.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psutil
import pytest

from tests import world
from tests.conftest import BUSYBOX, HTTP_SERVICE, Repo, isolated, project_name

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

# The steps of a new hybrid session, in the order `up` runs them.
STEPS = [
    "pre_up",
    "worktree",
    "copy",
    "ports",
    "routes",
    "env_file",
    "post_create",
    "group:db",
    "group:app",
    "pre_spawn",
    "service:web",
    "post_up",
    "commit",
]
# Points at which post_up has run, so its undo must run on the way back.
AFTER_POST_UP = {"after:post_up", "before:commit", "after:commit"}

HOOKS = {
    "pre_up": '"echo pre-up-ran"',
    "post_create": '"echo created > .created"',
    "pre_spawn": '"test -f .env.devup"',
    # The marker lives next to the worktree (not in it), so only the undo can remove it.
    "post_up": '{ run = "echo seeded > $DEVUP_WORKTREE/../seed-$DEVUP_SESSION", '
    'undo = "rm -f $DEVUP_WORKTREE/../seed-$DEVUP_SESSION '
    '&& echo undone > $DEVUP_WORKTREE/../unseeded-$DEVUP_SESSION" }',
}


def compose_service(
    name: str,
    *,
    port: int,
    volume: str | None,
    health: str = '["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/"]',
    delay: float = 0,
    retries: int = 40,
) -> str:
    """One busybox httpd with a fast healthcheck; httpd starts after `delay` seconds."""
    start = f"sleep {delay}; " if delay else ""
    lines = [
        "services:",
        f"  {name}:",
        f"    image: {BUSYBOX}",
        "    init: true",
        f'    command: ["sh", "-c", "{start}mkdir -p /www && echo ${{DEVUP_SESSION}} > /www/index.html'
        f' && exec httpd -f -p {port} -h /www"]',
        f'    ports: ["{port}:{port}"]',
        f"    healthcheck: {{test: {health.format(port=port)}, interval: 300ms, timeout: 2s, "
        f"retries: {retries}}}",
    ]
    if volume:
        lines += [f"    volumes: [{volume}:/data]", "volumes:", f"  {volume}: {{}}"]
    return "\n".join(lines) + "\n"


def full_toml(
    project: str,
    *,
    ports: str | None = None,
    web: str = HTTP_SERVICE,
    ready_timeout: float = 30,
    hooks: dict[str, str] | None = None,
) -> str:
    hook_lines = "\n".join(f"{k} = {v}" for k, v in {**HOOKS, **(hooks or {})}.items())
    return f"""
{isolated("hybrid", project=project, ports=ports)}

[worktree]
copy = [".env.local"]

[groups.db]
files = ["compose/db.yaml"]
wait_timeout = 60

[groups.app]
files = ["compose/app.yaml"]
depends_on = ["db"]
wait_timeout = 60

[services.web]
run = "{web}"
port = true
depends_on = ["app"]
ready = {{ http = "/" }}
ready_timeout = {ready_timeout}
stop_timeout = 5

[hooks]
{hook_lines}
"""


FULL_FILES = {
    "compose/db.yaml": compose_service("store", port=8080, volume="data"),
    "compose/app.yaml": compose_service("api", port=8081, volume="cache"),
    ".gitignore": ".created\n",
}


def make_full(make, *, files: dict[str, str] | None = None, **toml) -> Repo:
    """The full hybrid project, with an untracked `.env.local` in the main checkout to copy.

    The project's slug is in `repo.project`.
    """
    project = project_name()
    repo: Repo = make(full_toml(project, **toml), {**FULL_FILES, **(files or {})})
    repo.project = project  # type: ignore[attr-defined]
    (repo.path / ".env.local").write_text("SECRET=from-main-checkout\n")
    return repo


def run_json(
    repo: Repo, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = repo.devup(*args, "--json", env=env)
    try:
        doc = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(
            f"devup {' '.join(args)} printed no JSON document (exit {result.returncode}):\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}"
        )
    return result, doc


def seed_marker(repo: Repo, name: str) -> Path:
    return repo.worktree(name).parent / f"seed-{name}"


def undo_marker(repo: Repo, name: str) -> Path:
    return repo.worktree(name).parent / f"unseeded-{name}"


def session_processes(repo: Repo, name: str) -> list[str]:
    """Every live process carrying the session's variables: tagged ones (DEVUP_REPO_ID), and
    any other child devup gave the session's environment, such as `docker compose`."""
    found = []
    for proc in psutil.process_iter():
        try:
            env = proc.environ()
            mine = env.get("DEVUP_SESSION") == name and (
                env.get("DEVUP_REPO_ID") == repo.repo_id or env.get("DEVUP_REPO") == str(repo.path)
            )
            if mine and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{proc.pid} {proc.cmdline()}")
        except psutil.Error:
            continue
    return found


def assert_no_trace(repo: Repo, name: str, *, rolled_back: bool = True) -> None:
    """SPEC §5.1 seen from outside: nothing of session `name` exists any more.

    After a rollback the branch the run created is gone too, and so is post_up's marker;
    `down` keeps branches (commits may live there) and does not run post_up's undo.
    """
    for kind in ("container", "network", "volume"):
        assert world.labelled(kind, repo_id=repo.repo_id, session=name) == [], kind
    wt = repo.worktree(name)
    assert wt not in world.worktree_paths(repo.path)
    assert not wt.exists()
    if rolled_back:
        assert name not in world.branches(repo.path)
        assert not seed_marker(repo, name).exists()
    assert session_processes(repo, name) == []
    # SPEC §9: no hostname of the session is left on the router (where caddy gave it some).
    assert f"devup_{repo.repo_id}_{name}" not in world.router_routes(Path(os.environ["DEVUP_HOME"]))
    assert json.loads(repo.devup("ls", "--json").stdout) == []


def down(repo: Repo, name: str, *extra: str) -> None:
    result = repo.devup("down", name, *extra)
    assert result.returncode == 0, result.stderr


# --- §5.1: a fault at every step point rolls everything back ---------------------------------

POINTS = [f"after:{s}" for s in STEPS] + ["before:worktree", "before:group:app", "before:service:web"]


@pytest.fixture
def full(make) -> Repo:
    return make_full(make)


@pytest.mark.parametrize("point", POINTS)
def test_fault_at_every_step_rolls_back_a_new_session(full, point):
    result, doc = run_json(full, "up", "n", env={"DEVUP_FAULT": f"raise@{point}"})
    assert result.returncode == 1, result.stderr
    assert doc["session"] == "n" and doc["status"] == "rolled_back", doc
    assert doc["error"]["step"] == point.split(":", 1)[1]
    assert "fault injected" in doc["error"]["message"] and doc["leftovers"] == []
    assert_no_trace(full, "n")
    # post_up's undo ran exactly when post_up itself had run.
    assert undo_marker(full, "n").exists() == (point in AFTER_POST_UP)
    # The main checkout is untouched: the copied file is still there, nothing else changed.
    assert (full.path / ".env.local").read_text() == "SECRET=from-main-checkout\n"
    assert world.git(full.path, "status", "--porcelain") == "?? .env.local\n"


# --- §5.1 and §5.7 with real, not injected, failures ------------------------------------------


def test_service_never_ready_rolls_back_and_says_why(make):
    repo = make(
        f"""
{isolated("host")}
[services.web]
run = "echo web-is-starting-up; exec sleep 300"
port = true
ready = {{ http = "/" }}
ready_timeout = 2
[hooks]
post_up = "true"
"""
    )
    result, doc = run_json(repo, "up", "r")
    assert result.returncode == 1, result.stderr
    assert doc["status"] == "rolled_back" and doc["error"]["step"] == "service:web"
    message = doc["error"]["message"]
    assert "not ready after 2s" in message and "http probe '/'" in message
    assert "exec sleep 300" in message  # the command
    assert "web-is-starting-up" in message  # the tail of its output
    assert "service:web" in result.stderr
    assert_no_trace(repo, "r")


def test_unhealthy_group_rolls_back_and_says_why(make):
    project = project_name()
    sick = compose_service(
        "api", port=8081, volume="cache", health='["CMD-SHELL", "echo sick-api; exit 3"]', retries=2
    )
    repo = make(
        f"""
{isolated("container", project=project)}
[groups.db]
files = ["compose/db.yaml"]
[groups.app]
files = ["compose/app.yaml"]
depends_on = ["db"]
wait_timeout = 30
""",
        {"compose/db.yaml": FULL_FILES["compose/db.yaml"], "compose/app.yaml": sick},
    )
    result, doc = run_json(repo, "up", "u")
    assert result.returncode == 1, result.stderr
    assert doc["status"] == "rolled_back" and doc["error"]["step"] == "group:app"
    message = doc["error"]["message"]
    # the command; the project is `<slug>-<6 hex of repo id>_<session>_<group>`
    assert f"docker compose -p {project}-{repo.repo_id[:6]}_u_app up" in message
    assert "exited 1" in message  # its exit code
    assert "unhealthy" in message  # the tail of its output
    assert "group:app" in result.stderr
    assert_no_trace(repo, "u")


def test_a_group_not_healthy_within_wait_timeout_rolls_back_and_says_so(make):
    """The readiness wait's third verdict: still `starting` when wait_timeout runs out."""
    slow = compose_service(
        "api", port=8082, volume=None, health='["CMD-SHELL", "exit 1"]', retries=1000
    )  # fails its check a thousand times before it is unhealthy: starting all the while
    repo = make(
        isolated("container") + '[groups.app]\nfiles = ["compose/app.yaml"]\nwait_timeout = 3\n',
        {"compose/app.yaml": slow},
    )
    result, doc = run_json(repo, "up", "w")
    assert result.returncode == 1, result.stderr
    assert doc["status"] == "rolled_back" and doc["error"]["step"] == "group:app"
    assert "not healthy after 3s" in doc["error"]["message"], doc["error"]["message"]
    assert_no_trace(repo, "w")


def test_a_rollback_removes_only_the_worktrees_folder_it_made(make):
    repo = make(isolated("host"))
    made = repo.worktree("k").parent
    result = repo.devup("up", "k", env={"DEVUP_FAULT": "raise@after:worktree"})
    assert result.returncode == 1, result.stderr
    assert not made.exists()  # git made it for this run: the rollback took it away
    made.mkdir()  # now it is the user's, empty
    result = repo.devup("up", "k", env={"DEVUP_FAULT": "raise@after:worktree"})
    assert result.returncode == 1, result.stderr
    assert made.is_dir() and list(made.iterdir()) == []  # SPEC §5.6: not devup's to delete
    assert "k" not in world.branches(repo.path) and world.worktree_paths(repo.path) == [repo.path]


def test_rollback_stops_what_a_finished_hook_left_running(make):
    """A hook that succeeded but left a background process: a later failure must stop it too."""
    repo = make(
        f"""
{isolated("host")}
[services.web]
run = "{HTTP_SERVICE}"
port = true
ready = {{ tcp = true }}
[hooks]
pre_spawn = "sleep 300 >/dev/null 2>&1 &"
"""
    )
    result, doc = run_json(repo, "up", "b", env={"DEVUP_FAULT": "raise@after:service:web"})
    assert result.returncode == 1 and doc["status"] == "rolled_back", result.stderr
    assert_no_trace(repo, "b")


# --- §5.2: a failed resume keeps the worktree and the data ------------------------------------


def volume_file(volume: str, path: str) -> str:
    """Read a file from a volume with a throwaway container (unlabelled, removed at once)."""
    return world.docker("run", "--rm", "-v", f"{volume}:/data", BUSYBOX, "cat", f"/data/{path}")


def dirty_stopped_session(repo: Repo, name: str) -> dict:
    """Up, data in the store's volume, uncommitted changes in the worktree, then stopped."""
    first = repo.up_json(name)
    [store] = [c for c in world.labelled("container", repo_id=repo.repo_id, session=name) if "store" in c]
    world.docker("exec", store, "sh", "-c", "echo precious > /data/x")
    wt = repo.worktree(name)
    (wt / "notes.txt").write_text("uncommitted work\n")
    with open(wt / "compose/db.yaml", "a") as f:
        f.write("# edited\n")
    stopped = repo.devup("stop", name)
    assert stopped.returncode == 0, stopped.stderr
    return first


def assert_resume_intact(repo: Repo, name: str, *, volumes: list[str], head: str) -> None:
    """SPEC §5.2: worktree, branch, uncommitted changes, volumes and their data all intact."""
    wt = repo.worktree(name)
    assert wt in world.worktree_paths(repo.path) and world.git(wt, "rev-parse", "HEAD") == head
    assert (wt / "notes.txt").read_text() == "uncommitted work\n"
    assert (wt / "compose/db.yaml").read_text().endswith("# edited\n")
    assert (wt / ".env.local").exists() and (wt / ".created").exists()
    assert world.labelled("volume", repo_id=repo.repo_id, session=name) == volumes
    assert volume_file(next(v for v in volumes if v.endswith("_data")), "x") == "precious\n"
    assert world.running_containers(repo_id=repo.repo_id, session=name) == []
    assert session_processes(repo, name) == []
    assert [s["status"] for s in json.loads(repo.devup("ls", "--json").stdout)] == ["failed"]


def test_failed_resume_keeps_worktree_and_volumes(full):
    first = dirty_stopped_session(full, "s")
    volumes = world.labelled("volume", repo_id=full.repo_id, session="s")
    assert len(volumes) == 2
    head = world.git(full.worktree("s"), "rev-parse", "HEAD")

    result, doc = run_json(full, "up", "s", env={"DEVUP_FAULT": "raise@after:service:web"})
    assert result.returncode == 1, result.stderr
    assert doc["status"] == "rolled_back" and doc["error"]["step"] == "service:web"
    assert_resume_intact(full, "s", volumes=volumes, head=head)

    # A plain `up` converges, with the same ports and the same data.
    again = full.up_json("s")
    assert again["resumed"] is True and again["ports"] == first["ports"]
    [store] = [c for c in world.running_containers(repo_id=full.repo_id, session="s") if "store" in c]
    assert world.docker("exec", store, "cat", "/data/x") == "precious\n"
    assert seed_marker(full, "s").read_text() == "seeded\n"
    refused = full.devup("down", "s")
    assert refused.returncode == 1 and "uncommitted" in refused.stderr
    down(full, "s", "--force")
    assert_no_trace(full, "s", rolled_back=False)


# --- §5.4: a failed run retried without the fault converges -----------------------------------


def test_retry_after_failure_converges(full):
    failed = full.devup("up", "i", env={"DEVUP_FAULT": "raise@after:group:app"})
    assert failed.returncode == 1, failed.stderr
    doc = full.up_json("i")
    assert doc["status"] == "up" and doc["resumed"] is False
    assert len(world.running_containers(repo_id=full.repo_id, session="i")) == 2
    assert world.tagged_processes(repo_id=full.repo_id, session="i")
    assert (full.worktree("i") / ".env.local").exists()
    assert full.up_json("i")["ports"] == doc["ports"]
    down(full, "i")
    assert_no_trace(full, "i", rolled_back=False)
