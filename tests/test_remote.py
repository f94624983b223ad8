"""Sessions on a remote engine (SPEC §6, §4's DEVUP_HOST, guarantee 10), end to end.

The "remote machine" is a second Docker engine in a network namespace the harness creates
(tests/remote_engine.py), reached over TCP at the namespace's address; the local engine is the
machine's own. What a user would check is checked: which engine runs the containers (`docker
-H`), where the ports answer (a connection to the namespace address and to 127.0.0.1), the env
file, git. Where network namespaces (or sshd in one) cannot be made, every test here fails with
the reason, or, with DEVUP_SKIP_REMOTE_TESTS=1, is skipped, loudly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests import conftest, world
from tests.conftest import BUSYBOX, Repo, isolated, port_range
from tests.remote_engine import (
    CONTEXT,
    SSH_CONTEXT,
    RemoteEngine,
    SshEndpoint,
    Unavailable,
    remote_engine,
    ssh_endpoint,
)
from tests.test_faults import compose_service

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]
LOCAL_HOST = "unix:///var/run/docker.sock"


@pytest.fixture(scope="session")
def remote() -> Iterator[RemoteEngine]:
    try:
        with remote_engine(BUSYBOX) as found:
            yield found
            return
    except Unavailable as exc:
        why = str(exc)
    cannot_run(f"cannot create a network namespace with a second engine: {why}", what="REMOTE-ENGINE")


@pytest.fixture(scope="session")
def remote_ssh(remote: RemoteEngine) -> Iterator[SshEndpoint]:
    try:
        with ssh_endpoint(remote) as found:
            yield found
            return
    except Unavailable as exc:
        why = str(exc)
    cannot_run(f"cannot run sshd in the namespace: {why}", what="ssh://")


def cannot_run(why: str, *, what: str) -> NoReturn:
    """These tests cannot run here: a failure, since SPEC §6 would go unchecked without a word,
    unless DEVUP_SKIP_REMOTE_TESTS=1 asks to skip them; then the skip is loud."""
    if not conftest.SKIP_REMOTE:
        pytest.fail(
            f"{what} TESTS CANNOT RUN: {why}; set DEVUP_SKIP_REMOTE_TESTS=1 to skip them (loudly) instead",
            pytrace=False,
        )
    reason = f"{what} TESTS NOT RUN (DEVUP_SKIP_REMOTE_TESTS=1): {why}"
    warnings.warn(reason, stacklevel=2)
    print(f"\n{'!' * 78}\n!! {reason}\n{'!' * 78}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture
def rmake(make, remote: RemoteEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Repo]]:
    """`make`, with the `remote` context known (current context: the local default) and a leak
    check on the remote engine afterwards."""
    monkeypatch.setenv("DOCKER_CONFIG", str(remote.config_dir))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    made: list[Repo] = []

    def factory(toml: str, files: dict[str, str] | None = None) -> Repo:
        repo = make(toml, files)
        made.append(repo)
        return repo

    yield factory
    for repo in made:
        leaks = []
        for kind in ("container", "network", "volume"):
            for name in remote.labelled(kind, repo_id=repo.repo_id):
                leaks.append(f"remote {kind} {name}")
                rm = {
                    "container": ["rm", "-f"],
                    "network": ["network", "rm"],
                    "volume": ["volume", "rm", "-f"],
                }
                remote.docker(*rm[kind], name, check=False)
        if leaks:
            conftest._LEAKS.append("  test_remote: " + ", ".join(leaks))


def group_toml(mode: str = "container", *, ports: str | None = None, extra: str = "") -> str:
    return f"""
{isolated(mode, ports=ports)}
[groups.db]
files = ["compose/db.yaml"]
wait_timeout = 60
{extra}
"""


DB = {"compose/db.yaml": compose_service("store", port=8080, volume="data")}


def answers(host: str, port: int) -> str | None:
    """The body served at http://host:port/, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=3) as response:
            return str(response.read().decode().strip())
    except OSError:
        return None


