"""Real-world compose files (issue 10): the shapes people's stacks have, run as devup groups on
the real engine, each checked through docker and git, with another session's objects untouched."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request

import pytest

from tests import world
from tests.conftest import BUSYBOX, TEST_ENGINE, Repo, isolated, project_name

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("engine")]

GROUP = '[groups.app]\nfiles = ["{file}"]\nwait_timeout = 60\n'


def httpd(port: str, text: str = "${DEVUP_SESSION}") -> str:
    """A busybox command that serves `text` on `port` (container side)."""
    return (
        f'["sh", "-c", "mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p {port} -h /www"]'
    )


def inspect(container: str) -> dict:
    return json.loads(world.docker("inspect", container))[0]


def containers(repo: Repo, session: str) -> dict[str, str]:
    """compose service -> container name, for one session."""
    out = world.docker(
        "ps",
        "-a",
        "--filter",
        f"label=dev.devup.repo={repo.repo_id}",
        "--filter",
        f"label=dev.devup.session={session}",
        "--format",
        '{{.Label "com.docker.compose.service"}}\t{{.Names}}',
    )
    return dict(line.split("\t") for line in out.splitlines() if line)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def assert_gone(repo: Repo, session: str) -> None:
    for kind in ("container", "network", "volume"):
        assert world.labelled(kind, repo_id=repo.repo_id, session=session) == []


# --- preflight sees what compose sees: committed neighbours of a root-level file ------------


@pytest.mark.parametrize("shape", ["dotenv", "mailcow-symlink"])
def test_root_level_file_with_a_committed_env_that_moves_its_port(make, shape):
    """sentry's committed .env / mailcow's .env -> mailcow.conf: the .env moves the container
    port and the bind address; the lease and the override follow what compose reads."""
    compose = "\n".join(
        [
            "services:",
            "  nginx:",
            f"    image: {BUSYBOX}",
            "    init: true",
            f"    command: {httpd('${HTTP_PORT:-80}')}",
            '    ports: ["${HTTP_BIND:-0.0.0.0}:${HTTP_PORT:-80}:${HTTP_PORT:-80}"]',
            "",
        ]
    )
    settings = "HTTP_PORT=8088\nHTTP_BIND=127.0.0.1\n"
    files = {"docker-compose.yml": compose}
    if shape == "dotenv":
        files[".env"] = settings
    else:
        files["mailcow.conf"] = settings
    repo = make(isolated("container") + GROUP.format(file="docker-compose.yml"), files)
    if shape == "mailcow-symlink":
        os.symlink("mailcow.conf", repo.path / ".env")
        repo.commit("the .env is a symlink to mailcow.conf, as mailcow commits it")
        assert world.git(repo.path, "ls-files", "-s", ".env").startswith("120000")
    doc = repo.up_json("m")
    try:
        assert set(doc["ports"]) == {"NGINX", "NGINX_8088"}  # the .env's port, not 80
        bindings = inspect(containers(repo, "m")["nginx"])["HostConfig"]["PortBindings"]
        assert bindings == {"8088/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(doc["ports"]["NGINX"])}]}
        assert get(f"http://127.0.0.1:{doc['ports']['NGINX']}/").strip() == "m"
    finally:
        down = repo.devup("down", "m")
    assert down.returncode == 0, down.stderr
    assert_gone(repo, "m")


def test_env_file_extends_and_include_neighbours_are_seen(make):
    """plausible's `env_file: plausible-conf.env`, netbox's `env/*.env`, kafka-stack's
    `extends: file:`, neosync's `include:`: all committed next to a root-level file."""
    files = {
        "docker-compose.yml": f"""
            include:
              - infra/db.yaml
            services:
              web:
                extends:
                  file: conduktor.yml
                  service: base
                env_file: [plausible-conf.env, env/netbox.env]
                command: {httpd("8080", "$$PLAUSIBLE-$$NETBOX-$$BASE")}
                ports: ["8080:8080"]
            """,
        "conduktor.yml": f"""
            services:
              base:
                image: {BUSYBOX}
                init: true
                environment: {{BASE: from-extends}}
            """,
        "plausible-conf.env": "PLAUSIBLE=from-env-file\n",
        "env/netbox.env": "NETBOX=from-env-dir\n",
        "infra/db.yaml": f"""
            services:
              db:
                image: {BUSYBOX}
                init: true
                env_file: [db.env]
                command: {httpd("5432", "$$DB_NAME")}
                ports: ["5432:5432"]
            """,
        "infra/db.env": "DB_NAME=from-include\n",
    }
    # Unrelated files the preflight has no reason to read (the monorepo case, see bench/preflight.py).
    files |= {f"other/pkg{i}/file.txt": f"{i}\n" for i in range(50)}
    repo = make(isolated("container") + GROUP.format(file="docker-compose.yml"), files)
    doc = repo.up_json("n")
    try:
        assert (
            get(f"http://127.0.0.1:{doc['ports']['WEB']}/").strip()
            == "from-env-file-from-env-dir-from-extends"
        )
        assert get(f"http://127.0.0.1:{doc['ports']['DB']}/").strip() == "from-include"
        assert set(containers(repo, "n")) == {"web", "db"}
    finally:
        down = repo.devup("down", "n")
    assert down.returncode == 0, down.stderr
    assert_gone(repo, "n")


