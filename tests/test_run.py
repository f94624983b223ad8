"""The one run and the one error boundary (issue 20): interrupts anywhere, missing sessions, an
engine that does not answer, each checked from outside (exit code, stderr, git, the engine)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import world
from tests.conftest import BUSYBOX, HTTP_SERVICE, busybox_web, isolated


def _interrupt_after(repo, delay: float, *args: str) -> subprocess.CompletedProcess[str]:
    proc = repo.popen(*args)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _host_repo(make):
    """A host-mode repository whose `up` spends a while in preflight and in its steps: 300
    copied files (checked and copied one by one) and a native service with a readiness wait."""
    files = {f"data/f{i:03}.txt": f"{i}\n" for i in range(300)}
    repo = make(
        isolated("host")
        + '[worktree]\ncopy = ["data/*"]\n'
        + f'[services.web]\nrun = "sleep 0.3; {HTTP_SERVICE}"\nport = true\nready = {{ http = "/" }}\n',
        files={".gitignore": "data/\n"},
    )
    for rel, text in files.items():
        repo.write(rel, text)
    return repo


def test_sigint_at_twenty_moments_of_up_is_130_or_success_never_a_traceback(make) -> None:
    """SPEC §5.8 and §2: SIGINT during preflight, recovery or any step is exit 130 with nothing
    left; one that comes after the last step leaves a session that is up (exit 0)."""
    repo = _host_repo(make)
    rng = random.Random(20)
    seen = set()
    for delay in sorted(rng.uniform(0.3, 2.5) for _ in range(20)):  # see the snapshot test below
        result = _interrupt_after(repo, delay, "up", "s")
        assert "Traceback" not in result.stderr, (delay, result.stderr)
        assert result.returncode in (0, 130), (delay, result.returncode, result.stderr[-2000:])
        seen.add(result.returncode)
        if result.returncode == 130:
            assert not repo.worktree("s").exists(), delay
            assert "s" not in world.branches(repo.path), delay
            assert world.tagged_processes(repo_id=repo.repo_id, session="s") == [], delay
            assert repo.devup("status", "s").returncode == 2, delay  # no record: no session
        else:
            assert repo.devup("down", "s", "--force").returncode == 0
            world.git(repo.path, "branch", "-D", "s")  # down keeps it; the next run starts afresh
    assert 130 in seen  # the delays do reach into the run


def test_a_session_that_does_not_exist_is_exit_2_for_every_command_but_down(make) -> None:
    repo = make(isolated("host"))
    for args in (
        ["status", "nope"],
        ["stop", "nope"],
        ["env", "nope"],
        ["logs", "nope"],
        ["path", "nope"],
        ["exec", "nope", "--", "true"],
        ["snapshot", "create", "nope"],
        ["snapshot", "restore", "nope", "snap"],
    ):
        result = repo.devup(*args)
        assert result.returncode == 2, (args, result.returncode, result.stderr)
        assert "no session named nope" in result.stderr, args
        assert "Traceback" not in result.stderr
    assert repo.devup("down", "nope").returncode == 0


def test_an_engine_that_does_not_answer_is_exit_1_naming_it(make, tmp_path: Path) -> None:
    repo = make(
        isolated("container") + '[groups.app]\nfiles = ["compose.yaml"]\n', {"compose.yaml": busybox_web()}
    )
    gone = f"unix://{tmp_path}/no-engine.sock"
    for args in (["up", "s"], ["snapshot", "ls"]):
        result = repo.devup(*args, env={"DOCKER_HOST": gone})
        assert result.returncode == 1, (args, result.returncode, result.stderr)
        assert gone in result.stderr and "does not answer" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and "a bug in devup" not in result.stderr
    assert not repo.worktree("s").exists() and "s" not in world.branches(repo.path)


@pytest.mark.docker
def test_sigint_at_twenty_moments_of_snapshot_create_is_130_or_success(make, engine) -> None:
    """SPEC §5.8/§5.9: an interrupted snapshot leaves no snapshot volume behind and the
    session's containers running (never paused); a finished one is listed, complete."""
    repo = make(
        isolated("container") + '[groups.app]\nfiles = ["compose.yaml"]\n', {"compose.yaml": busybox_web()}
    )
    assert repo.devup("up", "s").returncode == 0
    world.docker(
        "run",
        "--rm",
        "-v",
        f"{_data_volume(repo)}:/d",
        BUSYBOX,
        "sh",
        "-c",
        "head -c 20000000 /dev/zero > /d/blob",
    )
    rng = random.Random(21)
    try:
        # From 0.3 s: a SIGINT before the interpreter has even set up its handlers kills any
        # Python program (-2); devup's contract starts once devup runs.
        for n, delay in enumerate(sorted(rng.uniform(0.3, 2.0) for _ in range(20))):
            result = _interrupt_after(repo, delay, "snapshot", "create", "s", "--as", f"k{n}")
            assert "Traceback" not in result.stderr, (delay, result.stderr)
            assert result.returncode in (0, 130), (delay, result.returncode, result.stderr[-2000:])
            volumes = world.labelled("volume", repo_id=repo.repo_id)
            made = [v for v in volumes if f"_k{n}" in v]
            if result.returncode == 130:
                assert made == [], (delay, made)
            else:
                listed = json.loads(repo.devup("snapshot", "ls", "--json").stdout)
                assert f"k{n}" in [s["name"] for s in listed]
                assert repo.devup("snapshot", "rm", f"k{n}").returncode == 0
            paused = world.docker(
                "ps", "-q", "--filter", f"label=dev.devup.repo={repo.repo_id}", "--filter", "status=paused"
            )
            assert paused == "", delay
    finally:
        assert repo.devup("down", "s", "--force").returncode == 0