def assert_gone(repo: Repo, remote: RemoteEngine, name: str, *, rolled_back: bool = False) -> None:
    """Nothing of session `name` on either engine, no worktree (and, after a rollback of a new
    session, no branch: `down` keeps the branch, a rollback removes the one it created)."""
    for kind in ("container", "network", "volume"):
        assert remote.labelled(kind, repo_id=repo.repo_id, session=name) == [], kind
        assert world.labelled(kind, repo_id=repo.repo_id, session=name) == [], kind
    assert not repo.worktree(name).exists()
    if rolled_back:
        assert name not in world.branches(repo.path)


def local_env() -> dict[str, str]:
    """A shell pointed at the local engine, as a user who forgot about the remote one."""
    return {"DOCKER_HOST": LOCAL_HOST}


# --- up on a remote context ------------------------------------------------------------------


def test_up_with_context_runs_there_ports_answer_there_and_down_removes_it(rmake, remote):
    repo = rmake(group_toml(), DB)
    result = repo.devup("up", "r", "--context", CONTEXT, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    port = doc["ports"]["STORE"]
    assert remote.running(repo_id=repo.repo_id, session="r") != []
    assert world.labelled("container", repo_id=repo.repo_id) == []  # none on the local engine
    assert answers(remote.address, port) == "r"
    assert answers("127.0.0.1", port) is None
    env = Path(doc["env_file"]).read_text().splitlines()
    assert f"DEVUP_HOST={remote.address}" in env
    assert f"DEVUP_PORT_STORE={port}" in env
    # status's and the summary's URLs point at the engine's host.
    status = repo.devup("status", "r", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["engine"] == {"context": CONTEXT, "host": remote.host, "remote": True}
    [unit] = shown["units"]
    assert unit["url"] == f"http://{remote.address}:{port}/"
    again = repo.devup("up", "r")  # the summary of a no-op up, as text
    assert again.returncode == 0, again.stderr
    assert f"http://{remote.address}:{port}/" in again.stdout
    # ls shows the engine.
    [row] = json.loads(repo.devup("ls", "--json").stdout)
    assert row["status"] == "up"
    [line] = repo.devup("ls").stdout.splitlines()[1:]
    assert line.startswith("r ") and f"{CONTEXT} ({remote.host})" in line
    # down with no context set (the current context is the local default) removes it remotely.
    down = repo.devup("down", "r")
    assert down.returncode == 0, down.stderr
    assert_gone(repo, remote, "r")


def test_project_context_and_a_hybrid_service_reaching_its_remote_dependency(rmake, remote):
    fetch = (
        "import os, urllib.request\n"
        "body = urllib.request.urlopen(os.environ['STORE_URL'], timeout=10).read()\n"
        "open('fetched.txt', 'wb').write(body)\n"
        "import time\n"
        "time.sleep(600)\n"
    )
    toml = group_toml(
        "hybrid",
        extra=f"""
[env]
STORE_URL = "http://${{DEVUP_HOST}}:${{DEVUP_PORT_STORE}}/"
[services.client]
run = "exec {sys.executable} fetch.py"
depends_on = ["db"]
ready = {{ cmd = "test -s fetched.txt" }}
ready_timeout = 30
stop_timeout = 2
[hooks]
post_up = "echo $DEVUP_HOST > hook-saw-host"
""",
    ).replace('mode = "hybrid"', f'mode = "hybrid"\ncontext = "{CONTEXT}"')
    repo = rmake(toml, {**DB, "fetch.py": fetch, ".gitignore": "fetched.txt\nhook-saw-host\n"})
    doc = repo.up_json("h")  # no --context: [project].context chooses the remote engine
    wt = Path(doc["worktree"])
    assert remote.running(repo_id=repo.repo_id, session="h") != []
    assert world.labelled("container", repo_id=repo.repo_id) == []
    # The native service ran here and fetched from the container there, by [env]'s URL.
    assert (wt / "fetched.txt").read_text().strip() == "h"
    assert (wt / "hook-saw-host").read_text().strip() == remote.address
    assert f"STORE_URL=http://{remote.address}:{doc['ports']['STORE']}/" in (wt / ".env.devup").read_text()
    [proc] = world.tagged_processes(repo_id=repo.repo_id, session="h")
    assert proc.environ()["DEVUP_HOST"] == remote.address
    down = repo.devup("down", "h", env=local_env())
    assert down.returncode == 0, down.stderr
    assert_gone(repo, remote, "h")
    assert world.tagged_processes(repo_id=repo.repo_id, session="h") == []


def test_docker_host_or_docker_context_chooses_the_engine_and_ls_stays_light(rmake, remote):
    repo = rmake(group_toml(), DB)
    repo.up_json("a", env={"DOCKER_HOST": remote.host})
    repo.up_json("b", env={"DOCKER_CONTEXT": CONTEXT})
    for name in ("a", "b"):
        assert remote.running(repo_id=repo.repo_id, session=name) != []
    assert world.labelled("container", repo_id=repo.repo_id) == []
    # ls from a shell on the local engine: both remote, both up, and no docker SDK loaded.
    listed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "devup", "ls"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        env={**os.environ, **local_env()},
    )
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert len(rows) == 2 and all(" up " in r and remote.host in r for r in rows)
    loaded = {
        line.rsplit("|", 1)[1].strip().split(".")[0] for line in listed.stderr.splitlines() if "|" in line
    }
    assert loaded.isdisjoint({"docker", "pydantic", "rich", "tenacity", "git"})
    for name in ("a", "b"):
        assert repo.devup("down", name).returncode == 0
        assert_gone(repo, remote, name)


def test_ssh_context_runs_there_and_every_later_command_goes_there(rmake, remote, remote_ssh, monkeypatch):
    # The endpoint is ssh://root@remote-box, an alias only the ssh config knows.
    monkeypatch.setenv("PATH", f"{remote_ssh.bin_dir}{os.pathsep}{os.environ['PATH']}")
    repo = rmake(group_toml(), DB)
    doc = repo.up_json("s", "--context", SSH_CONTEXT)
    port = doc["ports"]["STORE"]
    assert remote.running(repo_id=repo.repo_id, session="s") != []
    assert world.labelled("container", repo_id=repo.repo_id) == []
    assert answers(remote.address, port) == "s" and answers("127.0.0.1", port) is None
    # DEVUP_HOST is the machine ssh connects to, not the alias.
    assert f"DEVUP_HOST={remote.address}" in Path(doc["env_file"]).read_text().splitlines()
    status = repo.devup("status", "s", "--json", env=local_env())
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["engine"] == {
        "context": SSH_CONTEXT,
        "host": remote_ssh.host,
        "remote": True,
    }
    listed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "devup", "ls"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        env={**os.environ, **local_env()},
    )
    [row] = listed.stdout.splitlines()[1:]
    assert " up " in row and remote_ssh.host in row  # up: its container was seen over ssh
    loaded = {
        line.rsplit("|", 1)[1].strip().split(".")[0] for line in listed.stderr.splitlines() if "|" in line
    }
    assert "docker" not in loaded and "paramiko" not in loaded
    assert repo.devup("stop", "s", env=local_env()).returncode == 0
    assert remote.running(repo_id=repo.repo_id, session="s") == []
    again = repo.up_json("s", env=local_env())
    assert again["ports"] == doc["ports"] and answers(remote.address, port) == "s"
    down = repo.devup("down", "s", env=local_env())
    assert down.returncode == 0, down.stderr
    assert_gone(repo, remote, "s")
    # An ssh endpoint that cannot be reached: exit 1, with what ssh said.
    dead = repo.devup("up", "t", env={"DOCKER_HOST": "ssh://root@remote-box:2222"})
    assert dead.returncode == 1, dead.stderr  # SPEC §2: an engine that does not answer is exit 1
    assert "ssh said:" in dead.stderr and "2222" in dead.stderr