def test_a_neighbour_missing_from_the_branch_is_still_an_invalid_file(make):
    repo = make(
        isolated("container") + GROUP.format(file="docker-compose.yml"),
        {"docker-compose.yml": f"services:\n  web:\n    image: {BUSYBOX}\n    env_file: [missing.env]\n"},
    )
    (repo.path / "missing.env").write_text("X=1\n")  # in the main checkout only, never committed
    result = repo.devup("up", "x")
    assert result.returncode == 2, result.stderr
    assert "invalid compose files" in result.stderr and "missing.env" in result.stderr
    assert "x" not in world.branches(repo.path) and repo.worktree("x") not in world.worktree_paths(repo.path)


# --- container_name ------------------------------------------------------------------------


CONTAINER_NAMES = f"""
services:
  db:
    image: {BUSYBOX}
    init: true
    container_name: fixed-db
    command: {httpd("8080")}
    networks: [back]
  app:
    image: {BUSYBOX}
    init: true
    container_name: fixed-app
    command: ["sleep", "3600"]
    networks: [back, default]
    depends_on: [db]
  ui:
    image: {BUSYBOX}
    init: true
    command: ["sleep", "3600"]
networks:
  back: {{}}
"""


def test_container_name_is_per_session_and_the_fixed_name_still_resolves(make):
    repo = make(isolated("container") + GROUP.format(file="compose.yaml"), {"compose.yaml": CONTAINER_NAMES})
    repo.up_json("a")
    try:
        repo.up_json("b")  # a second copy of the same fixed names: refused before issue 10
        for session in ("a", "b"):
            names = containers(repo, session)
            assert "fixed-db" not in names.values() and "fixed-app" not in names.values()
            # The app reaches the db by its fixed name, and gets its own session's db.
            page = world.docker("exec", names["app"], "wget", "-qO-", "http://fixed-db:8080/")
            assert page.strip() == session
            # On the default network too (the service joins it), for a service without networks:.
            ui_sees = world.docker("exec", names["ui"], "nslookup", "fixed-app")
            app_ips = {n["IPAddress"] for n in inspect(names["app"])["NetworkSettings"]["Networks"].values()}
            assert any(ip in ui_sees for ip in app_ips), ui_sees
        assert repo.devup("down", "a").returncode == 0
        assert_gone(repo, "a")
        names = containers(repo, "b")
        assert world.docker("exec", names["app"], "wget", "-qO-", "http://fixed-db:8080/").strip() == "b"
    finally:
        repo.devup("down", "a")
        down = repo.devup("down", "b")
    assert down.returncode == 0, down.stderr
    assert_gone(repo, "b")


