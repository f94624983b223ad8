"""Pure tests of the adapters' parsing and of the lease policy: no engine, real git and sockets."""

from __future__ import annotations

import random
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devup import compose, git, remote
from devup.errors import DevupError
from devup.leases import all_leases, lease_ports, release_ports


@pytest.mark.parametrize(
    ("output", "port"),
    [
        (
            "Error response from daemon: driver failed programming external connectivity on endpoint "
            "x-web-1: Bind for 0.0.0.0:20417 failed: port is already allocated",
            20417,
        ),
        ("Bind for [::]:31000 failed: port is already allocated", 31000),
        ("Error starting userland proxy: listen tcp4 0.0.0.0:25001: bind: address already in use", 25001),
        ("listen udp6 [::1]:25002: bind: address already in use", 25002),
        ("failed to bind host port 127.0.0.1:25003: bind: address already in use", 25003),
        ("Error response from daemon: pull access denied for nope", None),
        ("container x-web-1 exited (1)", None),
    ],
)
def test_taken_port_reads_the_engines_bind_errors(output: str, port: int | None) -> None:
    assert compose.taken_port(output) == port


def _free_block(width: int = 30) -> tuple[int, int]:
    low = random.randrange(40000, 60000 - width)
    return (low, low + width - 1)


def test_lease_ports_prefers_a_free_preferred_port_and_never_gives_one_twice() -> None:
    low, high = _free_block()
    first = lease_ports(
        repo_id="r", session="a", keys=["WEB", "DB"], prefer={"WEB": low + 5}, port_range=(low, high)
    )
    assert first["WEB"] == low + 5 and low <= first["DB"] <= high and first["DB"] != low + 5
    second = lease_ports(
        repo_id="r", session="b", keys=["WEB"], prefer={"WEB": low + 5}, port_range=(low, high)
    )
    assert second["WEB"] not in first.values()  # preferred, but another session's


def test_a_kept_lease_is_not_granted_again_and_a_bound_one_moves_unless_held() -> None:
    low, high = _free_block()
    granted = lease_ports(repo_id="r", session="a", keys=["WEB"], prefer={}, port_range=(low, high))
    port = granted["WEB"]
    again = lease_ports(repo_id="r", session="a", keys=["WEB"], prefer={"WEB": port}, port_range=(low, high))
    assert again == {}  # still ours and free: nothing new
    with socket.socket() as busy:  # someone binds our leased port
        busy.bind(("0.0.0.0", port))
        busy.listen()
        held = lease_ports(
            repo_id="r",
            session="a",
            keys=["WEB"],
            prefer={"WEB": port},
            port_range=(low, high),
            held=frozenset({"WEB"}),
        )
        assert held == {}  # the binder is the session's own unit: it stays
        moved = lease_ports(
            repo_id="r", session="a", keys=["WEB"], prefer={"WEB": port}, port_range=(low, high)
        )
        assert set(moved) == {"WEB"} and moved["WEB"] != port
    assert port not in all_leases()  # the displaced lease was dropped


def test_avoid_skips_a_port_even_when_preferred() -> None:
    low, high = _free_block()
    got = lease_ports(
        repo_id="r",
        session="a",
        keys=["WEB"],
        prefer={"WEB": low},
        port_range=(low, high),
        avoid=frozenset({low}),
    )
    assert got["WEB"] != low


def test_an_exhausted_range_is_a_clear_error() -> None:
    low, _ = _free_block()
    lease_ports(repo_id="r", session="a", keys=["A"], prefer={}, port_range=(low, low))
    with pytest.raises(DevupError, match="no free port left"):
        lease_ports(repo_id="r", session="b", keys=["B"], prefer={}, port_range=(low, low))


def test_release_ports_releases_only_the_given_sessions_ports() -> None:
    low, high = _free_block()
    a = lease_ports(repo_id="r", session="a", keys=["X", "Y"], prefer={}, port_range=(low, high))
    b = lease_ports(repo_id="r", session="b", keys=["X"], prefer={}, port_range=(low, high))
    release_ports(repo_id="r", session="a", ports=[a["X"]])
    leases = all_leases()
    assert a["X"] not in leases and a["Y"] in leases and b["X"] in leases
    release_ports(repo_id="r", session="a")
    assert set(all_leases()) == {b["X"]}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_worktree_list_parsing_covers_branches_detached_heads_and_missing_folders(tmp_path: Path) -> None:
    root = tmp_path / "main"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    _git(root, "commit", "-q", "--allow-empty", "-m", "init")
    head = _git(root, "rev-parse", "HEAD").strip()
    _git(root, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "with space"))
    _git(root, "worktree", "add", "-q", "--detach", str(tmp_path / "detached"))
    _git(root, "worktree", "add", "-q", "-b", "gone", str(tmp_path / "gone"))
    subprocess.run(["rm", "-rf", str(tmp_path / "gone")], check=True)  # deleted by hand: prunable
    found = {w.path.name: w for w in git.worktrees(root)}
    assert set(found) == {"main", "with space", "detached", "gone"}
    assert found["main"].branch == "main" and found["main"].head == head
    assert found["with space"].branch == "feature"
    assert found["detached"].branch is None and found["detached"].head == head
    assert found["gone"].branch == "gone"
    assert git.worktree_at(root, tmp_path / "with space") == found["with space"]