# --- ports on the remote host ------------------------------------------------------------------


def test_ports_taken_on_the_remote_host_are_not_leased(rmake, remote):
    block = port_range(8)
    low = int(block.strip("[]").split(",")[0])
    name = f"foreign-{os.getpid()}-{low}"
    # Port `low`: published by a container devup did not make; `low + 1`: a plain listener in
    # the namespace that no engine knows of. Both are free on this machine.
    remote.docker("run", "-d", "--name", name, "-p", f"{low}:80", BUSYBOX, "httpd", "-f", "-p", "80")
    listener = remote.in_namespace(
        sys.executable, "-m", "http.server", str(low + 1), "--bind", remote.address
    )
    try:
        deadline = time.monotonic() + 20
        while answers(remote.address, low + 1) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert world.port_bound(low) is False and world.port_bound(low + 1) is False
        repo = rmake(group_toml(ports=block), DB)
        doc = repo.up_json("p", "--context", CONTEXT)
        assert doc["ports"]["STORE"] not in (low, low + 1)
        assert answers(remote.address, doc["ports"]["STORE"]) == "p"
        # The foreign container still holds its port.
        assert remote.docker("port", name).strip().endswith(f":{low}")
        assert repo.devup("down", "p").returncode == 0
        assert_gone(repo, remote, "p")
    finally:
        listener.kill()
        listener.wait()
        remote.docker("rm", "-f", name, check=False)