# --- fixed-name networks and volumes, external ones -----------------------------------------


def test_a_fixed_network_name_is_per_session_and_a_stopped_session_resumes(make):
    """temporal / neosync / frappe: `networks: default: name: temporal-network`. A second
    session's `up` must not touch the stopped first session's network."""
    fixed = f"temporal-network-{secrets.token_hex(3)}"
    shared = f"devup-test-shared-{secrets.token_hex(3)}"
    world.docker("network", "create", shared)
    compose = f"""
        services:
          temporal:
            image: {BUSYBOX}
            init: true
            command: {httpd("7233")}
            ports: ["7233:7233"]
            volumes: [data:/data]
            networks: [default, outside]
        networks:
          default:
            name: {fixed}
          outside:
            external: true
            name: {shared}
        volumes:
          data:
            name: temporal-data
        """
    repo = make(isolated("container") + GROUP.format(file="compose.yaml"), {"compose.yaml": compose})
    try:
        first = repo.devup("up", "one")
        assert first.returncode == 0, first.stderr
        assert f"external network {shared}" in first.stderr and "every session shares" in first.stderr
        [net_one] = world.labelled("network", repo_id=repo.repo_id, session="one")
        id_one = inspect_network(net_one)["Id"]
        [vol_one] = world.labelled("volume", repo_id=repo.repo_id, session="one")
        world.docker("exec", containers(repo, "one")["temporal"], "sh", "-c", "echo one > /data/mark")
        assert repo.devup("stop", "one").returncode == 0

        two = repo.up_json("two")
        [net_two] = world.labelled("network", repo_id=repo.repo_id, session="two")
        assert net_two != net_one and fixed not in (net_one, net_two)
        assert inspect_network(net_one)["Id"] == id_one  # the stopped session's network is untouched
        assert world.labelled("volume", repo_id=repo.repo_id, session="two") != [vol_one]

        resumed = repo.up_json("one")
        assert resumed["resumed"] is True
        assert inspect_network(net_one)["Id"] == id_one
        assert world.docker("exec", containers(repo, "one")["temporal"], "cat", "/data/mark").strip() == "one"
        assert get(f"http://127.0.0.1:{resumed['ports']['TEMPORAL']}/").strip() == "one"
        assert get(f"http://127.0.0.1:{two['ports']['TEMPORAL']}/").strip() == "two"
        # The external network is the user's: never labelled, and both sessions' containers are on it.
        outside = inspect_network(shared)
        assert not (outside.get("Labels") or {}).get("dev.devup.session")
        assert len(outside["Containers"]) == 2
        for session in ("one", "two"):
            assert repo.devup("down", session).returncode == 0
            assert_gone(repo, session)
        assert inspect_network(shared)["Id"] == outside["Id"]  # down never removes an external network
    finally:
        for session in ("one", "two"):
            repo.devup("down", session)
        subprocess.run(["docker", "network", "rm", shared], capture_output=True)


def inspect_network(name: str) -> dict:
    return json.loads(world.docker("network", "inspect", name))[0]


# --- what cannot be made per-session: exit 2 at preflight -----------------------------------


REFUSED = {
    "network_mode": (
        "services:\n  web:\n    image: {image}\n    network_mode: host\n",
        "service web sets network_mode: host",
    ),
    "subnet": (
        "services:\n  web:\n    image: {image}\n    networks: [net]\n"
        "networks:\n  net:\n    ipam:\n      config:\n        - subnet: 198.18.42.0/24\n",
        "network net sets ipam.config[0].subnet: 198.18.42.0/24",
    ),
    "bridge_name": (
        "services:\n  web:\n    image: {image}\n    networks: [net]\n"
        "networks:\n  net:\n    driver_opts:\n      com.docker.network.bridge.name: br-fixed\n",
        "network net sets driver_opts.com.docker.network.bridge.name: br-fixed",
    ),
    "ipv4_address": (
        "services:\n  web:\n    image: {image}\n    networks:\n      net:\n        ipv4_address: 198.18.43.10\n"
        "networks:\n  net: {{}}\n",
        "service web sets networks.net.ipv4_address: 198.18.43.10",
    ),
}


