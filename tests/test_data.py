"""Data: snapshots, clones and restores on the real engine with PostgreSQL (SPEC §7, guarantee 9).

The world is read the way a user would: rows through psql in the containers, volumes and
container states through the docker CLI; never through devup's own state.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devup.errors import EngineError
from tests import world
from tests.conftest import BUSYBOX, TEST_ENGINE, Repo, busybox_web, isolated, make_repo

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

POSTGRES = os.environ.get("DEVUP_TEST_POSTGRES", "devup-local/postgres:15")
DB = f"""
services:
  postgres:
    image: {POSTGRES}
    environment:
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: postgres
      POSTGRES_DB: app
      POSTGRES_HOST_AUTH_METHOD: trust
    ports: ["5432"]
    volumes: [pgdata:/var/lib/postgresql/data]
    stop_signal: SIGINT
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres -h 127.0.0.1"]
      interval: 1s
      timeout: 3s
      retries: 60
volumes:
  pgdata: {{}}
"""


def toml() -> str:
    return isolated("container") + '\n[groups.db]\nfiles = ["compose/db.yaml"]\n'


class Pg:
    """One repository with session `a` (seeded) and snapshot `s1`, shared by the module's tests;
    every call runs with the module's own state folder."""

    def __init__(self, repo: Repo, state: Path) -> None:
        self.repo, self.state = repo, state

    def devup(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.repo.devup(*args, env={"DEVUP_HOME": str(self.state), **(env or {})})

    def up(self, *args: str) -> dict:
        result = self.devup("up", *args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def container(self, session: str) -> str:
        [name] = world.running_containers(repo_id=self.repo.repo_id, session=session) or [""]
        assert name, f"no running container for session {session}"
        return name

    def sql(self, session: str, query: str) -> str:
        out = subprocess.run(
            ["docker", "exec", self.container(session), "psql", "-U", "postgres", "-d", "app", "-tAc", query],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def rows(self, session: str) -> str:
        return self.sql(session, "select count(*) || ':' || coalesce(sum(i), 0) from t")

    def snapshot_volumes(self, snap: str | None = None) -> list[str]:
        # One label filter, the snapshot label compared here: Podman 4.3 answers a volume list
        # filtered by two labels with the volumes carrying either.
        out = world.docker(
            "volume",
            "ls",
            "--filter",
            f"label=dev.devup.repo={self.repo.repo_id}",
            "--format",
            '{{.Name}}\t{{.Label "dev.devup.snapshot"}}',
        )
        rows = [line.split("\t") for line in out.splitlines() if line]
        return sorted(name for name, of in rows if of and (snap is None or of == snap))

    def state_of(self, session: str) -> list[str]:
        """`running`, `paused`, ... of each of the session's containers (copy helpers excepted)."""
        names = world.labelled("container", repo_id=self.repo.repo_id, session=session)
        states = []
        for name in names:
            data = json.loads(world.docker("inspect", name))[0]
            if "dev.devup.helper" not in data["Config"]["Labels"]:
                states.append(data["State"]["Status"])
        return states

    def helpers(self) -> list[str]:
        out = world.docker(
            "ps",
            "-a",
            "--filter",
            "label=dev.devup.helper",
            "--filter",
            f"label=dev.devup.repo={self.repo.repo_id}",
            "--format",
            "{{.Names}}",
        )
        return out.split()


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pg]:
    tmp = tmp_path_factory.mktemp("data")
    # The autouse home fixture is per test: the module's repository has its own state folder
    # (passed on every call) and git identity.
    env = {
        f"GIT_{who}_{what}": v
        for who in ("AUTHOR", "COMMITTER")
        for what, v in (("NAME", "t"), ("EMAIL", "t@example.invalid"))
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        repo = make_repo(tmp, toml(), {"compose/db.yaml": DB})
        shared = Pg(repo, tmp / "state")
        shared.up("a")
        shared.sql("a", "create table t (i int primary key); insert into t select generate_series(1, 500)")
        created = shared.devup("snapshot", "create", "a", "--as", "s1")
        assert created.returncode == 0, created.stderr
    yield shared
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        for line in world.git(repo.path, "worktree", "list", "--porcelain").splitlines():
            if line.startswith("worktree ") and Path(line[9:]) != repo.path:
                shared.devup("down", Path(line[9:]).name, "--force")
        snaps = json.loads(shared.devup("snapshot", "ls", "--json").stdout or "[]")
        if snaps:
            shared.devup("snapshot", "rm", *[s["snapshot"] for s in snaps])
    left = {k: world.labelled(k, repo_id=repo.repo_id) for k in ("container", "network", "volume")}
    for name in left["container"]:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    for name in left["volume"]:
        subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True)
    for name in left["network"]:
        subprocess.run(["docker", "network", "rm", name], capture_output=True)
    world.stop_router(tmp / "state")  # the sessions' hostnames started it; the per-test stop cannot reach it
    assert left == {"container": [], "network": [], "volume": []}, "the data tests left things behind"


def _dangling_anonymous_volumes() -> set[str]:
    out = world.docker("volume", "ls", "-q", "--filter", "dangling=true")
    return {v for v in out.split() if len(v) == 64 and all(c in "0123456789abcdef" for c in v)}


def test_clone_of_a_session_has_its_rows_and_writes_stay_apart(pg: Pg) -> None:
    before = pg.rows("a")
    dangling = _dangling_anonymous_volumes()
    pg.up("b", "--from", "a")
    # The copy helper runs the service's own image, whose VOLUME gets an anonymous volume: it
    # goes with the helper, never left behind.
    assert _dangling_anonymous_volumes() - dangling == set()
    assert pg.rows("b") == before == "500:125250"
    pg.sql("b", "insert into t values (1001)")
    pg.sql("a", "insert into t values (2001), (2002)")
    assert pg.rows("b") == "501:126251"  # a's new rows never reach b
    assert pg.rows("a") == "502:129253"  # nor b's a
    pg.sql("a", "delete from t where i > 2000")
    # ls and status say where b's data came from.
    assert json.loads(pg.devup("status", "b", "--json").stdout)["source"] == {"kind": "session", "name": "a"}
    table = pg.devup("ls").stdout
    b_line = next(line for line in table.splitlines() if line.startswith("b "))
    assert b_line.split()[-1] == "a"
    # b's volume is an ordinary compose volume of b: `down b` removes it, a's is untouched.
    assert pg.devup("down", "b").returncode == 0
    assert world.labelled("volume", repo_id=pg.repo.repo_id, session="b") == []
    assert pg.rows("a") == before


def test_restore_gives_back_the_snapshot_and_keeps_the_replaced_data(pg: Pg) -> None:
    pg.sql("a", "delete from t where i <= 100; insert into t values (3001)")
    changed = pg.rows("a")
    result = pg.devup("snapshot", "restore", "a", "s1", "--json")
    assert result.returncode == 0, result.stderr
    kept = json.loads(result.stdout)["kept"]["snapshot"]
    assert kept.startswith("a-before-restore-") and len(kept) == len("a-before-restore-20260101-000000")
    assert pg.rows("a") == "500:125250"  # s1's rows, and a serves again
    assert pg.state_of("a") == ["running"]
    listed = {s["snapshot"]: s for s in json.loads(pg.devup("snapshot", "ls", "--json").stdout)}
    assert {"s1", kept} <= set(listed)
    assert listed[kept]["source"] == "a" and listed[kept]["size"] > 0
    assert [(v["group"], v["key"]) for v in listed[kept]["volumes"]] == [("db", "pgdata")]
    # The kept snapshot holds the rows the restore replaced.
    pg.up("d", "--from", kept)
    assert pg.rows("d") == changed
    assert pg.devup("down", "d").returncode == 0
    assert pg.devup("snapshot", "rm", kept).returncode == 0
    assert pg.snapshot_volumes(kept) == []


def test_snapshot_under_a_concurrent_writer_is_consistent(pg: Pg) -> None:
    """Rows committed in a loop while the snapshot is taken: the clone starts cleanly (Postgres
    recovers from its WAL) and holds every row committed before the pause, as a gapless prefix."""
    import psycopg

    port = int(json.loads(pg.devup("env", "a", "--format", "json").stdout)["DEVUP_PORT_POSTGRES"])
    pg.sql("a", "create table w (n int primary key)")
    acked: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/app", autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                n += 1
                conn.execute("insert into w values (%s)", (n,))
                acked.append(n)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        while len(acked) < 50:
            time.sleep(0.05)
        committed_before = len(acked)
        created = pg.devup("snapshot", "create", "a", "--as", "busy")
        assert created.returncode == 0, created.stderr
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert pg.state_of("a") == ["running"]  # unpaused: the writer went on after the copy
    pg.up("e", "--from", "busy")
    got = [int(x) for x in pg.sql("e", "select n from w order by n").split()]
    assert got == list(range(1, len(got) + 1))  # a prefix of the writer's rows, no gap
    assert len(got) >= committed_before  # every row acknowledged before the snapshot began
    assert len(acked) > len(got)  # the writer committed more after the unpause: those are not in it
    assert pg.devup("down", "e").returncode == 0
    assert pg.devup("snapshot", "rm", "busy").returncode == 0
    pg.sql("a", "drop table w")


# Each command killed while its copy helper runs, then `recover`, or the next plain command.
KILLS = [(cmd, then) for cmd in ("create", "restore", "clone") for then in ("recover", "next")]


@pytest.mark.parametrize(("cmd", "then"), KILLS, ids=[f"{c}-then-{t}" for c, t in KILLS])
def test_sigkill_during_the_copy(pg: Pg, cmd: str, then: str) -> None:
    if cmd == "restore":
        pg.sql("a", "insert into t values (4001)")  # so that a restore would change a
    before = pg.rows("a")
    snaps_before = pg.snapshot_volumes()
    args, phase = {
        "create": (("snapshot", "create", "a", "--as", "k1"), "snapshot"),
        "restore": (("snapshot", "restore", "a", "s1"), "restore"),
        "clone": (("up", "k", "--from", "a"), "clone"),
    }[cmd]
    killed = pg.devup(*args, env={"DEVUP_FAULT": f"kill@during:{phase}"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if cmd == "create":
        assert pg.state_of("a") == ["paused"]  # what the kill left: recovery must resume it
    elif cmd == "restore":
        assert pg.state_of("a") == ["exited"]
    else:
        assert pg.state_of("a") == ["paused"]
    if then == "recover":
        done = pg.devup("recover")
    else:
        # SPEC §5.3: any later command on the session finishes the interrupted run.
        done = pg.devup("down", "k") if cmd == "clone" else pg.devup("status", "a")
    assert done.returncode == 0, done.stdout + done.stderr
    assert pg.state_of("a") == ["running"]
    assert pg.rows("a") == before  # serving, and nothing of a changed
    assert pg.snapshot_volumes() == snaps_before  # no partial snapshot
    assert pg.helpers() == []
    assert world.labelled("volume", repo_id=pg.repo.repo_id, session="k") == []
    assert not (pg.repo.worktree("k")).exists()
    if cmd == "restore":
        pg.sql("a", "delete from t where i = 4001")


@pytest.mark.parametrize("cmd", ["create", "restore", "restarted", "clone"])
def test_a_failure_during_the_copy_is_rolled_back(pg: Pg, cmd: str) -> None:
    """Guarantee 9: a failed snapshot, restore or clone leaves the state before it (exit 1);
    `restarted`: the restore fails once the database runs again on the restored data, so the
    copy back must stop it first."""
    if cmd in ("restore", "restarted"):
        pg.sql("a", "insert into t values (5001)")
    before = pg.rows("a")
    snaps_before = pg.snapshot_volumes()
    args, phase = {
        "create": (("snapshot", "create", "a", "--as", "f1", "--json"), "snapshot"),
        "restore": (("snapshot", "restore", "a", "s1", "--json"), "restore"),
        "restarted": (("snapshot", "restore", "a", "s1", "--json"), "restarted"),
        "clone": (("up", "f", "--from", "a", "--json"), "clone"),
    }[cmd]
    failed = pg.devup(*args, env={"DEVUP_FAULT": f"raise@during:{phase}"})
    assert failed.returncode == 1, failed.stderr
    assert f"fault injected at during:{phase}" in failed.stderr
    assert json.loads(failed.stdout)["status"] == "rolled_back"
    assert pg.state_of("a") == ["running"]
    assert pg.rows("a") == before
    assert pg.snapshot_volumes() == snaps_before
    assert pg.helpers() == []
    assert world.labelled("volume", repo_id=pg.repo.repo_id, session="f") == []
    if cmd in ("restore", "restarted"):
        pg.sql("a", "delete from t where i = 5001")


def test_from_a_missing_source_or_onto_an_existing_session_is_exit_2(pg: Pg) -> None:
    volumes = world.labelled("volume", repo_id=pg.repo.repo_id)
    missing = pg.devup("up", "m", "--from", "nothing-here")
    assert missing.returncode == 2, missing.stderr
    assert "no session or snapshot" in missing.stderr
    assert not pg.repo.worktree("m").exists() and "m" not in world.branches(pg.repo.path)
    existing = pg.devup("up", "a", "--from", "s1")
    assert existing.returncode == 2 and "snapshot restore" in existing.stderr
    assert world.labelled("volume", repo_id=pg.repo.repo_id) == volumes
    assert [r["session"] for r in json.loads(pg.devup("ls", "--json").stdout)] == ["a"]
    assert pg.rows("a") == "500:125250"


def test_gc_removes_an_incomplete_snapshot_and_never_a_complete_one(pg: Pg) -> None:
    assert pg.devup("snapshot", "create", "a", "--as", "half").returncode == 0
    [manifest] = [v for v in pg.snapshot_volumes("half") if v.endswith("_half")]
    # What a `snapshot rm` killed after its first removal leaves: volumes without a manifest.
    world.docker("volume", "rm", manifest)
    assert pg.snapshot_volumes("half")
    assert "half" not in pg.devup("snapshot", "ls").stdout
    gc = pg.devup("gc", "--json")
    assert gc.returncode == 0, gc.stderr
    assert pg.snapshot_volumes("half") == []
    assert pg.snapshot_volumes("s1")  # complete: never gc'd
    gone = pg.devup("snapshot", "rm", "half")
    assert gone.returncode == 0 and "no snapshot named half" in gone.stdout


def test_snapshots_outlive_down_and_clone_into_new_sessions(pg: Pg) -> None:
    """Last: takes session a down. A snapshot is the repository's: `down a` leaves s1 whole."""
    s1 = pg.snapshot_volumes("s1")
    assert pg.devup("down", "a").returncode == 0
    assert world.labelled("volume", repo_id=pg.repo.repo_id, session="a") == []
    assert pg.snapshot_volumes("s1") == s1
    doc = pg.up("c", "--from", "s1")
    assert doc["status"] == "up"
    assert pg.rows("c") == "500:125250"
    assert json.loads(pg.devup("status", "c", "--json").stdout)["source"] == {
        "kind": "snapshot",
        "name": "s1",
    }
    # A stopped session is a SOURCE too (nothing to pause), and stays stopped.
    assert pg.devup("stop", "c").returncode == 0
    pg.up("c2", "--from", "c")
    assert pg.rows("c2") == "500:125250"
    assert pg.state_of("c") == ["exited"]
    assert pg.devup("down", "c2").returncode == 0
    assert pg.devup("down", "c").returncode == 0
    # [project].data_from: the default SOURCE of a new session; a missing one is exit 2.
    config = pg.repo.path / "devup.toml"
    original = config.read_text()
    try:
        config.write_text(
            original.replace('mode = "container"\n', 'mode = "container"\ndata_from = "s1"\n', 1)
        )
        pg.up("g")
        assert pg.rows("g") == "500:125250"
        assert pg.devup("down", "g").returncode == 0
        config.write_text(
            original.replace('mode = "container"\n', 'mode = "container"\ndata_from = "gone"\n', 1)
        )
        missing = pg.devup("up", "h")
        assert missing.returncode == 2 and "gone" in missing.stderr
        assert not pg.repo.worktree("h").exists()
    finally:
        config.write_text(original)


def test_a_session_without_data_volumes_says_so(make) -> None:
    repo = make(
        isolated("container") + '\n[groups.web]\nfiles = ["compose/web.yaml"]\n',
        {"compose/web.yaml": busybox_web(volume=None)},
    )
    repo.up_json("n")
    result = repo.devup("snapshot", "create", "n")
    assert result.returncode == 2
    assert "no data volumes" in result.stderr
    assert world.labelled("volume", repo_id=repo.repo_id) == []
    assert world.running_containers(repo_id=repo.repo_id, session="n")  # never paused or stopped
    assert repo.devup("down", "n").returncode == 0


def test_the_copy_streams_through_the_engine_when_the_image_has_no_tool(tmp_path: Path) -> None:
    """An image with no shell, cp or tar: the copy goes through get_archive/put_archive and
    still keeps owners, modes and symlinks."""
    from devup import remote
    from devup.engine.copies import copy_volume
    from devup.engine.volumes import create_volume, remove_volume

    here = remote.current()
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        info = tarfile.TarInfo("marker")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    tag = f"devup-test-notool:{os.getpid()}"
    subprocess.run(["docker", "import", "-", tag], input=rootfs.getvalue(), check=True, capture_output=True)
    labels = {"dev.devup.repo": f"test-{os.getpid()}"}
    src, dst = f"devup-test-src-{os.getpid()}", f"devup-test-dst-{os.getpid()}"
    try:
        create_volume(here, src, labels)
        create_volume(here, dst, labels)
        world.docker(
            "run",
            "--rm",
            "-v",
            f"{src}:/d",
            BUSYBOX,
            "sh",
            "-c",
            "mkdir /d/pg && echo x > /d/pg/f && chown -R 999:999 /d/pg && chmod 700 /d/pg && ln -s pg/f /d/link",
        )
        if TEST_ENGINE == "podman":
            # Podman's archive API hands every file out as root's: refused, never a copy that
            # silently lost its owners (docs/troubleshooting.md, Podman).
            with pytest.raises(EngineError, match="does not keep file owners"):
                copy_volume(here, source=src, target=dst, image=tag, labels=labels)
            assert world.docker("run", "--rm", "-v", f"{dst}:/d", BUSYBOX, "ls", "-A", "/d") == ""
            return
        copied = copy_volume(here, source=src, target=dst, image=tag, labels=labels)
        assert copied > 0
        seen = world.docker(
            "run",
            "--rm",
            "-v",
            f"{dst}:/d",
            BUSYBOX,
            "sh",
            "-c",
            "stat -c '%n %u %g %a' /d/pg /d/pg/f; readlink /d/link; cat /d/link",
        )
        assert seen.split("\n")[:4] == ["/d/pg 999 999 700", "/d/pg/f 999 999 644", "pg/f", "x"]
        assert (
            world.docker("ps", "-a", "--filter", f"label=dev.devup.repo={labels['dev.devup.repo']}", "-q")
            == ""
        )
    finally:
        for v in (src, dst):
            with contextlib.suppress(Exception):
                remove_volume(here, v)
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


def _volume_text(name: str) -> str:
    return world.docker(
        "run", "--rm", "-v", f"{name}:/d", BUSYBOX, "sh", "-c", "cat /d/f 2>/dev/null || echo -"
    ).strip()


def test_a_restores_copy_back_run_again_keeps_the_data_and_a_missing_source_is_never_made_up() -> None:
    """Guarantee 4 for the restore's inverse: recovery may run it a second time after the first
    removed the kept snapshot; the session's data must survive (the engine would otherwise make
    the missing volume, empty, and copy that)."""
    from devup import remote
    from devup.engine.copies import copy_volume
    from devup.engine.volumes import create_volume, remove_volume, volume_info
    from devup.steps import volumes

    here = remote.current()
    run = f"test-{os.getpid()}"
    labels = {"dev.devup.repo": run}
    kept, target, manifest = (f"devup-test-{what}-{os.getpid()}" for what in ("kept", "target", "manifest"))
    try:
        for name, text in ((kept, "before-restore"), (target, "restored")):
            create_volume(here, name, labels)
            world.docker("run", "--rm", "-v", f"{name}:/d", BUSYBOX, "sh", "-c", f"echo {text} > /d/f")
        create_volume(here, manifest, labels)
        args = {"pairs": [[kept, target, BUSYBOX]], "labels": labels, "manifest": manifest}
        volumes.undo_restore(args, here)
        assert _volume_text(target) == "before-restore"
        assert volume_info(here, kept) is None and volume_info(here, manifest) is None
        volumes.undo_restore(args, here)  # again, as a recovery after a kill would
        assert _volume_text(target) == "before-restore"
        with pytest.raises(Exception, match="does not exist"):
            copy_volume(here, source=kept, target=target, image=BUSYBOX, labels=labels)
        assert volume_info(here, kept) is None  # not created by the attempt
        assert _volume_text(target) == "before-restore"
    finally:
        for v in (kept, target, manifest):
            with contextlib.suppress(Exception):
                remove_volume(here, v)


def test_a_snapshot_being_read_is_not_removed_under_the_reader(
    pg: Pg, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone or restore reading s1 holds it; `snapshot rm s1` meanwhile is busy (exit 4) and
    removes nothing, while a second reader is let in."""
    from devup import remote, snapshots
    from devup.workspace import open_workspace

    monkeypatch.setenv("DEVUP_HOME", str(pg.state))
    before = pg.snapshot_volumes("s1")
    with snapshots.reading(open_workspace(pg.repo.path), "s1", remote.current()):
        removed = pg.devup("snapshot", "rm", "s1")
        assert removed.returncode == 4, removed.stderr
        assert "s1" in removed.stderr
        assert pg.snapshot_volumes("s1") == before
        pg.up("r", "--from", "s1")  # another reader at the same time
    assert pg.rows("r") == "500:125250"
    assert pg.devup("down", "r").returncode == 0
    # And the other way round: while s1 is being removed (or written), neither a clone nor a
    # restore reads it, and both say so before changing anything.
    pg.up("w")
    pg.sql("w", "create table t (i int primary key); insert into t values (7)")
    with snapshots.lock(open_workspace(pg.repo.path), "s1"):
        cloned = pg.devup("up", "q", "--from", "s1")
        restored = pg.devup("snapshot", "restore", "w", "s1")
    assert cloned.returncode == 4 and "s1" in cloned.stderr, cloned.stderr
    assert restored.returncode == 4 and "s1" in restored.stderr, restored.stderr
    assert world.labelled("volume", repo_id=pg.repo.repo_id, session="q") == []
    assert pg.rows("w") == "1:7" and pg.state_of("w") == ["running"]
    assert pg.devup("down", "w").returncode == 0


def test_data_from_in_host_mode_needs_no_engine(make) -> None:
    """Host mode needs no Docker (SPEC §6): a configured data_from has no volumes to fill there."""
    toml = isolated("host").replace('mode = "host"\n', 'mode = "host"\ndata_from = "golden"\n', 1)
    repo = make(toml + '\n[services.s]\nrun = "sleep 60"\n')
    result = repo.devup("up", "h", env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 0, result.stderr
    assert repo.devup("down", "h").returncode == 0
    # Asked for explicitly, --from there is a usage error, found before anything changed.
    asked = repo.devup("up", "h2", "--from", "golden")
    assert asked.returncode == 2 and "no data volumes" in asked.stderr, asked.stderr
    assert not repo.worktree("h2").exists() and "h2" not in world.branches(repo.path)
