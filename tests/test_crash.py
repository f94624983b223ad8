"""Crashes, signals, contention and damaged state (SPEC §5.3, §5.5, §5.8; exit codes 3, 4, 130).

devup is SIGKILLed at every step boundary and in the middle of slow work, interrupted with
SIGINT/SIGTERM, raced against itself, and given torn or corrupt state; afterwards the world is
checked through git, the engine and /proc.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from tests import world
from tests.conftest import HTTP_SERVICE, Repo, isolated, port_range
from tests.test_faults import (
    STEPS,
    assert_no_trace,
    assert_resume_intact,
    compose_service,
    dirty_stopped_session,
    down,
    make_full,
    run_json,
    seed_marker,
    session_processes,
    undo_marker,
)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

# A hook that waits until the test creates the file named by $GATE (at most ~60 s).
GATED = 'i=0; while [ ! -e \\"$GATE\\" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done'


def wait_until(what: str, check: Callable[[], object], timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def unit_processes(repo: Repo, name: str, unit: str) -> list[psutil.Process]:
    found = []
    for proc in world.tagged_processes(repo_id=repo.repo_id, session=name):
        try:
            if proc.environ().get("DEVUP_UNIT") == unit:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def sigkill(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def host_toml(*, service: str = HTTP_SERVICE, ready: str = "{ tcp = true }", hooks: str = "") -> str:
    return f"""
{isolated("host")}

[services.web]
run = "{service}"
port = true
ready = {ready}
ready_timeout = 60
stop_timeout = 5