@pytest.mark.parametrize("shape", sorted(REFUSED))
def test_what_cannot_exist_once_per_session_is_refused_at_preflight(make, shape):
    compose, message = REFUSED[shape]
    repo = make(
        isolated("container") + GROUP.format(file="compose.yaml"),
        {"compose.yaml": compose.format(image=BUSYBOX)},
    )
    result = repo.devup("up", "h")
    assert result.returncode == 2, result.stderr
    text = " ".join(result.stderr.split())
    assert f"group app: {message}" in text and "hint" in text.lower()
    assert "h" not in world.branches(repo.path) and repo.worktree("h") not in world.worktree_paths(repo.path)
    assert_gone(repo, "h")


def test_every_key_that_cannot_exist_once_per_session_is_named_in_one_error(make):
    """compose-corpus F4 (mailcow has four): a user fixes them all after one run, not one a run."""
    compose = f"""
        services:
          host:
            image: {BUSYBOX}
            network_mode: host
          fixed:
            image: {BUSYBOX}
            networks:
              net:
                ipv4_address: 198.18.43.10
        networks:
          net:
            driver_opts:
              com.docker.network.bridge.name: br-fixed
            ipam:
              config:
                - subnet: 198.18.43.0/24
        """
    repo = make(isolated("container") + GROUP.format(file="compose.yaml"), {"compose.yaml": compose})
    result = repo.devup("up", "h")
    assert result.returncode == 2, result.stderr
    text = " ".join(result.stderr.split())
    for message in (
        "service host sets network_mode: host",
        "service fixed sets networks.net.ipv4_address: 198.18.43.10",
        "network net sets ipam.config[0].subnet: 198.18.43.0/24",
        "network net sets driver_opts.com.docker.network.bridge.name: br-fixed",
    ):
        assert message in text, text
    assert text.count("error:") == 1 and "group app" in text
    assert "h" not in world.branches(repo.path) and repo.worktree("h") not in world.worktree_paths(repo.path)
    assert_gone(repo, "h")


def test_a_group_whose_services_are_all_behind_profiles_is_refused_at_preflight(make):
    """compose-corpus F3 (hoppscotch): compose would fail `up` with "no service selected"; preflight
    says so first, naming the profiles, and the hint's COMPOSE_PROFILES in [env] works. The
    obsolete `version:` makes compose warn on stderr, which must not read as a profile."""
    compose = f"""
        version: "3.8"
        services:
          web:
            image: {BUSYBOX}
            init: true
            command: ["sleep", "3600"]
            profiles: [web]
          worker:
            image: {BUSYBOX}
            init: true
            command: ["sleep", "3600"]
            profiles: [jobs, web]
        """
    toml = isolated("container") + GROUP.format(file="compose.yaml")
    repo = make(toml, {"compose.yaml": compose})
    result = repo.devup("up", "h")
    assert result.returncode == 2, result.stderr
    text = " ".join(result.stderr.split())
    assert "group app: no service would start" in text, text
    assert "profile (jobs, web) and" in text and "COMPOSE_PROFILES" in text, text
    assert "h" not in world.branches(repo.path) and repo.worktree("h") not in world.worktree_paths(repo.path)
    assert_gone(repo, "h")
    repo.write("devup.toml", toml + '[env]\nCOMPOSE_PROFILES = "jobs"\n')
    repo.commit("enable the jobs profile")
    try:
        repo.up_json("h")
        assert set(containers(repo, "h")) == {"worker"}
    finally:
        down = repo.devup("down", "h")
    assert down.returncode == 0, down.stderr
    assert_gone(repo, "h")