def test_port_taken_on_the_remote_host_between_lease_and_bind_moves(rmake, remote, tmp_path):
    gate, port_file = tmp_path / "gate", tmp_path / "port"
    hook = (
        'echo $DEVUP_PORT_STORE > \\"$PORT_FILE\\"; i=0; while [ ! -e \\"$GATE\\" ] && [ $i -lt 1200 ];'
        " do sleep 0.05; i=$((i+1)); done"
    )
    repo = rmake(
        group_toml(ports=port_range(8), extra=f'[hooks]\npost_create = "{hook}"\n'),
        {"compose/db.yaml": compose_service("store", port=8080, volume=None)},
    )
    proc = repo.popen(
        "up", "m", "--context", CONTEXT, "--json", env={"GATE": str(gate), "PORT_FILE": str(port_file)}
    )
    name = f"squatter-{os.getpid()}"
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None, "no port leased"
            time.sleep(0.05)
        leased = int(port_file.read_text())
        remote.docker("run", "-d", "--name", name, "-p", f"{leased}:80", BUSYBOX, "httpd", "-f", "-p", "80")
        gate.touch()
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        moved = json.loads(out)["ports"]["STORE"]
        assert moved != leased
        assert "taken by someone else" in err
        assert answers(remote.address, moved) == "m"
        assert remote.docker("port", name).strip().endswith(f":{leased}")  # the squatter is untouched
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        remote.docker("rm", "-f", name, check=False)
    assert repo.devup("down", "m").returncode == 0
    assert_gone(repo, remote, "m")


# --- guarantee 10: later commands act on the recorded engine ---------------------------------


def test_stop_status_logs_gc_and_down_act_on_the_recorded_engine(rmake, remote):
    talking = DB["compose/db.yaml"].replace('"sh", "-c", "', '"sh", "-c", "echo started-${DEVUP_SESSION}; ')
    repo = rmake(group_toml(), {"compose/db.yaml": talking})
    first = repo.up_json("g", "--context", CONTEXT)
    here = local_env()
    assert repo.devup("status", "g", env=here).returncode == 0  # healthy: seen on the remote engine
    logs = repo.devup("logs", "g", env=here)
    assert logs.returncode == 0, logs.stderr
    assert "db/store | started-g" in logs.stdout.splitlines()
    stopped = repo.devup("stop", "g", env=here)
    assert stopped.returncode == 0, stopped.stderr
    assert remote.running(repo_id=repo.repo_id, session="g") == []
    assert remote.labelled("container", repo_id=repo.repo_id, session="g") != []  # stopped, kept
    again = repo.up_json("g", env=here)  # resumes there, with the same ports
    assert again["ports"] == first["ports"] and again["resumed"] is True
    assert answers(remote.address, again["ports"]["STORE"]) == "g"
    assert world.labelled("container", repo_id=repo.repo_id) == []
    moved = repo.devup("up", "g", "--context", "default")  # a session does not change engines
    assert moved.returncode == 2, moved.stderr
    assert "down" in moved.stderr
    assert repo.devup("down", "g", env=here).returncode == 0
    assert_gone(repo, remote, "g")
    # gc, from a shell on the local engine, finds what no session owns on the remote engine.
    ghost = f"ghost-{os.getpid()}"
    remote.docker(
        "run", "-d", "--name", ghost, "--label", f"dev.devup.repo={repo.repo_id}",
        "--label", "dev.devup.session=ghost", BUSYBOX, "sleep", "600",
    )  # fmt: skip
    dry = repo.devup("gc", "--dry-run", "--json", env=here)
    assert dry.returncode == 0, dry.stderr
    assert [o["name"] for o in json.loads(dry.stdout)["orphans"] if o["kind"] == "container"] == [ghost]
    assert repo.devup("gc", env=here).returncode == 0
    assert remote.labelled("container", repo_id=repo.repo_id) == []


