"""What differs between Docker and Podman, seen the way a user sees it (SPEC §6 Engines): run on
whichever engine DEVUP_TEST_ENGINE names (scripts/test runs it on both)."""

from __future__ import annotations

import json
import time

import docker
import pytest

from devup.engine import facts
from tests import world
from tests.conftest import TEST_ENGINE, isolated

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

# Healthy while /tmp/ok exists: a test breaks it by removing the file.
BREAKABLE = """
services:
  app:
    image: devup-local/busybox:latest
    init: true
    command: ["sh", "-c", "touch /tmp/ok && exec sleep 600"]
    healthcheck: {test: ["CMD", "test", "-e", "/tmp/ok"], interval: 1s, timeout: 2s, retries: 2}
"""


def _toml() -> str:
    return isolated("container") + '\n[groups.app]\nfiles = ["compose/app.yaml"]\n'


def test_status_reports_a_container_that_became_unhealthy(make):
    """Podman's Docker-compatible container list carries no health: `status` said a container
    was healthy when its check failed. The engine's timer runs the check on Docker; on Podman
    without systemd nothing does after `up`, so the test runs it as the timer would."""
    repo = make(_toml(), {"compose/app.yaml": BREAKABLE})
    repo.up_json("h")
    assert repo.devup("status", "h").returncode == 0
    (cid,) = world.docker("ps", "-q", "--filter", f"label=dev.devup.repo={repo.repo_id}").split()
    world.docker("exec", cid, "rm", "/tmp/ok")
    api = docker.from_env().api
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if TEST_ENGINE == "podman":
            api.get(f"{api.base_url}/v4.0.0/libpod/containers/{cid}/healthcheck")
        if api.inspect_container(cid)["State"]["Health"]["Status"] == "unhealthy":
            break
        time.sleep(1)
    status = repo.devup("status", "h", "--json")
    assert status.returncode == 1, status.stdout
    units = json.loads(status.stdout)["units"]
    assert [u["healthy"] for u in units] == [False] and "unhealthy" in units[0]["state"]
    assert repo.devup("down", "h").returncode == 0


def test_doctor_names_the_engine_that_answers(make):
    repo = make("")
    doc = json.loads(repo.devup("doctor", "--json").stdout)
    engine = doc["checks"]["engine"]
    assert engine["ok"] and engine["kind"] == {"docker": "Docker", "podman": "Podman"}[TEST_ENGINE]
    assert engine["version"].startswith(engine["kind"]) and engine["rootless"] in (True, False)
    text = repo.devup("doctor").stdout
    assert f"{engine['kind']} " in text


def test_podman_lacks_are_named_with_their_fix():
    """No engine needed: what `doctor` derives from libpod's /info."""
    under_systemd = facts.podman_lacks(
        local=False, rootless=False, cgroup_version="2", cgroup_manager="systemd"
    )
    assert under_systemd == []
    bare = facts.podman_lacks(local=False, rootless=True, cgroup_version="1", cgroup_manager="cgroupfs")
    said = " | ".join(lack.what + " / " + lack.fix for lack in bare)
    assert "devup runs the healthchecks" in said and "cannot pause" in said and "cgroup v2" in said


HOST_GATEWAY = """
services:
  app:
    image: devup-local/busybox:latest
    command: ["sleep", "600"]
    extra_hosts: ["host.docker.internal:host-gateway"]
"""


def test_what_podman_would_silently_not_do_is_refused_at_preflight(make):
    """SPEC §6: Podman 4.3 starts a container with `extra_hosts: NAME:host-gateway` and writes the
    word host-gateway into its /etc/hosts (the name does not resolve); devup refuses it there
    (exit 2, naming the service, the key and the version that does it), and Docker does it."""
    repo = make(_toml(), {"compose/app.yaml": HOST_GATEWAY})
    result = repo.devup("up", "g")
    if TEST_ENGINE == "podman" and tuple(int(x) for x in podman_version().split(".")[:2]) < (4, 7):
        assert result.returncode == 2, result.stderr
        assert "service app sets extra_hosts: host.docker.internal=host-gateway" in result.stderr
        assert "Podman 4.7" in result.stderr
        assert world.labelled("container", repo_id=repo.repo_id) == []
    else:
        assert result.returncode == 0, result.stderr
        (cid,) = world.docker("ps", "-q", "--filter", f"label=dev.devup.repo={repo.repo_id}").split()
        hosts = world.docker("exec", cid, "cat", "/etc/hosts")
        assert any(
            line.split()[1:] == ["host.docker.internal"] and line[0].isdigit() for line in hosts.splitlines()
        )
        assert repo.devup("down", "g").returncode == 0


def podman_version() -> str:
    return world.docker("version", "--format", "{{.Server.Version}}").strip()


def test_engine_gaps_are_found_in_the_model_with_the_version_that_fixes_them():
    from devup import compose_model, preflight

    data = {
        "services": {
            "web": {"image": "x", "extra_hosts": ["h=host-gateway", "db=10.0.0.9"]},
            "ml": {"image": "x", "deploy": {"resources": {"reservations": {"devices": [{"count": -1}]}}}},
            "ok": {"image": "x", "extra_hosts": ["db=10.0.0.9"]},
        }
    }
    gaps = compose_model.parse(data, project="p").gaps
    assert [(g.where, g.key, g.fixed_in) for g in gaps] == [
        ("service web", "extra_hosts", "4.7"),
        ("service ml", "deploy.resources.reservations.devices", None),
    ]
    assert preflight._older("4.3.1", "4.7") and not preflight._older("4.7.0", "4.7")
    assert not preflight._older("5.0.2", "4.7")


WITH_VOLUME = """
services:
  app:
    image: devup-local/busybox:latest
    command: ["sleep", "600"]
    volumes: [data:/data]
volumes:
  data: {}
"""


def test_a_rollback_removes_only_its_own_volumes(make):
    """SPEC §5.6 on Podman: a rollback lists what is left of its project by three labels, and
    Podman 4.3 answered a volume list filtered by several labels with the volumes carrying any of
    them: the rollback of one session removed the volumes of every other session of the repo."""
    repo = make(_toml(), {"compose/app.yaml": WITH_VOLUME})
    repo.up_json("keep")
    kept = world.labelled("volume", repo_id=repo.repo_id, session="keep")
    assert len(kept) == 1
    failed = repo.devup("up", "n", env={"DEVUP_FAULT": "raise@after:group:app"})
    assert failed.returncode == 1, failed.stderr
    assert world.labelled("volume", repo_id=repo.repo_id, session="n") == []
    assert world.labelled("volume", repo_id=repo.repo_id) == kept
    assert repo.devup("down", "keep").returncode == 0