# --- what every session shares: said at `up`, never refused ----------------------------------


def test_a_host_bind_outside_the_worktree_is_shared_and_up_says_so(make, tmp_path):
    """compose-corpus F5 (jitsi's ~/.jitsi-meet-cfg): every session mounts the same host folder.
    A folder of the worktree, a read-only host view and a named volume are not shared writes."""
    shared = tmp_path / "shared-config"
    shared.mkdir()
    compose = f"""
        services:
          web:
            image: {BUSYBOX}
            init: true
            command: ["sleep", "3600"]
            volumes:
              - {shared}:/config
              - ./data:/data
              - {tmp_path}:/host:ro
              - cache:/cache
          side:
            image: {BUSYBOX}
            init: true
            command: ["sleep", "3600"]
            volumes: ["./data:/data"]
        volumes:
          cache: {{}}
        """
    repo = make(isolated("container") + GROUP.format(file="compose.yaml"), {"compose.yaml": compose})
    result = repo.devup("up", "b")
    try:
        assert result.returncode == 0, result.stderr
        text = " ".join(result.stderr.split())
        assert f"group app bind-mounts {shared} (service web)" in text, text
        assert "every session shares it" in text, text
        for quiet in ("(service side)", f"{tmp_path} (service", "cache (service", "/data"):
            assert quiet not in text, text
        assert set(world.running_containers(repo_id=repo.repo_id, session="b")) == set(
            containers(repo, "b").values()
        )
        assert set(containers(repo, "b")) == {"web", "side"}
    finally:
        down = repo.devup("down", "b")
    assert down.returncode == 0, down.stderr
    assert_gone(repo, "b")


# --- readiness: a restarting container is not up ---------------------------------------------


def test_a_crash_looping_container_fails_the_readiness_wait_and_rolls_back(make):
    compose = f"""
        services:
          ok:
            image: {BUSYBOX}
            init: true
            command: ["sleep", "3600"]
          flap:
            image: {BUSYBOX}
            restart: always
            command: ["sh", "-c", "echo 'bind: address already in use'; sleep 0.2; exit 1"]
        """
    repo = make(isolated("container") + GROUP.format(file="compose.yaml"), {"compose.yaml": compose})
    result = repo.devup("up", "r", "--json")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "rolled_back" and doc["error"]["step"] == "group:app"
    assert "flap" in doc["error"]["message"] and "restart" in doc["error"]["message"]
    assert_gone(repo, "r")
    assert "r" not in world.branches(repo.path) and repo.worktree("r") not in world.worktree_paths(repo.path)


def test_a_service_without_healthcheck_that_dies_within_min_uptime_fails_the_group(make):
    """SPEC §3 min_uptime (default 2 s): `--wait` returns as soon as the container runs; one that
    exits a second later and is restarted by `restart: always` was reported up."""
    compose = f"""
        services:
          ok:
            image: {BUSYBOX}
            init: true
            command: ["sleep", "3600"]
          dies:
            image: {BUSYBOX}
            restart: always
            command: ["sh", "-c", "sleep 1; exit 1"]
        """
    repo = make(isolated("container") + GROUP.format(file="compose.yaml"), {"compose.yaml": compose})
    result = repo.devup("up", "u", "--json")
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "rolled_back" and doc["error"]["step"] == "group:app", doc
    assert "dies" in doc["error"]["message"] and "min_uptime" in doc["error"]["message"], doc
    assert "ok (" not in doc["error"]["message"], doc
    assert_gone(repo, "u")
    assert "u" not in world.branches(repo.path) and repo.worktree("u") not in world.worktree_paths(repo.path)