def test_snapshots_on_a_sessions_remote_engine_are_listed_and_removed_from_a_local_shell(rmake, remote):
    """code-review §5 bug 4: `snapshot ls`/`rm` looked only at the configured or current engine,
    so a snapshot made on a session's remote engine was invisible and `rm` said nothing to do."""
    repo = rmake(group_toml(), DB)
    repo.up_json("g", "--context", CONTEXT)
    here = local_env()
    made = repo.devup("snapshot", "create", "g", "--as", "far", env=here)
    assert made.returncode == 0, made.stderr
    assert remote.labelled("volume", repo_id=repo.repo_id) != []
    listed = repo.devup("snapshot", "ls", "--json", env=here)
    assert listed.returncode == 0, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == ["far"]
    removed = repo.devup("snapshot", "rm", "far", env=here)
    assert removed.returncode == 0 and "nothing to do" not in removed.stdout + removed.stderr, removed.stderr
    assert json.loads(repo.devup("snapshot", "ls", "--json", env=here).stdout) == []
    assert repo.devup("down", "g", env=here).returncode == 0
    assert_gone(repo, remote, "g")


def test_sigkill_during_up_then_recover_from_a_local_shell_removes_it_remotely(rmake, remote):
    slow = compose_service("store", port=8080, volume="data", delay=3)
    repo = rmake(group_toml(), {"compose/db.yaml": slow})
    proc = repo.popen("up", "k", "--context", CONTEXT)
    deadline = time.monotonic() + 90
    while not remote.labelled("container", repo_id=repo.repo_id, session="k"):
        assert time.monotonic() < deadline and proc.poll() is None, "no container on the remote engine"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # The interrupted run shows as such, on its engine.
    [row] = json.loads(repo.devup("ls", "--json", env=local_env()).stdout)
    assert row["status"] == "interrupted"
    assert remote.host in repo.devup("ls", env=local_env()).stdout
    result = repo.devup("recover", "k", env=local_env())
    assert result.returncode == 0, result.stderr
    # Recovery also stopped the `docker compose up` devup left running: nothing comes back.
    time.sleep(1)
    assert_gone(repo, remote, "k", rolled_back=True)


def test_failed_up_on_a_remote_engine_rolls_back_there_and_a_resume_keeps_its_data(rmake, remote):
    repo = rmake(group_toml(extra='[hooks]\npost_up = "true"\n'), DB)
    fault = {"DEVUP_FAULT": "raise@before:post_up"}
    failed = repo.devup("up", "f", "--context", CONTEXT, env=fault)
    assert failed.returncode == 1, failed.stderr
    assert_gone(repo, remote, "f", rolled_back=True)
    repo.up_json("f", "--context", CONTEXT)
    [container] = remote.labelled("container", repo_id=repo.repo_id, session="f")
    remote.docker("exec", container, "sh", "-c", "echo precious > /data/file")
    assert repo.devup("stop", "f").returncode == 0
    resumed = repo.devup("up", "f", env={**fault, **local_env()})
    assert resumed.returncode == 1, resumed.stderr
    assert remote.labelled("volume", repo_id=repo.repo_id, session="f") != []
    assert repo.worktree("f").is_dir()
    again = repo.up_json("f", env=local_env())
    [container] = remote.labelled("container", repo_id=repo.repo_id, session="f")
    assert remote.docker("exec", container, "cat", "/data/file").strip() == "precious"
    assert answers(remote.address, again["ports"]["STORE"]) == "f"
    assert repo.devup("down", "f", env=local_env()).returncode == 0
    assert_gone(repo, remote, "f")


# --- refused and bad input ---------------------------------------------------------------------