def _leases(tmp_path: Path, session: str, low: int, high: int) -> tuple[Any, Any]:
    from devup.journal import Journal
    from devup.steps import ports
    from devup.undo import UndoStack

    stack = UndoStack(Journal(tmp_path / f"{session}.jsonl"), remote.Engine(None, remote.DEFAULT_HOST))
    leases = ports.Leases(
        stack=stack,
        repo_id="r",
        session=session,
        keys=["WEB", "DB"],
        aliases={"WEB_80": "WEB"},
        port_range=(low, high),
        free_check=lambda: None,
    )
    return stack, leases


def _held_by(session: str) -> dict[str, int]:
    return {lease["key"]: port for port, lease in all_leases().items() if lease.get("session") == session}


def test_a_rolled_back_resume_gets_back_the_lease_a_relet_moved_it_off(tmp_path: Path) -> None:
    low, high = _free_block()
    before = lease_ports(repo_id="r", session="a", keys=["WEB", "DB"], prefer={}, port_range=(low, high))
    stack, leases = _leases(tmp_path, "a", low, high)
    assert leases.lease(prefer=before, resumed=True, held=frozenset({"WEB", "DB"})) == {
        **before,
        "WEB_80": before["WEB"],
    }
    moved = leases.relet(["WEB"], avoid=before["WEB"])  # someone else bound WEB's port
    assert moved["WEB"] != before["WEB"] and moved["WEB_80"] == moved["WEB"]
    assert _held_by("a") == {"WEB": moved["WEB"], "DB": before["DB"]}
    assert stack.unwind() == []
    assert _held_by("a") == before  # the record's ports again, the replacement released


def test_a_rolled_back_new_session_leaves_no_lease_even_after_a_relet(tmp_path: Path) -> None:
    low, high = _free_block()
    stack, leases = _leases(tmp_path, "n", low, high)
    first = leases.lease(prefer={}, resumed=False, held=frozenset())
    leases.relet(["DB"], avoid=first["DB"])
    assert set(_held_by("n")) == {"WEB", "DB"}
    assert stack.unwind() == []
    assert _held_by("n") == {}


def _run_git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "protocol.file.allow=always", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def _repo(path: Path) -> Path:
    path.mkdir(parents=True)
    _run_git(path, "init", "-q", "-b", "main")
    _run_git(path, "commit", "-q", "--allow-empty", "-m", "init")
    return path


def test_repository_discovery_from_a_subfolder_a_linked_worktree_and_a_submodule(tmp_path: Path) -> None:
    main = _repo(tmp_path / "main")
    (main / "sub" / "deeper").mkdir(parents=True)
    _run_git(main, "worktree", "add", "-q", "-b", "wt", str(tmp_path / "wt"))
    for start in (main, main / "sub" / "deeper", tmp_path / "wt"):
        found = git.find_repo(start)
        assert (found.root, found.common_dir) == (main, main / ".git"), start
    library = _repo(tmp_path / "library")
    _run_git(main, "submodule", "add", "-q", str(library), "vendor/library")
    found = git.find_repo(main / "vendor" / "library")  # its own repository, not the superproject
    assert found.root == main / "vendor" / "library"
    assert found.common_dir == main / ".git" / "modules" / "vendor" / "library"


def test_a_bare_repository_and_its_worktrees_are_refused_with_the_reason(tmp_path: Path) -> None:
    origin = _repo(tmp_path / "origin")
    _run_git(tmp_path, "clone", "-q", "--bare", str(origin), "bare.git")
    _run_git(tmp_path / "bare.git", "worktree", "add", "-q", str(tmp_path / "bwt"), "main")
    for start in (tmp_path / "bare.git", tmp_path / "bwt"):
        with pytest.raises(DevupError, match="is a bare repository") as caught:
            git.find_repo(start)
        assert caught.value.exit_code == 2