[hooks]
{hooks}
"""


# --- §5.3: SIGKILL at every step boundary, then recover / up / down ---------------------------

# Each boundary is followed by one of the commands that must finish the rollback; together
# they cover early, middle and late boundaries for each command.
# Every boundary, each followed in turn by `recover`, a plain `up` and `down` (SPEC §5.3:
# any later devup command on the session finishes the rollback).
KILLS = [(step, then) for step in STEPS for then in ("recover", "up", "down")]


@pytest.fixture
def full(make) -> Repo:
    return make_full(make)


@pytest.mark.parametrize(("step", "then"), KILLS, ids=[f"{s}-then-{t}" for s, t in KILLS])
def test_sigkill_at_every_step_boundary(full, step, then):
    killed = full.devup("up", "k", env={"DEVUP_FAULT": f"kill@after:{step}"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    reached = STEPS.index(step)
    # The kill left real things behind for recovery to remove.
    assert full.worktree("k").exists() == (reached >= STEPS.index("worktree"))
    if reached >= STEPS.index("group:db"):
        assert world.labelled("container", repo_id=full.repo_id, session="k")
        assert world.labelled("volume", repo_id=full.repo_id, session="k")
    if reached >= STEPS.index("service:web"):
        assert unit_processes(full, "k", "service:web")
    if reached >= STEPS.index("routes") and shutil.which("caddy"):  # hostnames: on where caddy is
        assert f"devup_{full.repo_id}_k" in world.router_routes(Path(os.environ["DEVUP_HOME"]))

    if then == "up":
        doc = full.up_json("k")
        assert doc["status"] == "up" and doc["resumed"] is False
        assert len(world.running_containers(repo_id=full.repo_id, session="k")) == 2
        assert unit_processes(full, "k", "service:web")
        down(full, "k")
        assert_no_trace(full, "k", rolled_back=False)
        return
    result = full.devup(then, "k")
    assert result.returncode == 0, result.stderr
    assert_no_trace(full, "k")
    assert undo_marker(full, "k").exists() == (reached >= STEPS.index("post_up"))


def test_sigkill_during_a_resume_keeps_worktree_and_volumes(full):
    dirty_stopped_session(full, "s")
    volumes = world.labelled("volume", repo_id=full.repo_id, session="s")
    head = world.git(full.worktree("s"), "rev-parse", "HEAD")
    killed = full.devup("up", "s", env={"DEVUP_FAULT": "kill@after:group:app"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert world.running_containers(repo_id=full.repo_id, session="s")
    result = full.devup("recover", "s")
    assert result.returncode == 0, result.stderr
    assert_resume_intact(full, "s", volumes=volumes, head=head)
    down(full, "s", "--force")
    assert_no_trace(full, "s", rolled_back=False)


# --- §5.3: SIGKILL in the middle of slow work -------------------------------------------------


def test_sigkill_in_a_slow_hook_then_recover_stops_its_children(make):
    repo = make_full(make, hooks={"pre_spawn": '"sleep 300 >/dev/null 2>&1 & exec sleep 30"'})
    proc = repo.popen("up", "h")
    wait_until(
        "the pre_spawn hook",
        lambda: (
            {tuple(p.cmdline()) for p in unit_processes(repo, "h", "hook:pre_spawn")}
            >= {("sleep", "300"), ("sleep", "30")}
        ),
    )
    sigkill(proc)
    assert len(unit_processes(repo, "h", "hook:pre_spawn")) == 2  # the hook outlives devup
    result = repo.devup("recover", "h")
    assert result.returncode == 0, result.stderr
    assert_no_trace(repo, "h")


def test_sigkill_during_compose_up_then_recover(make):
    slow = compose_service("store", port=8080, volume="data", delay=3)
    repo = make_full(make, files={"compose/db.yaml": slow})
    proc = repo.popen("up", "c")
    wait_until("a container", lambda: world.labelled("container", repo_id=repo.repo_id, session="c"))
    assert proc.poll() is None
    sigkill(proc)
    result = repo.devup("recover", "c")
    assert result.returncode == 0, result.stderr
    # This includes the `docker compose up` devup left running: none is left to bring a
    # container back after recovery removed them.
    assert_no_trace(repo, "c")


def test_sigkill_during_a_readiness_wait_then_recover(make):
    repo = make_full(make, web="exec sleep 300")
    proc = repo.popen("up", "w")
    wait_until("the web process", lambda: unit_processes(repo, "w", "service:web"))
    time.sleep(0.3)  # well inside the readiness wait
    sigkill(proc)
    assert unit_processes(repo, "w", "service:web")
    result = repo.devup("recover", "w")
    assert result.returncode == 0, result.stderr
    assert_no_trace(repo, "w")


# --- §5.8: SIGINT / SIGTERM roll back and exit 130 --------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_compose_up_rolls_back(make, sig):
    slow = compose_service("store", port=8080, volume="data", delay=3)
    repo = make_full(make, files={"compose/db.yaml": slow})
    proc = repo.popen("up", "g", "--json")
    wait_until("a container", lambda: world.labelled("container", repo_id=repo.repo_id, session="g"))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    doc = json.loads(out)
    assert doc["status"] == "interrupted" and doc["leftovers"] == []
    assert doc["error"]["message"] == f"interrupted by {sig.name}"
    assert "interrupted" in err
    assert_no_trace(repo, "g")


def test_second_sigint_stops_the_rollback_and_recover_finishes(make):
    undo = "echo undoing > $DEVUP_WORKTREE/../undoing; sleep 3; echo undone > $DEVUP_WORKTREE/../undone"
    repo = make(host_toml(service="exec sleep 300", hooks=f'pre_spawn = {{ run = "true", undo = "{undo}" }}'))
    marks = repo.worktree("x").parent
    proc = repo.popen("up", "x", "--json")
    wait_until("the web process", lambda: unit_processes(repo, "x", "service:web"))
    proc.send_signal(signal.SIGINT)
    wait_until("the slow undo", lambda: (marks / "undoing").exists())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    doc = json.loads(out)
    assert doc["status"] == "rollback_incomplete"
    assert any("undo of hook pre_spawn" in lo for lo in doc["leftovers"])
    assert any("worktree" in lo for lo in doc["leftovers"])
    assert not (marks / "undone").exists()
    assert repo.worktree("x").exists()  # the rollback stopped where it was told to
    listing = json.loads(repo.devup("ls", "--json").stdout)
    assert [(s["session"], s["status"]) for s in listing] == [("x", "interrupted")]
    result = repo.devup("recover", "x")
    assert result.returncode == 0, result.stderr
    assert (marks / "undone").exists()
    assert_no_trace(repo, "x")


# --- exit code 3: an inverse that fails leaves the journal for `recover` ----------------------


def test_failed_inverse_exits_3_and_recover_finishes_once_fixed(make, tmp_path):
    ok = tmp_path / "undo-may-run"
    undo = 'test -e \\"$UNDO_OK\\" || { echo cannot-unseed; exit 9; }'
    # pre_up's undo runs in the main checkout, which the rollback keeps: it can be retried there.
    # (An undo whose folder the rollback removed is reported once and never run elsewhere.)
    repo = make(host_toml(hooks=f'pre_up = {{ run = "true", undo = "{undo}" }}'))
    env = {"UNDO_OK": str(ok)}
    result, doc = run_json(repo, "up", "f", env={**env, "DEVUP_FAULT": "raise@after:service:web"})
    assert result.returncode == 3, result.stderr
    assert doc["status"] == "rollback_incomplete" and doc["error"]["step"] == "service:web"
    [leftover] = doc["leftovers"]
    assert "undo of hook pre_up" in leftover and "exited 9" in leftover and "cannot-unseed" in leftover
    assert "devup recover f" in result.stderr
    # Everything else was undone past the failure.
    assert not repo.worktree("f").exists() and "f" not in world.branches(repo.path)
    assert session_processes(repo, "f") == []
    # Neither `recover` nor a new `up` forgets the unfinished rollback while the cause remains.
    again = repo.devup("recover", "f")
    assert again.returncode == 3 and "cannot-unseed" in again.stdout + again.stderr
    for args in (("up", "f"), ("down", "f")):
        blocked = repo.devup(*args)
        assert blocked.returncode == 3, (args, blocked.stderr)
        assert "cannot-unseed" in blocked.stderr
    blocked, doc = run_json(repo, "down", "f")
    assert blocked.returncode == 3 and doc["status"] == "rollback_incomplete" and doc["session"] == "f"
    assert len(doc["leftovers"]) == 1 and "cannot-unseed" in doc["leftovers"][0]
    assert "the rollback of an interrupted run of f is incomplete" in blocked.stderr
    assert not repo.worktree("f").exists()
    ok.touch()
    fixed = repo.devup("recover", "f")
    assert fixed.returncode == 0, fixed.stderr
    assert_no_trace(repo, "f")


# --- exit code 4: one run per session at a time -----------------------------------------------


def test_concurrent_runs_of_one_session_exit_4_and_change_nothing(make, tmp_path):
    gate = tmp_path / "gate"
    repo = make(host_toml(hooks=f'pre_up = "{GATED}"'))
    env = {"GATE": str(gate)}
    first = repo.popen("up", "a", "--json", env=env)
    wait_until("the slow pre_up hook", lambda: unit_processes(repo, "a", "hook:pre_up"))
    for args in (("up", "a"), ("down", "a"), ("down", "a", "--force"), ("stop", "a"), ("recover", "a")):
        t0 = time.monotonic()
        result, doc = run_json(repo, *args, env=env)
        assert result.returncode == 4, (args, result.stderr)
        assert time.monotonic() - t0 < 10  # at once, not after the first run
        assert "busy" in result.stderr
        assert first.poll() is None and unit_processes(repo, "a", "hook:pre_up")
    assert not repo.worktree("a").exists()  # the first run has not got there yet; nobody else did
    gate.touch()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    doc = json.loads(out)
    assert doc["status"] == "up" and repo.worktree("a").is_dir()
    assert unit_processes(repo, "a", "service:web")
    down(repo, "a")
    assert_no_trace(repo, "a", rolled_back=False)


# --- §5.5: ten sessions at once ---------------------------------------------------------------


def test_ten_sessions_at_once_get_disjoint_ports(make):
    repo = make(host_toml())
    names = [f"s{i}" for i in range(10)]
    procs = {n: repo.popen("up", n, "--json") for n in names}
    docs = {}
    for n, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, (n, err)
        docs[n] = json.loads(out)
    ports = [d["ports"]["WEB"] for d in docs.values()]
    assert len(set(ports)) == 10
    assert len({d["worktree"] for d in docs.values()}) == 10
    for n in names:  # each session's own server listens on its own port
        listening = {
            c.laddr.port for p in unit_processes(repo, n, "service:web") for c in p.net_connections("tcp")
        }
        assert docs[n]["ports"]["WEB"] in listening, n
    assert sorted(s["session"] for s in json.loads(repo.devup("ls", "--json").stdout)) == names
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda n: repo.devup("down", n), names))
    assert [r.returncode for r in results] == [0] * 10, [r.stderr for r in results if r.returncode]
    for n in names:
        assert not repo.worktree(n).exists()
        assert world.tagged_processes(repo_id=repo.repo_id, session=n) == []


# --- §5.7: a port taken between lease and bind ------------------------------------------------


def test_port_taken_between_lease_and_bind_moves_to_another(make, tmp_path):
    gate, port_file = tmp_path / "gate", tmp_path / "port"
    hook = f'echo $DEVUP_PORT_STORE > \\"$PORT_FILE\\"; {GATED}'
    repo = make(
        f"""
{isolated("container", ports=port_range(8))}
[groups.db]
files = ["compose/db.yaml"]
[hooks]
post_create = "{hook}"
""",
        {"compose/db.yaml": compose_service("store", port=8080, volume=None)},
    )
    proc = repo.popen("up", "p", "--json", env={"GATE": str(gate), "PORT_FILE": str(port_file)})
    leased = int(wait_until("the leased port", lambda: port_file.exists() and port_file.read_text().strip()))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("0.0.0.0", leased))
        listener.listen()
        gate.touch()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        doc = json.loads(out)
        moved = doc["ports"]["STORE"]
        assert moved != leased and doc["ports"]["STORE_8080"] == moved
        assert f"DEVUP_PORT_STORE={moved}" in Path(doc["env_file"]).read_text().splitlines()
        [container] = world.running_containers(repo_id=repo.repo_id, session="p")
        assert list(world.published_ports(container).values()) == [str(moved)]
        # Our listener is untouched: still bound, and it is what answers on its port.
        with socket.create_connection(("127.0.0.1", leased), timeout=5):
            conn, _ = listener.accept()
            conn.close()
        assert "taken by someone else" in err
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    down(repo, "p")
    assert_no_trace(repo, "p", rolled_back=False)


# --- §5.3: torn journals and corrupt session files never block --------------------------------


def state_dir(repo: Repo) -> Path:
    return Path(os.environ["DEVUP_HOME"]) / "repos" / repo.repo_id


def test_torn_last_journal_line_still_recovers(full):
    killed = full.devup("up", "j", env={"DEVUP_FAULT": "kill@after:group:app"})
    assert killed.returncode == -signal.SIGKILL
    journal = state_dir(full) / "journals" / "j.jsonl"
    assert journal.is_file()
    with open(journal, "ab") as f:
        f.write(b'{"op": "push", "id": 99, "undo": {"kind": "compose_do')  # a write cut short
    listing = json.loads(full.devup("ls", "--json").stdout)
    assert [(s["session"], s["status"]) for s in listing] == [("j", "interrupted")]
    result = full.devup("recover", "j")
    assert result.returncode == 0, result.stderr
    assert_no_trace(full, "j")


def test_corrupt_session_file_does_not_block_other_sessions(make):
    repo = make(host_toml())
    repo.up_json("a")
    record = state_dir(repo) / "sessions" / "a.json"
    original = record.read_text()
    record.write_text('{"session": "a", "status": "up", "por')
    try:
        listed = repo.devup("ls", "--json")
        assert listed.returncode == 0, listed.stderr
        assert "a.json" in listed.stderr  # reported, not hidden
        assert json.loads(listed.stdout) == []
        doc = repo.up_json("b")
        assert doc["status"] == "up" and unit_processes(repo, "b", "service:web")
        names = [s["session"] for s in json.loads(repo.devup("ls", "--json").stdout)]
        assert names == ["b"]
        down(repo, "b")
        assert not repo.worktree("b").exists()
        assert world.tagged_processes(repo_id=repo.repo_id, session="b") == []
        # The corrupt session itself is refused with a clear message, not a crash.
        refused = repo.devup("down", "a")
        assert refused.returncode != 0 and "corrupt" in refused.stderr
        assert "Traceback" not in refused.stderr
        assert unit_processes(repo, "a", "service:web")  # nothing was touched
    finally:
        record.write_text(original)
    down(repo, "a")
    assert world.tagged_processes(repo_id=repo.repo_id) == []
    assert seed_marker(repo, "a").exists() is False