def test_services_that_stay_up_for_min_uptime_pass_and_a_finished_one_shot_is_not_a_failure(make):
    compose = f"""
        services:
          ok:
            image: {BUSYBOX}
            init: true
            restart: always
            command: ["sleep", "3600"]
            depends_on:
              migrate: {{condition: service_completed_successfully}}
          migrate:
            image: {BUSYBOX}
            command: ["sh", "-c", "sleep 0.3; exit 0"]
        """
    toml = isolated("container") + GROUP.format(file="compose.yaml") + "min_uptime = 1.5\n"
    repo = make(toml, {"compose.yaml": compose})
    result = repo.devup("up", "s", "--json")
    returned = time.time()
    try:
        assert result.returncode == 0, result.stderr
        ok = inspect(containers(repo, "s")["ok"])
        assert ok["State"]["Running"] and ok["RestartCount"] == 0
        # `up` returned only once ok had run min_uptime (the local engine shares our clock).
        started = datetime.datetime.fromisoformat(ok["State"]["StartedAt"][:26].rstrip("Z") + "+00:00")
        assert returned - started.timestamp() >= 1.5
    finally:
        down = repo.devup("down", "s")
    assert down.returncode == 0, down.stderr
    assert_gone(repo, "s")


# --- ports: one lease per published port, IPv6 host IPs kept --------------------------------


def test_one_container_port_published_twice_gets_two_leases_and_ipv6_keeps_its_address(make):
    compose = f"""
        services:
          web:
            image: {BUSYBOX}
            init: true
            command: ["sh", "-c", "mkdir -p /www && echo hi > /www/index.html && httpd -p 9000 -h /www && exec httpd -f -p 80 -h /www"]
            ports: ["8080:80", "8081:80", "[::1]:9000:9000"]
        """
    repo = make(isolated("container") + GROUP.format(file="compose.yaml"), {"compose.yaml": compose})
    if TEST_ENGINE == "podman":
        # Podman 4.3 starts the container and forwards nothing on [::1]: refused at preflight.
        refused = repo.devup("up", "p")
        assert refused.returncode == 2, refused.stderr
        assert "service web sets ports: [::1]:" in refused.stderr and ":9000" in refused.stderr
        assert_gone(repo, "p")
        return
    doc = repo.up_json("p")
    try:
        ports = doc["ports"]
        assert set(ports) == {"WEB", "WEB_80", "WEB_80_2", "WEB_9000"}
        assert ports["WEB"] == ports["WEB_80"]
        assert len({ports["WEB_80"], ports["WEB_80_2"], ports["WEB_9000"]}) == 3
        bindings = inspect(containers(repo, "p")["web"])["HostConfig"]["PortBindings"]
        assert sorted(b["HostPort"] for b in bindings["80/tcp"]) == sorted(
            [str(ports["WEB_80"]), str(ports["WEB_80_2"])]
        )
        assert bindings["9000/tcp"] == [{"HostIp": "::1", "HostPort": str(ports["WEB_9000"])}]
        for port in (ports["WEB_80"], ports["WEB_80_2"]):
            assert get(f"http://127.0.0.1:{port}/").strip() == "hi"
        assert get(f"http://[::1]:{ports['WEB_9000']}/").strip() == "hi"
        env = (repo.worktree("p") / ".env.devup").read_text()
        assert f"DEVUP_PORT_WEB_80_2={ports['WEB_80_2']}" in env
    finally:
        down = repo.devup("down", "p")
    assert down.returncode == 0, down.stderr
    assert_gone(repo, "p")


# --- project names: two clones, and sessions recorded before the change ---------------------