def test_bind_mount_of_a_local_path_on_a_remote_engine_is_exit_2_and_changes_nothing(rmake, remote):
    compose = compose_service("store", port=8080, volume=None).replace(
        "    init: true\n", "    init: true\n    volumes: [./src:/src]\n"
    )
    repo = rmake(group_toml(), {"compose/db.yaml": compose, "src/app.txt": "code\n"})
    result = repo.devup("up", "b", "--context", CONTEXT)
    assert result.returncode == 2, result.stderr
    assert "group db" in result.stderr and "service store" in result.stderr
    assert "./src" in result.stderr
    assert remote.labelled("container", repo_id=repo.repo_id) == []
    assert "b" not in world.branches(repo.path)
    assert not repo.worktree("b").exists()
    assert json.loads(repo.devup("ls", "--json").stdout) == []


def test_a_volume_binding_a_host_path_on_a_remote_engine_is_exit_2_and_changes_nothing(rmake, remote):
    # A named volume whose driver_opts bind a host path is a bind mount in disguise (new-M6).
    compose = compose_service("store", port=8080, volume="pgdata").replace(
        "  pgdata: {}", "  pgdata:\n    driver_opts: {type: none, o: bind, device: /srv/pgdata}"
    )
    assert "driver_opts" in compose
    repo = rmake(group_toml(), {"compose/db.yaml": compose})
    result = repo.devup("up", "hv", "--context", CONTEXT)
    assert result.returncode == 2, result.stderr
    assert "group db" in result.stderr and "service store" in result.stderr
    assert "pgdata" in result.stderr and "/srv/pgdata" in result.stderr
    for kind in ("container", "volume"):
        assert remote.labelled(kind, repo_id=repo.repo_id) == [], kind
    assert "hv" not in world.branches(repo.path)
    assert not repo.worktree("hv").exists()
    assert json.loads(repo.devup("ls", "--json").stdout) == []


def test_a_remote_engine_that_does_not_answer_is_named_and_nothing_is_made(rmake, remote):
    repo = rmake(group_toml(), DB)
    dead = f"tcp://{remote.address}:2376"  # the namespace's address, a port nothing listens on
    result = repo.devup("up", "d", env={"DOCKER_HOST": dead})
    assert result.returncode == 1, result.stderr  # SPEC §2
    assert f"remote Docker engine {dead} does not answer" in result.stderr
    assert f"docker -H {dead} info" in result.stderr
    assert "d" not in world.branches(repo.path) and not repo.worktree("d").exists()


def test_unknown_context_is_exit_2_naming_it(rmake, remote):
    repo = rmake(group_toml(), DB)
    result = repo.devup("up", "u", "--context", "no-such-context")
    assert result.returncode == 2
    assert "no-such-context" in result.stderr and "docker context create" in result.stderr
    assert "u" not in world.branches(repo.path)


def test_doctor_reports_each_context_and_whether_it_is_remote(rmake, remote):
    repo = rmake(group_toml(), DB)
    doc = json.loads(repo.devup("doctor", "--json").stdout)
    contexts = {c["name"]: c for c in doc["contexts"]}
    assert contexts[CONTEXT]["host"] == remote.host
    assert contexts[CONTEXT]["remote"] is True and contexts[CONTEXT]["answers"] is True
    assert contexts["default"]["remote"] is False and contexts["default"]["current"] is True
    text = repo.devup("doctor").stdout
    assert remote.host in text and f"remote ({remote.address})" in text


def test_local_engine_sessions_get_devup_host_127_0_0_1(rmake, remote):
    repo = rmake(group_toml(), DB)
    doc = repo.up_json("l")
    assert "DEVUP_HOST=127.0.0.1" in Path(doc["env_file"]).read_text().splitlines()
    assert world.running_containers(repo_id=repo.repo_id, session="l") != []
    assert remote.labelled("container", repo_id=repo.repo_id) == []
    assert json.loads(repo.devup("status", "l", "--json").stdout)["engine"]["remote"] is False
    [line] = repo.devup("ls").stdout.splitlines()[1:]
    assert line.rstrip().endswith("local")
    assert answers("127.0.0.1", doc["ports"]["STORE"]) == "l"
    assert repo.devup("down", "l").returncode == 0
