"""up / stop / down end to end on the real engine, in all three modes (SPEC §2, §4, §5)."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import world
from tests.conftest import HTTP_SERVICE, busybox_web

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

HYBRID = f"""
[project]
name = "shop"
mode = "hybrid"

[env]
STORE_URL = "http://127.0.0.1:${{DEVUP_PORT_STORE}}/"

[groups.infra]
files = ["compose/infra.yaml"]

[services.web]
run = "{HTTP_SERVICE}"
port = true
depends_on = ["infra"]
ready = {{ http = "/" }}

[hooks]
post_up = {{ run = "echo seeded > $DEVUP_WORKTREE/../seed-$DEVUP_SESSION", undo = "rm -f $DEVUP_WORKTREE/../seed-$DEVUP_SESSION" }}
"""


def get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()


@pytest.fixture
def shop(make):
    return make(HYBRID, {"compose/infra.yaml": busybox_web("store", port=8080)})


def test_up_brings_everything_up_and_down_removes_it(shop):
    doc = shop.up_json("a")
    assert doc["status"] == "up" and doc["session"] == "a" and doc["resumed"] is False
    assert doc["mode"] == "hybrid" and doc["branch"] == "a"
    assert set(doc["ports"]) == {"STORE", "STORE_8080", "WEB"}
    assert doc["ports"]["STORE"] == doc["ports"]["STORE_8080"]
    # The container answers on its leased port, and compose interpolation saw DEVUP_SESSION.
    assert get(doc["ports"]["STORE"]).strip() == "a"
    get(doc["ports"]["WEB"])
    # The file's own published port is replaced, not appended.
    assert not world.port_bound(8080)
    [container] = world.labelled("container", repo_id=shop.repo_id, session="a")
    assert list(world.published_ports(container).values()) == [str(doc["ports"]["STORE"])]
    assert world.labelled("volume", repo_id=shop.repo_id, session="a")
    assert world.labelled("network", repo_id=shop.repo_id, session="a")
    wt = shop.worktree("a")
    assert wt in world.worktree_paths(shop.path) and "a" in world.branches(shop.path)
    env_file = wt / ".env.devup"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"DEVUP_PORT_WEB={doc['ports']['WEB']}" in env_file.read_text()
    assert f"STORE_URL=http://127.0.0.1:{doc['ports']['STORE']}/" in env_file.read_text()
    assert world.git(wt, "status", "--porcelain") == ""  # the env file is kept out of git
    assert (wt.parent / "seed-a").read_text() == "seeded\n"  # post_up ran with SPEC §4 variables
    procs = world.tagged_processes(repo_id=shop.repo_id, session="a")
    assert procs and all(os.getpgid(p.pid) != os.getpgid(0) for p in procs)  # own process group

    result = shop.devup("down", "a")
    assert result.returncode == 0, result.stderr
    for kind in ("container", "network", "volume"):
        assert world.labelled(kind, repo_id=shop.repo_id, session="a") == []
    assert world.tagged_processes(repo_id=shop.repo_id, session="a") == []
    assert wt not in world.worktree_paths(shop.path) and not wt.exists()
    assert "a" in world.branches(shop.path)  # down never deletes a branch: commits may live there
    assert json.loads(shop.devup("ls", "--json").stdout) == []


def test_up_twice_is_a_fast_noop_with_the_same_ports(shop):
    first = shop.up_json("a")
    second = shop.up_json("a")
    assert second["ports"] == first["ports"] and second["resumed"] is True
    assert second["duration_s"] < 0.5
    assert shop.devup("down", "a").returncode == 0


def test_stop_then_up_resumes_with_same_ports_and_data(shop):
    first = shop.up_json("a")
    [container] = world.labelled("container", repo_id=shop.repo_id, session="a")
    world.docker("exec", container, "sh", "-c", "echo precious > /data/file")
    stopped = shop.devup("stop", "a", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert world.running_containers(repo_id=shop.repo_id, session="a") == []
    assert world.tagged_processes(repo_id=shop.repo_id, session="a") == []
    assert json.loads(shop.devup("ls", "--json").stdout)[0]["status"] == "stopped"
    assert shop.devup("status", "a").returncode == 1
    again = shop.up_json("a")
    assert again["ports"] == first["ports"] and again["resumed"] is True
    [container] = world.labelled("container", repo_id=shop.repo_id, session="a")
    assert world.docker("exec", container, "cat", "/data/file").strip() == "precious"
    assert shop.devup("status", "a").returncode == 0
    assert shop.devup("down", "a").returncode == 0


def test_parallel_sessions_are_isolated_and_down_leaves_others(shop):
    with ThreadPoolExecutor(3) as pool:
        docs = list(pool.map(lambda n: shop.up_json(n), ["p1", "p2", "p3"]))
    ports = [p for d in docs for k, p in d["ports"].items() if k != "STORE_8080"]
    assert len(ports) == len(set(ports)) == 6
    assert len({tuple(d["projects"]) for d in docs}) == 3
    assert len({d["worktree"] for d in docs}) == 3
    assert shop.devup("down", "p2").returncode == 0
    for name, doc in (("p1", docs[0]), ("p3", docs[2])):
        assert world.running_containers(repo_id=shop.repo_id, session=name)
        assert get(doc["ports"]["STORE"]).strip() == name
        assert shop.devup("status", name).returncode == 0
    for name in ("p1", "p3"):
        assert shop.devup("down", name).returncode == 0


def test_down_refuses_a_dirty_worktree_unless_forced(shop):
    shop.up_json("a")
    wt = shop.worktree("a")
    (wt / "work.txt").write_text("unsaved")
    refused = shop.devup("down", "a")
    assert refused.returncode == 1 and "uncommitted" in refused.stderr
    assert (wt / "work.txt").exists() and world.running_containers(repo_id=shop.repo_id, session="a")
    kept = shop.devup("down", "a", "--keep-worktree")
    assert kept.returncode == 0, kept.stderr
    assert (wt / "work.txt").read_text() == "unsaved"
    assert world.labelled("container", repo_id=shop.repo_id, session="a") == []


def test_down_of_a_missing_session_exits_0(shop):
    result = shop.devup("down", "ghost")
    assert result.returncode == 0 and "nothing to do" in result.stdout


def test_existing_branch_is_checked_out_and_survives_rollback(shop):
    world.git(shop.path, "branch", "feature")
    sha = world.git(shop.path, "rev-parse", "feature").strip()
    failed = shop.devup("up", "f", "--branch", "feature", env={"DEVUP_FAULT": "raise@after:group:infra"})
    assert failed.returncode == 1, failed.stderr
    assert "feature" in world.branches(shop.path)
    assert world.git(shop.path, "rev-parse", "feature").strip() == sha
    assert shop.worktree("f") not in world.worktree_paths(shop.path)


def test_foreign_directory_at_worktree_path_is_left_alone(shop):
    foreign = shop.worktree("a")
    foreign.mkdir(parents=True)
    (foreign / "mine.txt").write_text("not devup's")
    result = shop.devup("up", "a")
    assert result.returncode == 2, result.stderr
    assert "not this session's worktree" in result.stderr
    assert (foreign / "mine.txt").read_text() == "not devup's"
    assert "a" not in world.branches(shop.path)


def test_hook_failure_names_command_exit_code_and_output(make):
    repo = make('[hooks]\npost_create = "echo first-line; echo boom >&2; exit 7"\n')
    result = repo.devup("up", "h", "--mode", "host")
    assert result.returncode == 1
    assert "post_create" in result.stderr and "exit 7" in result.stderr.replace("exited", "exit")
    assert "echo first-line" in result.stderr and "boom" in result.stderr
    assert repo.worktree("h") not in world.worktree_paths(repo.path)
    assert "h" not in world.branches(repo.path)


def test_keep_on_failure_exits_5_and_down_cleans_up(shop):
    result = shop.devup(
        "up", "k", "--on-failure", "keep", "--json", env={"DEVUP_FAULT": "raise@before:post_up"}
    )
    assert result.returncode == 5, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "kept" and doc["error"]["step"] == "post_up"
    assert world.running_containers(repo_id=shop.repo_id, session="k")
    assert shop.worktree("k").exists()
    down = shop.devup("down", "k")
    assert down.returncode == 0, down.stderr
    assert world.labelled("container", repo_id=shop.repo_id, session="k") == []
    assert world.labelled("volume", repo_id=shop.repo_id, session="k") == []
    assert world.tagged_processes(repo_id=shop.repo_id, session="k") == []
    assert not shop.worktree("k").exists() and "k" not in world.branches(shop.path)


def test_container_mode_runs_only_groups(shop):
    doc = shop.up_json("c", "--mode", "container")
    assert doc["mode"] == "container" and "WEB" not in doc["ports"]
    assert world.tagged_processes(repo_id=shop.repo_id, session="c") == []
    assert shop.devup("down", "c").returncode == 0


def test_host_mode_needs_no_engine(make):
    repo = make(
        f'[services.api]\nrun = "{HTTP_SERVICE}"\nport = true\nready = {{ tcp = true }}\n'
        '[groups.never]\nfiles = ["missing.yaml"]\n'
    )
    doc = repo.up_json("h", "--mode", "host", env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    get(doc["ports"]["API"])
    assert doc["projects"] == []
    assert repo.devup("down", "h", env={"DOCKER_HOST": "tcp://127.0.0.1:1"}).returncode == 0
    assert world.tagged_processes(repo_id=repo.repo_id, session="h") == []


def test_env_formats(shop):
    doc = shop.up_json("e")
    as_json = json.loads(shop.devup("env", "e", "--format", "json").stdout)
    assert as_json["DEVUP_SESSION"] == "e" and as_json["DEVUP_PORT_WEB"] == str(doc["ports"]["WEB"])
    assert as_json["DEVUP_RESUMED"] == "0" and as_json["DEVUP_WORKTREE"] == doc["worktree"]
    shell = shop.devup("env", "e", "--format", "shell").stdout
    evaluated = subprocess.run(
        ["sh", "-c", shell + 'echo "$STORE_URL"'], capture_output=True, text=True
    ).stdout
    assert evaluated.strip() == f"http://127.0.0.1:{doc['ports']['STORE']}/"
    dotenv = shop.devup("env", "e").stdout
    assert f"DEVUP_PORT_STORE={doc['ports']['STORE']}" in dotenv.splitlines()
    assert shop.devup("down", "e").returncode == 0


def test_commands_work_from_inside_a_worktree(shop):
    doc = shop.up_json("w")
    listing = shop.devup("ls", "--json", cwd=shop.worktree("w"))
    assert [s["session"] for s in json.loads(listing.stdout)] == ["w"]
    assert json.loads(listing.stdout)[0]["ports"] == doc["ports"]
    assert shop.devup("down", "w", cwd=shop.path).returncode == 0


def test_resume_moves_off_a_port_a_foreign_listener_took(make):
    import socket

    repo = make(
        f'[project]\nmode = "host"\n[services.web]\nrun = "{HTTP_SERVICE}"\nport = true\nready = {{ http = "/" }}\n'
    )
    first = repo.up_json("r")
    assert repo.devup("stop", "r").returncode == 0
    foreign = socket.socket()
    foreign.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    foreign.bind(("127.0.0.1", first["ports"]["WEB"]))
    foreign.listen()
    try:
        again = repo.up_json("r")
        assert again["ports"]["WEB"] != first["ports"]["WEB"]
        get(again["ports"]["WEB"])  # the session's own server answers on its new port
        assert repo.devup("status", "r").returncode == 0
        # The old port still belongs to the foreign listener: a connection to it reaches that
        # socket (devup neither killed it nor bound next to it).
        foreign.settimeout(5)
        with socket.create_connection(("127.0.0.1", first["ports"]["WEB"]), timeout=5):
            conn, _ = foreign.accept()
            conn.close()
    finally:
        foreign.close()
    assert repo.devup("down", "r").returncode == 0


def test_foreign_compose_objects_under_the_sessions_project_name_are_refused(shop):
    # What compose would name the session's volume: project `<slug>-<6 hex of repo id>_<session>_<group>`.
    volume = f"shop-{shop.repo_id[:6]}_x_infra_data"
    world.docker("volume", "create", volume)
    try:
        result = shop.devup("up", "x")
        assert result.returncode == 2, result.stderr
        assert volume in result.stderr and "did not create" in result.stderr
        assert volume in world.docker("volume", "ls", "-q").split()
        assert shop.worktree("x") not in world.worktree_paths(shop.path) and "x" not in world.branches(
            shop.path
        )
    finally:
        subprocess.run(["docker", "volume", "rm", volume], capture_output=True)


def test_down_works_when_the_config_has_since_broken(shop):
    shop.up_json("b")
    (shop.path / "devup.toml").write_text("[project\n")
    assert shop.devup("up", "other").returncode == 2
    result = shop.devup("down", "b")
    assert result.returncode == 0, result.stderr
    assert world.labelled("container", repo_id=shop.repo_id, session="b") == []
    assert not shop.worktree("b").exists()


def test_down_stops_a_hooks_background_process(make):
    repo = make('[project]\nmode = "host"\n[hooks]\npost_up = "sleep 300 >/dev/null 2>&1 &"\n')
    repo.up_json("bg")
    assert [p.name() for p in world.tagged_processes(repo_id=repo.repo_id, session="bg")] == ["sleep"]
    assert repo.devup("down", "bg").returncode == 0
    assert world.tagged_processes(repo_id=repo.repo_id, session="bg") == []


def test_status_finishes_an_interrupted_run_first(shop):
    killed = shop.devup("up", "z", env={"DEVUP_FAULT": "kill@after:group:infra"})
    assert killed.returncode == -9
    assert world.labelled("container", repo_id=shop.repo_id, session="z")  # the kill left them
    assert [s["status"] for s in json.loads(shop.devup("ls", "--json").stdout)] == ["interrupted"]
    result = shop.devup("status", "z")
    assert result.returncode == 2 and "no session named z" in result.stderr
    for kind in ("container", "network", "volume"):
        assert world.labelled(kind, repo_id=shop.repo_id, session="z") == []
    assert shop.worktree("z") not in world.worktree_paths(shop.path) and "z" not in world.branches(shop.path)
    assert json.loads(shop.devup("ls", "--json").stdout) == []


def test_up_of_a_kept_session_is_refused_until_down(shop):
    kept = shop.devup("up", "k2", "--on-failure", "keep", env={"DEVUP_FAULT": "raise@before:post_up"})
    assert kept.returncode == 5
    again = shop.devup("up", "k2")
    assert again.returncode == 2 and "devup down k2" in again.stderr
    assert shop.worktree("k2").exists() and world.running_containers(repo_id=shop.repo_id, session="k2")
    assert shop.devup("down", "k2").returncode == 0
    assert not shop.worktree("k2").exists() and "k2" not in world.branches(shop.path)


def test_compose_files_missing_from_the_branch_are_a_preflight_error(make):
    repo = make('[groups.new]\nfiles = ["compose/new.yaml"]\n')
    repo.write("compose/new.yaml", busybox_web("svc"))  # written, never committed
    result = repo.devup("up", "u")
    assert result.returncode == 2, result.stderr
    assert "not on branch u" in result.stderr and "commit" in result.stderr
    assert "u" not in world.branches(repo.path) and repo.worktree("u") not in world.worktree_paths(repo.path)


def test_native_service_that_loses_its_port_at_bind_is_retried(make):
    # The first start fails the way a real server does when its port was taken between
    # devup's check and its bind; devup leases another port and starts it again.
    flaky = (
        'test -e "$DEVUP_WORKTREE/../tried-$DEVUP_SESSION" || '
        '{ echo "$PORT" > "$DEVUP_WORKTREE/../tried-$DEVUP_SESSION"; echo "OSError: [Errno 98] Address already in use"; exit 1; }; '
        f"exec {HTTP_SERVICE}"
    )
    repo = make(
        f'[project]\nmode = "host"\n[services.web]\nrun = """{flaky}"""\nport = true\nready = {{ http = "/" }}\n'
    )
    doc = repo.up_json("p")
    refused = int((repo.worktree("p").parent / "tried-p").read_text())
    assert doc["ports"]["WEB"] != refused  # it moved off the port it could not bind
    get(doc["ports"]["WEB"])
    assert f"DEVUP_PORT_WEB={doc['ports']['WEB']}" in (repo.worktree("p") / ".env.devup").read_text()
    assert not world.port_bound(refused)
    assert repo.devup("down", "p").returncode == 0


def test_an_adopted_worktree_survives_down(shop):
    wt = shop.worktree("ad")
    world.git(shop.path, "worktree", "add", "-q", "-b", "ad", str(wt))
    (wt / "mine.txt").write_text("made by hand")
    doc = shop.up_json("ad")
    assert doc["worktree"] == str(wt)
    down = shop.devup("down", "ad")
    assert down.returncode == 0, down.stderr
    assert wt in world.worktree_paths(shop.path) and (wt / "mine.txt").read_text() == "made by hand"
    assert "ad" in world.branches(shop.path)
    assert world.labelled("container", repo_id=shop.repo_id, session="ad") == []
    world.git(shop.path, "worktree", "remove", "--force", str(wt))


def test_up_of_an_up_session_still_rejects_an_edited_bad_config(make):
    toml = '[project]\nmode = "host"\n[services.job]\nrun = "exec sleep 300"\n'
    repo = make(toml)
    first = repo.up_json("cf")
    [proc] = world.tagged_processes(repo_id=repo.repo_id, session="cf")
    (repo.path / "devup.toml").write_text(toml + "[servces.typo]\nrun = 'true'\n")
    bad = repo.devup("up", "cf")
    assert bad.returncode == 2, bad.stderr
    assert "servces" in bad.stderr and "devup.toml" in bad.stderr
    assert [p.pid for p in world.tagged_processes(repo_id=repo.repo_id, session="cf")] == [proc.pid]
    (repo.path / "devup.toml").write_text(toml)
    again = repo.up_json("cf")
    assert again["ports"] == first["ports"] and again["resumed"] is True
    assert [p.pid for p in world.tagged_processes(repo_id=repo.repo_id, session="cf")] == [proc.pid]
    assert repo.devup("down", "cf").returncode == 0


def test_down_stops_services_in_reverse_dependency_order(make):
    # Each service notes when SIGTERM has finished it; api takes a moment, so in parallel db
    # would finish first. api depends on db: api must be gone before db is asked to stop.
    def svc(name: str, delay: str) -> str:
        log = '"$DEVUP_WORKTREE/../stops-$DEVUP_SESSION"'
        return f"trap 'sleep {delay}; echo {name} >> {log}; exit 0' TERM; while :; do sleep 0.05; done"

    repo = make(
        '[project]\nmode = "host"\n'
        f'[services.db]\nrun = """{svc("db", "0")}"""\n'
        f'[services.api]\nrun = """{svc("api", "0.5")}"""\ndepends_on = ["db"]\n'
    )
    repo.up_json("ord")
    assert len(world.tagged_processes(repo_id=repo.repo_id, session="ord")) >= 2
    assert repo.devup("down", "ord").returncode == 0
    assert (repo.tmp / "proj-worktrees" / "stops-ord").read_text().split() == ["api", "db"]
    assert world.tagged_processes(repo_id=repo.repo_id, session="ord") == []


def test_down_stops_every_service_after_the_dependencies_were_reversed(make):
    # api runs with an empty environment, so only its recorded pid finds it (no tag to sweep).
    def toml(api_deps: str, db_deps: str) -> str:
        return (
            '[project]\nmode = "host"\n'
            f'[services.api]\nrun = "exec env -i sleep 300"\ndepends_on = {api_deps}\n'
            f'[services.db]\nrun = "exec sleep 300"\ndepends_on = {db_deps}\n'
        )

    repo = make(toml('["db"]', "[]"))
    repo.up_json("rev")
    record = json.loads((repo.tmp / "state" / "repos" / repo.repo_id / "sessions" / "rev.json").read_text())
    api_pid, db_pid = record["services"]["api"]["pid"], record["services"]["db"]["pid"]
    os.kill(db_pid, 9)
    (repo.path / "devup.toml").write_text(toml("[]", '["api"]'))
    repo.up_json("rev")  # api is kept running, db is started again: the order is now reversed
    try:
        assert repo.devup("down", "rev").returncode == 0
        assert not world.pid_running(api_pid)
    finally:
        with contextlib.suppress(ProcessLookupError):  # untagged: the leak check cannot see it
            os.kill(api_pid, 9)
    assert world.tagged_processes(repo_id=repo.repo_id, session="rev") == []
