"""Sessions that change (SPEC §5.12): `up` applies what changed and only that, as a transaction,
and `--dry-run` says what it would do; the world is checked through the engine, git and /proc."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from tests import world
from tests.conftest import BUSYBOX, HTTP_SERVICE, isolated


def _svc(name: str, text: str, *, port: int | None = None) -> list[str]:
    lines = [
        f"  {name}:",
        f"    image: {BUSYBOX}",
        "    init: true",
        f'    command: ["sh", "-c", "echo {text} > /tmp/x; exec sleep 600"]',
    ]
    if port:
        lines += [f'    ports: ["{port}"]']
    return lines


def _compose(**services: str) -> str:
    lines = ["services:"]
    for name, text in services.items():
        lines += _svc(name, text)
    return "\n".join(lines) + "\n"


TOML = (
    '[groups.app]\nfiles = ["app.yaml"]\nmin_uptime = 0\n'
    '[groups.infra]\nfiles = ["infra.yaml"]\nmin_uptime = 0\n'
    f'[services.web]\nrun = "{HTTP_SERVICE}"\nport = true\nready = {{ http = "/" }}\n'
    '[env]\nGREETING = "hello"\n'
)


@pytest.fixture
def hybrid(make, engine):
    return make(
        isolated("hybrid") + TOML,
        {"app.yaml": _compose(a1="one", a2="two"), "infra.yaml": _compose(i1="infra")},
    )


def _ids(repo, session: str) -> dict[str, str]:
    """service -> container id, through the engine."""
    out = world.docker(
        "ps",
        "-a",
        "--filter",
        f"label=dev.devup.session={session}",
        "--filter",
        f"label=dev.devup.repo={repo.repo_id}",
        "--format",
        '{{.ID}} {{.Label "com.docker.compose.service"}} {{.State}}',
    )
    found = {}
    for line in out.splitlines():
        cid, svc, state = line.split()
        found[svc] = f"{cid} {state}"
    return found


def _web(repo, session: str) -> psutil.Process:
    procs = [
        p
        for p in world.tagged_processes(repo_id=repo.repo_id, session=session)
        if "http.server" in p.cmdline()
    ]
    assert len(procs) == 1, procs
    return procs[0]


def _commit_in_worktree(repo, session: str, rel: str, text: str) -> None:
    wt = repo.worktree(session)
    (wt / rel).write_text(text)
    world.git(wt, "add", "-A")
    world.git(wt, "commit", "-qm", f"change {rel}")


def test_an_edited_compose_file_recreates_only_the_changed_service(hybrid) -> None:
    repo = hybrid
    assert repo.devup("up", "s").returncode == 0
    before = _ids(repo, "s")
    web = _web(repo, "s")
    _commit_in_worktree(repo, "s", "app.yaml", _compose(a1="one", a2="changed"))
    dry = repo.devup("up", "s", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = {(c["kind"], c["name"]): c["action"] for c in json.loads(dry.stdout)["changes"]}
    assert plan[("group", "app")] == "recreate" and plan[("group", "infra")] == "keep"
    assert plan[("container", "app/a2")] == "recreate" and plan[("container", "app/a1")] == "keep"
    assert plan[("service", "web")] == "keep"
    assert _ids(repo, "s") == before  # the dry run changed nothing
    assert json.loads(repo.devup("ls", "--json").stdout)[0]["changed"] is True
    result = repo.devup("up", "s")
    assert result.returncode == 0, result.stderr
    after = _ids(repo, "s")
    assert after["a1"] == before["a1"] and after["i1"] == before["i1"]  # untouched
    assert after["a2"] != before["a2"] and after["a2"].endswith("running")
    assert _web(repo, "s").pid == web.pid
    assert json.loads(repo.devup("ls", "--json").stdout)[0]["changed"] is False
    again = repo.devup("up", "s", "--json")
    assert again.returncode == 0 and _ids(repo, "s") == after  # converged: a no-op now
    assert repo.devup("down", "s").returncode == 0


def test_a_new_env_key_and_a_changed_command_apply_and_a_removed_group_keeps_its_volumes(
    make, engine
) -> None:
    repo = make(
        isolated("hybrid") + TOML,
        {
            "app.yaml": _compose(a1="one"),
            "infra.yaml": "services:\n"
            + "\n".join(_svc("i1", "infra"))
            + "\n    volumes: [data:/data]\nvolumes:\n  data: {}\n",
        },
    )
    assert repo.devup("up", "s").returncode == 0
    web = _web(repo, "s")
    (volume,) = world.labelled("volume", repo_id=repo.repo_id, session="s")
    toml = (repo.path / "devup.toml").read_text()
    toml = toml.replace('GREETING = "hello"', 'GREETING = "hello"\nEXTRA = "x"')
    toml = toml.replace('--bind 127.0.0.1"', '--bind 127.0.0.1 --directory ."')
    toml = toml.replace('[groups.infra]\nfiles = ["infra.yaml"]\nmin_uptime = 0\n', "")
    (repo.path / "devup.toml").write_text(toml)
    result = repo.devup("up", "s")
    assert result.returncode == 0, result.stderr
    assert "EXTRA=x" in (repo.worktree("s") / ".env.devup").read_text()
    assert "EXTRA=x" in repo.devup("env", "s").stdout
    restarted = _web(repo, "s")
    assert restarted.pid != web.pid and "--directory" in restarted.cmdline()
    assert [c for c in _ids(repo, "s") if c == "i1"] == []  # the group is down
    assert world.labelled("volume", repo_id=repo.repo_id, session="s") == [volume]  # its data is not
    status = repo.devup("status", "s", "--json")
    assert any(u["kind"] == "volumes" for u in json.loads(status.stdout)["units"])
    assert repo.devup("down", "s").returncode == 0
    assert world.labelled("volume", repo_id=repo.repo_id, session="s") == []


@pytest.mark.parametrize(
    "fault",
    ["raise@before:group:app", "raise@before:post_up", "kill@after:group:app", "kill@after:service:web"],
)
def test_a_failed_change_puts_the_session_back_as_it_was(hybrid, fault: str) -> None:
    """SPEC §5.12's transaction: the failed (or killed, then recovered) reconcile leaves the same
    container ids for unchanged services, the previous config for the changed one, the previous
    env file byte for byte, the native service running its previous command, the same ports."""
    repo = hybrid
    repo.write("devup.toml", (repo.path / "devup.toml").read_text() + '[hooks]\npost_up = "true"\n')
    repo.commit("hook")
    assert repo.devup("up", "s").returncode == 0
    before_ids = _ids(repo, "s")
    env_file = repo.worktree("s") / ".env.devup"
    before_env = env_file.read_bytes()
    before_web = _web(repo, "s").cmdline()
    before_ports = json.loads(repo.devup("ls", "--json").stdout)[0]["ports"]
    _commit_in_worktree(repo, "s", "app.yaml", _compose(a1="one", a2="changed"))
    toml = (repo.path / "devup.toml").read_text()
    toml = toml.replace('GREETING = "hello"', 'GREETING = "bye"')
    toml = toml.replace('--bind 127.0.0.1"', '--bind 127.0.0.1 --directory ."')
    (repo.path / "devup.toml").write_text(toml)
    failed = repo.devup("up", "s", "--json", env={"DEVUP_FAULT": fault})
    if fault.startswith("kill"):
        assert failed.returncode == -9
        recovered = repo.devup("recover", "s")
        assert recovered.returncode == 0, recovered.stderr
    else:
        assert failed.returncode == 1, failed.stderr
        assert json.loads(failed.stdout)["status"] == "rolled_back"
    after_ids = _ids(repo, "s")
    assert after_ids["a1"] == before_ids["a1"] and after_ids["i1"] == before_ids["i1"]
    assert after_ids["a2"].endswith("running")
    seen = world.docker("exec", after_ids["a2"].split()[0], "cat", "/tmp/x").strip()
    assert seen == "two"  # the previous config, whether recreated back or never replaced
    assert env_file.read_bytes() == before_env
    assert _web(repo, "s").cmdline() == before_web
    rows = json.loads(repo.devup("ls", "--json").stdout)
    assert rows[0]["ports"] == before_ports and rows[0]["status"] == "up"
    assert repo.devup("status", "s").returncode == 0
    assert repo.devup("down", "s", "--force").returncode == 0


def test_dry_run_of_a_new_session_changes_nothing(make) -> None:
    repo = make(isolated("host") + f'[services.web]\nrun = "{HTTP_SERVICE}"\nport = true\n')
    state = Path(os.environ["DEVUP_HOME"])
    before = sorted(p.relative_to(state) for p in state.rglob("*")) if state.exists() else []
    result = repo.devup("up", "n", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["new"] is True
    actions = {(c["kind"], c["action"]) for c in doc["changes"]}
    assert {("worktree", "create"), ("branch", "create"), ("service", "start"), ("port", "lease")} <= actions
    assert not repo.worktree("n").exists() and "n" not in world.branches(repo.path)
    after = sorted(p.relative_to(state) for p in state.rglob("*")) if state.exists() else []
    assert after == before  # no journal, lease, record or lock file
    bad = repo.devup("up", "n", "--dry-run", "--mode", "nope")
    assert bad.returncode == 2


def test_a_stopped_container_is_brought_back_and_the_healthy_group_is_not_touched(hybrid) -> None:
    repo = hybrid
    assert repo.devup("up", "s").returncode == 0
    before = _ids(repo, "s")
    world.docker("stop", "-t", "1", before["i1"].split()[0])
    assert repo.devup("status", "s").returncode == 1
    plan = json.loads(repo.devup("up", "s", "--dry-run", "--json").stdout)["changes"]
    assert {"kind": "group", "name": "infra", "action": "start"} in plan
    assert {"kind": "group", "name": "app", "action": "keep"} in plan
    result = repo.devup("up", "s")
    assert result.returncode == 0, result.stderr
    after = _ids(repo, "s")
    assert after["i1"].endswith("running") and after["a1"] == before["a1"] and after["a2"] == before["a2"]
    assert repo.devup("status", "s").returncode == 0
    assert repo.devup("down", "s").returncode == 0


def test_a_mode_change_applies_as_a_reconcile_and_a_failed_one_puts_the_session_back(hybrid) -> None:
    """The mode is part of what `up` converges to (SPEC §5.12): `--mode`, or an edit of
    devup.toml's own mode; the groups and services of the new mode come and go, data stays."""
    repo = hybrid
    assert repo.devup("up", "s").returncode == 0
    before = _ids(repo, "s")
    web = _web(repo, "s").cmdline()
    env_file = repo.worktree("s") / ".env.devup"
    before_env = env_file.read_bytes()

    failed = repo.devup("up", "s", "--mode", "host", "--json", env={"DEVUP_FAULT": "raise@before:commit"})
    assert failed.returncode == 1, failed.stderr
    assert _ids(repo, "s") == before  # the same containers, running
    assert _web(repo, "s").cmdline() == web  # running again as it ran (or never stopped)
    assert env_file.read_bytes() == before_env
    assert json.loads(repo.devup("ls", "--json").stdout)[0]["mode"] == "hybrid"

    dry = repo.devup("up", "s", "--mode", "container", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = {(c["kind"], c["name"]): c["action"] for c in json.loads(dry.stdout)["changes"]}
    assert plan[("service", "web")] == "stop" and plan[("group", "app")] == "keep"
    to_container = repo.devup("up", "s", "--mode", "container")
    assert to_container.returncode == 0, to_container.stderr
    assert _ids(repo, "s") == before  # the groups run on, untouched
    assert [
        p for p in world.tagged_processes(repo_id=repo.repo_id, session="s") if "http.server" in p.cmdline()
    ] == []
    assert "DEVUP_PORT_WEB" not in repo.devup("env", "s").stdout
    assert json.loads(repo.devup("ls", "--json").stdout)[0]["mode"] == "container"

    # devup.toml's own mode edited: applied by the next `up`, without --mode.
    toml = (repo.path / "devup.toml").read_text().replace('mode = "hybrid"', 'mode = "host"')
    (repo.path / "devup.toml").write_text(toml)
    assert json.loads(repo.devup("ls", "--json").stdout)[0]["changed"] is True
    assert "`devup up s` applies it" in repo.devup("ls").stderr  # the table's reader is told too
    to_host = repo.devup("up", "s")
    assert to_host.returncode == 0, to_host.stderr
    assert _ids(repo, "s") == {}  # the groups are down
    _web(repo, "s")  # the host mode's service runs
    row = json.loads(repo.devup("ls", "--json").stdout)[0]
    assert row["mode"] == "host" and row["status"] == "up" and row["changed"] is False
    assert repo.devup("down", "s").returncode == 0
    assert _ids(repo, "s") == {}


@pytest.mark.parametrize(
    ("mode", "fault"),
    [
        ("host", "kill@after:group:app"),  # one group stopped, the other still running
        ("host", "kill@before:commit"),  # both stopped, the service restarted for the new mode
        ("container", "kill@after:service:web"),  # the service stopped
    ],
)
def test_a_mode_change_killed_midway_is_put_back_by_the_next_command(hybrid, mode: str, fault: str) -> None:
    repo = hybrid
    assert repo.devup("up", "s").returncode == 0
    before = _ids(repo, "s")
    web = _web(repo, "s").cmdline()
    env_file = repo.worktree("s") / ".env.devup"
    before_env = env_file.read_bytes()
    killed = repo.devup("up", "s", "--mode", mode, env={"DEVUP_FAULT": fault})
    assert killed.returncode == -9, killed.stderr
    recovered = repo.devup("recover", "s")
    assert recovered.returncode == 0, recovered.stderr
    assert _ids(repo, "s") == before  # the same containers, running
    assert _web(repo, "s").cmdline() == web
    assert env_file.read_bytes() == before_env
    row = json.loads(repo.devup("ls", "--json").stdout)[0]
    assert row["mode"] == "hybrid" and row["status"] == "up"
    assert repo.devup("down", "s").returncode == 0
    assert _ids(repo, "s") == {}


@pytest.mark.parametrize("fault", ["raise@during:retire", "kill@during:retire"])
def test_retired_containers_that_outlive_the_commit_are_left_to_down(hybrid, fault: str) -> None:
    """After the commit, a retired group's stopped containers are removed; when that fails (or
    devup dies there) the switch stands, they stay stopped, and `down` removes them."""
    repo = hybrid
    assert repo.devup("up", "s").returncode == 0
    before = _ids(repo, "s")
    switched = repo.devup("up", "s", "--mode", "host", env={"DEVUP_FAULT": fault})
    if fault.startswith("raise"):
        assert switched.returncode == 0, switched.stderr
        assert "stay until `devup down`" in switched.stderr
    else:
        assert switched.returncode == -9
    left = _ids(repo, "s")
    assert {svc: state.split()[0] for svc, state in left.items()} == {
        svc: state.split()[0] for svc, state in before.items()
    }
    assert all(state.endswith("exited") for state in left.values()), left
    _web(repo, "s")
    row = json.loads(repo.devup("ls", "--json").stdout)[0]
    assert row["mode"] == "host" and row["status"] == "up"
    assert repo.devup("down", "s").returncode == 0
    assert _ids(repo, "s") == {}


def test_failed_changes_in_a_row_each_put_back_what_ran_and_remove_what_they_added(hybrid) -> None:
    """A rolled-back reconcile must leave behind nothing of its own: not the config it applied
    on the way (the next failed change would "restore" it), not a volume it created."""
    repo = hybrid
    assert repo.devup("up", "s").returncode == 0
    _commit_in_worktree(repo, "s", "app.yaml", _compose(a1="one", a2="ran"))
    assert repo.devup("up", "s").returncode == 0
    ran = _ids(repo, "s")
    kept_aside = repo.tmp / "state" / "repos" / repo.repo_id / "data" / "s" / "compose"
    assert kept_aside.is_dir() and sorted(p.name for p in kept_aside.glob("*.before-*")) == []

    def seen() -> str:
        return world.docker("exec", _ids(repo, "s")["a2"].split()[0], "cat", "/tmp/x").strip()

    _commit_in_worktree(repo, "s", "app.yaml", _compose(a1="one", a2="failed-first"))
    first = repo.devup("up", "s", env={"DEVUP_FAULT": "raise@before:commit"})
    assert first.returncode == 1, first.stderr
    assert seen() == "ran"
    with_volume = (
        _compose(a1="one", a2="failed-second") + "    volumes: [fresh:/data]\nvolumes:\n  fresh: {}\n"
    )
    _commit_in_worktree(repo, "s", "app.yaml", with_volume)
    second = repo.devup("up", "s", env={"DEVUP_FAULT": "raise@before:commit"})
    assert second.returncode == 1, second.stderr
    assert seen() == "ran"  # not "failed-first"
    assert _ids(repo, "s")["a1"] == ran["a1"]
    assert [
        v for v in world.labelled("volume", repo_id=repo.repo_id, session="s") if v.endswith("_fresh")
    ] == []
    row = json.loads(repo.devup("ls", "--json").stdout)[0]
    assert row["changed"] is True  # the branch still says failed-second: `up` would apply it
    assert repo.devup("down", "s").returncode == 0


def test_dry_run_says_what_up_then_does(hybrid) -> None:
    """SPEC §5.12: `--dry-run` reports the same difference `up` applies."""
    repo = hybrid
    assert repo.devup("up", "s").returncode == 0
    nothing = json.loads(repo.devup("up", "s", "--dry-run", "--json").stdout)["changes"]
    assert nothing and {c["action"] for c in nothing} == {"keep"}  # as `up`: nothing to do
    web = _web(repo, "s").pid
    # A published port added to a compose service: a new lease, so new variables for everyone.
    with_port = "services:\n" + "\n".join(_svc("a1", "one") + _svc("a2", "two", port=9000)) + "\n"
    _commit_in_worktree(repo, "s", "app.yaml", with_port)
    dry = repo.devup("up", "s", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = {(c["kind"], c["name"]): c["action"] for c in json.loads(dry.stdout)["changes"]}
    assert plan[("container", "app/a2")] == "recreate" and plan[("container", "app/a1")] == "keep"
    assert plan[("service", "web")] == "restart" and plan[("env_file", "env file")] == "write"
    assert [k for (kind, k), action in plan.items() if kind == "port" and action == "lease"]
    before = _ids(repo, "s")
    applied = repo.devup("up", "s")
    assert applied.returncode == 0, applied.stderr
    after = _ids(repo, "s")
    assert after["a1"] == before["a1"] and after["a2"] != before["a2"]
    assert _web(repo, "s").pid != web  # restarted, as said
    assert "DEVUP_PORT_A2" in repo.devup("env", "s").stdout
    assert repo.devup("down", "s").returncode == 0


def test_a_volume_the_config_no_longer_names_is_kept_listed_and_removed_by_down(hybrid) -> None:
    """SPEC §5.12: a reconcile never removes a data volume; one the new config no longer names
    is kept, listed by `status`, and removed by `down` (here its group stays)."""
    repo = hybrid
    with_volume = _compose(a1="one", a2="two") + "    volumes: [data:/data]\nvolumes:\n  data: {}\n"
    repo.write("app.yaml", with_volume)
    repo.commit("a volume")
    assert repo.devup("up", "s").returncode == 0
    a2 = _ids(repo, "s")["a2"].split()[0]
    world.docker("exec", a2, "sh", "-c", "echo precious > /data/f")
    _commit_in_worktree(repo, "s", "app.yaml", _compose(a1="one"))  # a2 and its volume gone
    applied = repo.devup("up", "s")
    assert applied.returncode == 0, applied.stderr
    volume = next(
        v for v in world.labelled("volume", repo_id=repo.repo_id, session="s") if v.endswith("_data")
    )
    seen = world.docker("run", "--rm", "-v", f"{volume}:/d", BUSYBOX, "cat", "/d/f").strip()
    assert seen == "precious"
    status = repo.devup("status", "s", "--json")
    listed = [u for u in json.loads(status.stdout)["units"] if u["kind"] == "volumes"]
    assert listed and volume in listed[0]["state"], status.stdout
    assert repo.devup("down", "s").returncode == 0
    assert world.labelled("volume", repo_id=repo.repo_id) == []
