"""Preflight's reading of compose inputs from a branch, and the per-session model (no engine)."""

from __future__ import annotations

import os
from pathlib import Path

from devup import compose_inputs, compose_model
from tests import world


def repo_with(tmp_path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    world.git(root, "init", "-q", "-b", "main")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel, target in (links or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)
    world.git(root, "add", "-A")
    world.git(root, "commit", "-qm", "init")
    return root


def test_only_what_compose_names_is_written_and_followed_until_closed(tmp_path):
    files = {
        "compose.yaml": (
            "include:\n  - path: infra/db.yaml\n    env_file: infra/db-include.env\n"
            "services:\n  web:\n    extends: {file: base/common.yml, service: base}\n"
            "    env_file: ['${CONF_DIR:-conf}/web.env', {path: optional.env, required: false}]\n"
        ),
        "base/common.yml": "services:\n  base:\n    env_file: [base.env]\n",
        "base/base.env": "A=1\n",
        "conf/web.env": "B=1\n",
        "infra/db.yaml": "services:\n  db:\n    env_file: db.env\n",
        "infra/db.env": "C=1\n",
        "infra/db-include.env": "D=1\n",
        "infra/.env": "E=1\n",
        "mailcow.conf": "HTTP_PORT=8088\n",
        "unrelated/big.txt": "x\n" * 1000,
        "unrelated/other.yaml": "services: {}\n",
    }
    root = repo_with(tmp_path, files, links={".env": "mailcow.conf", "out.env": "../outside.env"})
    dest = tmp_path / "dest"
    dest.mkdir()
    written = compose_inputs.materialize(
        root=root, commit="HEAD", groups=[["compose.yaml"]], dest=dest, worktree=tmp_path / "wt", env={}
    )
    assert written == sorted(
        [
            ".env",
            "mailcow.conf",
            "compose.yaml",
            "base/common.yml",
            "base/base.env",
            "conf/web.env",
            "infra/db.yaml",
            "infra/db.env",
            "infra/db-include.env",
            "infra/.env",
        ]
    )
    assert (dest / ".env").is_symlink() and (dest / ".env").read_text() == "HTTP_PORT=8088\n"
    assert not (dest / "unrelated").exists()


def test_an_interpolated_path_follows_the_environment_and_the_dotenv(tmp_path):
    files = {
        "compose.yaml": "services:\n  web:\n    env_file: ['${ENV_DIR}/web.env', '$$literal']\n",
        ".env": "ENV_DIR=env\n",
        "env/web.env": "A=1\n",
        "other/web.env": "A=2\n",
    }
    root = repo_with(tmp_path, files)
    dest = tmp_path / "dest"
    dest.mkdir()
    written = compose_inputs.materialize(
        root=root, commit="HEAD", groups=[["compose.yaml"]], dest=dest, worktree=tmp_path / "wt", env={}
    )
    assert "env/web.env" in written and "other/web.env" not in written
    dest2 = tmp_path / "dest2"
    dest2.mkdir()
    written = compose_inputs.materialize(
        root=root,
        commit="HEAD",
        groups=[["compose.yaml"]],
        dest=dest2,
        worktree=tmp_path / "wt",
        env={"ENV_DIR": "other"},
    )
    assert "other/web.env" in written and "env/web.env" not in written  # the shell wins over .env


def test_a_symlink_out_of_the_repository_points_where_the_worktree_s_would(tmp_path):
    root = repo_with(
        tmp_path,
        {"compose.yaml": "services:\n  web:\n    env_file: [.env]\n"},
        links={".env": "../shared.env"},
    )
    dest = tmp_path / "dest"
    dest.mkdir()
    wt = tmp_path / "worktrees" / "s"
    compose_inputs.materialize(
        root=root, commit="HEAD", groups=[["compose.yaml"]], dest=dest, worktree=wt, env={}
    )
    assert os.readlink(dest / ".env") == str(wt.parent / "shared.env")


def test_copy_files_are_added_and_what_they_name_is_read_too(tmp_path):
    root = repo_with(tmp_path, {"compose.yaml": "include: [local.yaml]\n", "from-local.env": "X=1\n"})
    dest = tmp_path / "dest"
    dest.mkdir()

    def copy() -> None:  # what [worktree].copy does: an untracked file of the main checkout
        (dest / "local.yaml").write_text("services:\n  x:\n    env_file: [from-local.env]\n")

    written = compose_inputs.materialize(
        root=root,
        commit="HEAD",
        groups=[["compose.yaml"]],
        dest=dest,
        worktree=tmp_path / "wt",
        env={},
        copy=copy,
    )
    assert "from-local.env" in written


def test_port_keys_one_lease_per_published_port():
    specs = [
        compose_model.PortSpec(80, "tcp", None, "8080"),
        compose_model.PortSpec(80, "tcp", None, "8081"),
        compose_model.PortSpec(53, "udp", None, "53"),
        compose_model.PortSpec(53, "tcp", None, "53"),
        compose_model.PortSpec(9000, "tcp", "::1", "9000"),
        compose_model.PortSpec(9000, "tcp", "127.0.0.1", "9000"),
    ]
    assert compose_model.spec_keys("my-web", specs) == [
        "MY_WEB_80",
        "MY_WEB_80_2",
        "MY_WEB_53",
        "MY_WEB_53",
        "MY_WEB_9000",
        "MY_WEB_9000",
    ]
    assert compose_model.port_keys("my-web", specs)[0] == ("MY_WEB", "MY_WEB_80")


def test_fixed_names_are_rewritten_and_external_ones_left_alone():
    data = {
        "services": {
            "db": {"container_name": "fixed-db", "networks": {"back": None, "ext": None, "default": None}},
        },
        "networks": {
            "back": {"name": "temporal-network"},
            "default": {"name": "p_default"},
            "ext": {"name": "shared", "external": True},
        },
        "volumes": {"data": {"name": "fixed-data"}, "keep": {"name": "p_keep"}},
    }
    model = compose_model.parse(data, project="p")
    assert model.fixed_networks == {"back": "temporal-network"} and model.fixed_volumes == {
        "data": "fixed-data"
    }
    assert model.external_networks == {"ext": "shared"} and model.refusals == []
    doc = compose_model.override(model, project="p", ports={}, labels={"l": "v"})
    assert doc["services"]["db"]["container_name"] == "p-db"
    assert doc["services"]["db"]["networks"] == {
        "back": {"aliases": ["fixed-db"]},
        "default": {"aliases": ["fixed-db"]},
    }
    assert doc["networks"]["back"]["name"] == "p_back" and "name" not in doc["networks"]["default"]
    assert "ext" not in doc["networks"]
    assert doc["volumes"]["data"]["name"] == "p_data"


def test_a_long_syntax_port_keeps_its_mode_name_and_app_protocol():
    """compose-corpus F2: plane's `mode: host`, zulip's `name`/`app_protocol` survive the override."""
    data = {
        "services": {
            "web": {
                "ports": [
                    {
                        "name": "https",
                        "mode": "host",
                        "target": 443,
                        "published": "8443",
                        "protocol": "tcp",
                        "app_protocol": "https",
                    },
                    {"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"},
                ]
            }
        }
    }
    model = compose_model.parse(data, project="p")
    doc = compose_model.override(model, project="p", ports={"WEB_443": 20001, "WEB_80": 20002}, labels={})
    tag, ports = doc["services"]["web"]["ports"]
    assert tag == "!override"
    assert ports == [
        {
            "target": 443,
            "published": "20001",
            "protocol": "tcp",
            "mode": "host",
            "name": "https",
            "app_protocol": "https",
        },
        {"target": 80, "published": "20002", "protocol": "tcp"},
    ]


def test_shared_binds_are_the_writable_host_folders_outside_the_worktree(tmp_path):
    root = tmp_path / "wt"
    data = {
        "services": {
            "web": {
                "volumes": [
                    {"type": "bind", "source": "/srv/jitsi-cfg", "target": "/config"},
                    {"type": "bind", "source": str(root / "data"), "target": "/data"},
                    {"type": "bind", "source": "/", "target": "/rootfs", "read_only": True},
                    {"type": "volume", "source": "cache", "target": "/cache"},
                ]
            },
            "side": {"volumes": [{"type": "bind", "source": str(root), "target": "/src"}]},
        },
        "volumes": {"cache": {}},
    }
    model = compose_model.parse(data, project="p", root=root)
    assert model.shared_binds() == ["/srv/jitsi-cfg (service web)"]
    assert model.binds["web"] == ["/srv/jitsi-cfg", str(root / "data"), "/"]  # all, for mounts.py