def test_two_clones_run_a_session_of_the_same_name_and_down_leaves_the_other(tmp_path, make):
    """Same [project].name, same folder name (`shop`), two places: two projects."""
    toml = isolated("container", project="shop") + GROUP.format(file="compose.yaml")
    compose = f"services:\n  web:\n    image: {BUSYBOX}\n    init: true\n    command: {httpd('8080')}\n    ports: ['8080:8080']\n"
    first = make(toml, {"compose.yaml": compose})
    other = tmp_path / "elsewhere" / first.path.name
    other.parent.mkdir()
    world.git(first.path.parent, "clone", "-q", str(first.path), str(other))
    second = Repo(path=other, tmp=tmp_path)
    second.repo_id = hashlib.sha256(str((other / ".git").resolve()).encode()).hexdigest()[:16]
    assert second.repo_id != first.repo_id
    try:
        a = first.up_json("s")
        b = second.up_json("s")
        assert a["projects"] != b["projects"]
        mine, theirs = containers(first, "s")["web"], containers(second, "s")["web"]
        assert (
            inspect(mine)["Config"]["Labels"]["com.docker.compose.project"]
            != (inspect(theirs)["Config"]["Labels"]["com.docker.compose.project"])
        )
        started = inspect(theirs)["State"]["StartedAt"]
        down = first.devup("down", "s")
        assert down.returncode == 0, down.stderr
        assert_gone(first, "s")
        assert world.running_containers(repo_id=second.repo_id, session="s") == [theirs]
        assert inspect(theirs)["State"]["StartedAt"] == started
        assert get(f"http://127.0.0.1:{b['ports']['WEB']}/").strip() == "s"
    finally:
        first.devup("down", "s")
        down = second.devup("down", "s")
    assert down.returncode == 0, down.stderr
    assert_gone(second, "s")


OLD_NAMES = (
    "import sys, runpy\n"
    "from devup import model\n"
    "model.Identity.compose_project = lambda self, group: f'{self.project}_{self.session}_{group}'\n"
    "sys.argv = ['devup', *sys.argv[1:]]\n"
    "runpy.run_module('devup', run_name='__main__')\n"
)