def _data_volume(repo) -> str:
    (name,) = [v for v in world.labelled("volume", repo_id=repo.repo_id) if v.endswith("_data")]
    return name


@pytest.mark.docker
def test_a_group_rollback_waits_out_creates_still_in_flight(make, engine) -> None:
    """compose-corpus F1: compose fails on a container that asks for a runtime the engine lacks
    while the engine is still creating its siblings; the rollback must not report `rolled_back`
    while containers of the session appear afterwards (they did in 5 of 11 tries)."""
    services = ["services:"]
    for n in range(6):
        services += [f"  s{n}:", f"    image: {BUSYBOX}", '    command: ["sleep", "600"]']
    services += [
        "  bad:",
        f"    image: {BUSYBOX}",
        "    runtime: io.containerd.nope.v1",
        '    command: ["true"]',
    ]
    repo = make(
        isolated("container") + '[groups.app]\nfiles = ["compose.yaml"]\n',
        {"compose.yaml": "\n".join(services) + "\n"},
    )
    for attempt in range(3):
        result = repo.devup("up", f"w{attempt}", "--json")
        assert result.returncode in (1, 3), result.stderr
        doc = json.loads(result.stdout)
        time.sleep(2)  # anything still in flight has landed by now
        left = world.labelled("container", repo_id=repo.repo_id) + world.labelled(
            "network", repo_id=repo.repo_id
        )
        if doc["status"] == "rolled_back":
            assert left == [], (attempt, left)
        else:  # what could not be removed is said, never hidden
            assert doc["status"] == "rollback_incomplete" and doc["leftovers"], doc
            assert repo.devup("recover", f"w{attempt}").returncode == 0


@pytest.mark.docker
def test_a_snapshot_is_complete_only_when_its_manifest_counts_its_volumes_and_the_sweep_waits_for_its_writer(
    make, engine
) -> None:
    """code-review §5 bug 3: the incomplete-snapshot sweep could remove a volume that a running
    `create` had just copied, and the snapshot then looked complete with a volume missing."""
    from devup import remote, snapshots
    from devup.engine import volumes as adapter
    from devup.engine.labels import LABEL_REPO
    from devup.workspace import open_workspace

    repo = make(isolated("host"))
    ws, eng = open_workspace(repo.path), remote.current()
    base = {LABEL_REPO: repo.repo_id, snapshots.LABEL_SNAPSHOT: "s1", snapshots.LABEL_SOURCE: "gone"}
    vol = snapshots.volume_name(repo.repo_id, "s1", "g", "k")
    manifest = snapshots.manifest_name(repo.repo_id, "s1")
    try:
        adapter.create_volume(
            eng, vol, {**base, snapshots.LABEL_SNAP_GROUP: "g", snapshots.LABEL_SNAP_KEY: "k"}
        )
        with snapshots.lock(ws, "s1"):  # a `create` writing it
            snapshots.sweep_incomplete(ws, eng)
            assert adapter.volume_info(eng, vol) is not None
        adapter.create_volume(eng, manifest, {**base, snapshots.LABEL_MANIFEST: "2"})  # it counted two
        found = snapshots.find(ws, "s1", eng)
        assert found is not None and not found.complete
        snapshots.sweep_incomplete(ws, eng)  # nobody writes it now: what is left goes
        assert adapter.volume_info(eng, vol) is None and adapter.volume_info(eng, manifest) is None
    finally:
        for name in (vol, manifest):
            adapter.remove_volume(eng, name)