# --- compose.load_model: the model is compose's stdout alone ----------------------------------


LOCAL = remote.Engine(None, "unix:///var/run/docker.sock")


def _fake_compose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    fake = tmp_path / "docker-compose"
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(0o755)
    monkeypatch.setattr(compose, "compose_command", lambda: (str(fake),))


def test_load_model_parses_stdout_only_whatever_compose_warns_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = '{"name": "p", "services": {"web": {"image": "x"}, "db": {"image": "y"}}}'
    # A warning with a `{` (an unset ${VAR}, a path) on stderr, before the model on stdout.
    _fake_compose(
        tmp_path,
        monkeypatch,
        "echo 'WARN[0000] The \"{FOO}\" variable is not set. Defaulting to a blank string.' >&2\n"
        f"echo '{model}'\n",
    )
    loaded = compose.load_model(LOCAL, project="p", files=[tmp_path / "c.yaml"], cwd=tmp_path, env={})
    assert sorted(loaded.services) == ["db", "web"]


def test_load_model_failure_still_reports_what_compose_said_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_compose(tmp_path, monkeypatch, "echo 'services.web.image must be a string' >&2\nexit 15\n")
    with pytest.raises(DevupError) as caught:
        compose.load_model(LOCAL, project="p", files=[tmp_path / "c.yaml"], cwd=tmp_path, env={})
    assert "exited 15" in caught.value.message
    assert "services.web.image must be a string" in caught.value.message


def test_emptiness_of_a_volume_is_read_from_the_start_of_its_archive_only(monkeypatch) -> None:
    """code-review §5 bug 10: the streaming fallback read a whole volume into memory to learn
    whether it was empty; now it stops at the first member past the folder itself."""
    import io
    import tarfile
    from types import SimpleNamespace

    from devup.engine import copies
    from devup.errors import EngineError

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        folder = tarfile.TarInfo("./")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        big = tarfile.TarInfo("./big")
        big.size = 8 << 20
        tar.addfile(big, io.BytesIO(b"\0" * big.size))
    raw = data.getvalue()
    chunk = 64 << 10
    read: list[int] = []

    def chunks():
        for n, start in enumerate(range(0, len(raw), chunk)):
            read.append(n)
            yield raw[start : start + chunk]

    api = SimpleNamespace(get_archive=lambda cid, path: (chunks(), {}))
    monkeypatch.setattr(copies, "client", lambda eng: SimpleNamespace(api=api))
    with pytest.raises(EngineError, match="no shell"):
        copies._empty_via_api(remote.Engine(None, remote.DEFAULT_HOST), "cid")
    assert len(read) <= 2 < len(raw) // chunk  # a chunk or two of 128, not the whole volume


def test_exec_gives_cmd_the_same_environment_through_the_fast_path_and_the_cli(tmp_path, monkeypatch) -> None:
    """code-review §5 bug 6: `exec` ran CMD with the user's DOCKER_HOST through the fast path
    and with the session's through the CLI, depending on whether a journal file existed."""
    import subprocess
    import sys

    from tests.conftest import make_repo

    monkeypatch.setenv("DOCKER_HOST", "tcp://198.18.0.9:2375")  # the shell points elsewhere
    repo = make_repo(tmp_path, '[project]\nmode = "host"\n')
    up = subprocess.run(
        [sys.executable, "-m", "devup", "up", "x"], cwd=repo.path, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr
    probe = [
        sys.executable,
        "-m",
        "devup",
        "exec",
        "x",
        "--",
        "sh",
        "-c",
        'echo "$DOCKER_HOST|$DOCKER_CONTEXT"',
    ]
    fast = subprocess.run(probe, cwd=repo.path, capture_output=True, text=True)
    journal = next((tmp_path / "state").glob("repos/*")) / "journals" / "x.jsonl"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text("")  # an empty journal: the fast path steps aside, the CLI answers
    slow = subprocess.run(probe, cwd=repo.path, capture_output=True, text=True)
    assert fast.returncode == slow.returncode == 0, (fast.stderr, slow.stderr)
    assert fast.stdout == slow.stdout == "tcp://198.18.0.9:2375|\n"  # the session's engine, recorded
    journal.unlink(missing_ok=True)
    down = subprocess.run(
        [sys.executable, "-m", "devup", "down", "x"], cwd=repo.path, capture_output=True, text=True
    )
    assert down.returncode == 0, down.stderr