def test_a_session_brought_up_under_the_old_project_names_keeps_working(make):
    """Sessions recorded before issue 10 (`<slug>_<session>_<group>`): resume, gc and down use
    the recorded project, never a recomputed one."""
    slug = project_name()
    compose = f"services:\n  web:\n    image: {BUSYBOX}\n    init: true\n    command: {httpd('8080')}\n    ports: ['8080:8080']\n    volumes: [data:/data]\nvolumes:\n  data: {{}}\n"
    repo = make(
        isolated("container", project=slug) + GROUP.format(file="compose.yaml"), {"compose.yaml": compose}
    )
    old = subprocess.run(
        [sys.executable, "-c", OLD_NAMES, "up", "o", "--json"],
        cwd=repo.path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert old.returncode == 0, old.stderr
    assert json.loads(old.stdout)["projects"] == [f"{slug}_o_app"]
    try:
        web = containers(repo, "o")["web"]
        assert inspect(web)["Config"]["Labels"]["com.docker.compose.project"] == f"{slug}_o_app"
        world.docker("exec", web, "sh", "-c", "echo kept > /data/mark")
        assert repo.devup("stop", "o").returncode == 0
        resumed = repo.up_json("o")
        assert resumed["projects"] == [f"{slug}_o_app"]
        assert containers(repo, "o") == {"web": web}  # the same container, resumed
        assert world.docker("exec", web, "cat", "/data/mark").strip() == "kept"
        gc = json.loads(repo.devup("gc", "--dry-run", "--json").stdout)
        assert [o for o in gc["orphans"] if o["session"] == "o"] == []
        down = repo.devup("down", "o")
        assert down.returncode == 0, down.stderr
        assert_gone(repo, "o")
        left = world.docker("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={slug}_o_app")
        assert left.strip() == ""
    finally:
        with contextlib.suppress(Exception):
            repo.devup("down", "o")


# --- what the rewrite creates is rolled back like everything else ----------------------------


@pytest.mark.parametrize("fault", ["raise", "kill"])
def test_a_failed_or_killed_up_removes_the_renamed_network_volume_and_container(make, fault):
    """The per-session names derive from the session: a rollback (or `recover` after SIGKILL)
    finds the renamed network, volume and container through the journaled compose project."""
    compose = f"""
        services:
          db:
            image: {BUSYBOX}
            init: true
            container_name: fixed-db
            command: ["sleep", "3600"]
            volumes: [data:/data]
        networks:
          default:
            name: fixed-net
        volumes:
          data:
            name: fixed-data
        """
    repo = make(isolated("container") + GROUP.format(file="compose.yaml"), {"compose.yaml": compose})
    repo.up_json("keep")  # another session, which nothing below may touch
    kept_ids = {
        kind: world.labelled(kind, repo_id=repo.repo_id, session="keep")
        for kind in ("container", "network", "volume")
    }
    try:
        result = repo.devup("up", "f", env={"DEVUP_FAULT": f"{fault}@after:group:app"})
        if fault == "kill":
            assert result.returncode == -9
            assert world.labelled("network", repo_id=repo.repo_id, session="f")  # the kill left them
            recovered = repo.devup("recover", "f")
            assert recovered.returncode == 0, recovered.stderr
        else:
            assert result.returncode == 1, result.stderr
        assert_gone(repo, "f")
        # Neither session ever used the file's fixed names on the engine.
        assert "fixed-db" not in world.docker("ps", "-a", "--format", "{{.Names}}").split()
        assert "fixed-net" not in world.docker("network", "ls", "--format", "{{.Name}}").split()
        assert "fixed-data" not in world.docker("volume", "ls", "-q").split()
        assert "f" not in world.branches(repo.path)
        after = {
            kind: world.labelled(kind, repo_id=repo.repo_id, session="keep")
            for kind in ("container", "network", "volume")
        }
        assert after == kept_ids and world.running_containers(repo_id=repo.repo_id, session="keep")
    finally:
        repo.devup("down", "keep")
    assert_gone(repo, "keep")


def test_a_group_joining_another_groups_fixed_network_as_external_gets_its_sessions_copy(make):
    """One group creates `name: temporal-network`, the next joins it as `external: true` (the
    way stacks split over several files share a network): each session's groups meet on the
    session's own copy, and nobody joins a network named temporal-network."""
    fixed = f"temporal-network-{secrets.token_hex(3)}"
    infra = f"""
        services:
          temporal:
            image: {BUSYBOX}
            init: true
            command: {httpd("7233")}
        networks:
          default:
            name: {fixed}
        """
    app = f"""
        services:
          ui:
            image: {BUSYBOX}
            init: true
            command: ["sleep", "3600"]
            networks: [temporal]
        networks:
          temporal:
            external: true
            name: {fixed}
        """
    toml = (
        isolated("container")
        + '[groups.infra]\nfiles = ["infra.yaml"]\n'
        + '[groups.app]\nfiles = ["app.yaml"]\ndepends_on = ["infra"]\n'
    )
    repo = make(toml, {"infra.yaml": infra, "app.yaml": app})
    try:
        for session in ("a", "b"):
            result = repo.devup("up", session)
            assert result.returncode == 0, result.stderr
            assert "every session shares" not in result.stderr
        for session in ("a", "b"):
            ui = containers(repo, session)["ui"]
            page = world.docker("exec", ui, "wget", "-qO-", "http://temporal:7233/")
            assert page.strip() == session
        assert fixed not in world.docker("network", "ls", "--format", "{{.Name}}").split()
        assert repo.devup("down", "a").returncode == 0
        assert_gone(repo, "a")
        assert (
            world.docker("exec", containers(repo, "b")["ui"], "wget", "-qO-", "http://temporal:7233/").strip()
            == "b"
        )
    finally:
        repo.devup("down", "a")
        down = repo.devup("down", "b")
    assert down.returncode == 0, down.stderr
    assert_gone(repo, "b")