def test_snapshot_ls_of_a_host_mode_repository_needs_no_engine(make, tmp_path: Path) -> None:
    """SPEC §6: host mode needs no Docker; without compose groups there is no data to list."""
    repo = make(isolated("host"))
    result = repo.devup("snapshot", "ls", "--json", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def _interrupted_run_with_a_slow_undo(make, name: str):
    """A host-mode session whose `up` was SIGKILLed once its service ran: its journal holds the
    rollback, the pre_spawn hook's undo among it, which takes 3 s (marks before and after)."""
    undo = "echo undoing > $DEVUP_WORKTREE/../undoing; sleep 3; echo undone > $DEVUP_WORKTREE/../undone"
    repo = make(
        isolated("host")
        + '[services.web]\nrun = "exec sleep 300"\n'
        + f'[hooks]\npre_spawn = {{ run = "true", undo = "{undo}" }}\n'
    )
    proc = repo.popen("up", name)
    deadline = time.monotonic() + 60
    while not any(
        p.environ().get("DEVUP_UNIT") == "service:web"
        for p in world.tagged_processes(repo_id=repo.repo_id, session=name)
    ):
        assert time.monotonic() < deadline, "the service never started"
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=30)
    return repo, repo.worktree(name).parent


@pytest.mark.parametrize("command", [["down", "x"], ["recover", "x"], ["recover"], ["gc"], ["up", "x"]])
def test_sigint_while_a_command_finishes_an_interrupted_run_is_130_and_the_next_one_finishes(
    make, command: list[str]
) -> None:
    """SPEC §5.8: an interrupt during the recovery a command does first (its run's prologue)
    stops it where it is, exit 130 with no traceback (it was exit 3, the unwind's leftovers);
    what it had not undone stays on the journal, and the next command finishes it."""
    repo, marks = _interrupted_run_with_a_slow_undo(make, "x")
    proc = repo.popen(*command)
    deadline = time.monotonic() + 60
    while not (marks / "undoing").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and "devup recover x" in err, err
    assert not (marks / "undone").exists()  # stopped where it was told to
    assert repo.worktree("x").exists()  # the rest of the rollback is still to come
    listing = json.loads(repo.devup("ls", "--json").stdout)
    assert [(s["session"], s["status"]) for s in listing] == [("x", "interrupted")]
    result = repo.devup("recover", "x")
    assert result.returncode == 0, result.stderr
    assert (marks / "undone").exists()
    assert not repo.worktree("x").exists() and "x" not in world.branches(repo.path)
    assert world.tagged_processes(repo_id=repo.repo_id, session="x") == []
    assert json.loads(repo.devup("ls", "--json").stdout) == []


def test_gc_and_recover_leave_a_busy_session_alone_and_recover_of_it_is_exit_4(make, tmp_path: Path) -> None:
    """SPEC §5.14: exit 4 means another run holds *this* session: `recover NAME` says so; `gc`
    and `recover` of every session leave it alone (its journal is a run in progress, not an
    interrupted one) and succeed; the run then finishes as if they had not been there."""
    gate = tmp_path / "gate"
    hook = f"i=0; while [ ! -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
    repo = make(isolated("host") + f'[hooks]\npost_up = "{hook}"\n')
    first = repo.popen("up", "a", "--json")
    deadline = time.monotonic() + 60
    while not repo.worktree("a").exists():
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    time.sleep(0.5)  # into the gated post_up hook, past the worktree step
    try:
        busy = repo.devup("recover", "a", "--json")
        assert busy.returncode == 4 and "busy" in busy.stderr, (busy.returncode, busy.stderr)
        every = repo.devup("recover", "--json")
        assert every.returncode == 0, every.stderr
        assert [(r["session"], r["status"]) for r in json.loads(every.stdout)] == [("a", "busy")]
        swept = repo.devup("gc", "--json")
        assert swept.returncode == 0, swept.stderr
        assert json.loads(swept.stdout)["orphans"] == []
        assert repo.worktree("a").exists() and "a" in world.branches(repo.path)
        assert first.poll() is None
    finally:
        gate.touch()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert json.loads(out)["status"] == "up"
    assert repo.devup("down", "a").returncode == 0


def test_sigint_in_the_middle_of_down_is_130_saying_to_run_it_again_which_finishes(make) -> None:
    """An interrupt while `down` stops a service that ignores SIGTERM (stop_timeout 10 s): exit
    130 with no traceback, saying the session is partly removed (not "nothing was changed"); the
    session is still listed, and the same `down` again removes everything."""
    repo = make(
        isolated("host") + "[services.web]\nrun = \"trap '' TERM; exec sleep 300\"\nstop_timeout = 10\n"
    )
    assert repo.devup("up", "x").returncode == 0
    proc = repo.popen("down", "x")
    time.sleep(2.5)  # into the 10 s wait for the service that ignores SIGTERM
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and "partly removed" in err and "nothing was changed" not in err, err
    assert [s["session"] for s in json.loads(repo.devup("ls", "--json").stdout)] == ["x"]
    again = repo.devup("down", "x")
    assert again.returncode == 0, again.stderr
    assert not repo.worktree("x").exists()
    assert world.tagged_processes(repo_id=repo.repo_id, session="x") == []
    assert json.loads(repo.devup("ls", "--json").stdout) == []
