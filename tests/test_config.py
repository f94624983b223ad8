"""devup.toml validation: exit 2 with file, key path and line; nothing changed (SPEC §3)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devup import config
from devup.errors import ConfigError


def load(tmp_path: Path, text: str) -> config.Config:
    (tmp_path / "devup.toml").write_text(textwrap.dedent(text).lstrip())
    return config.load(tmp_path)


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        ('[project]\nname = "x"\nmoed = "host"\n', ":3: project.moed", "Extra inputs"),
        ('[groups.a]\nfiles = "a.yaml"\n', ":2: groups.a.files", "valid list"),
        ('[groups.a]\nfiles = ["a.yaml"]\ndepends_on = ["b"]\n', ":3: groups.a.depends_on", "unknown group"),
        (
            '[groups.a]\nfiles=["a"]\ndepends_on=["b"]\n[groups.b]\nfiles=["b"]\ndepends_on=["a"]\n',
            ": groups.",
            "cycle",
        ),
        (
            '[groups.web]\nfiles=["a"]\n[services.web]\nrun="x"\n',
            ":3: services.web",
            "both a group and a service",
        ),
        ('[services.web]\nrun = "x"\nready = { http = "/" }\n', ":3: services.web.ready", "port = true"),
        (
            '[services.web]\nrun = "x"\nready = { http = "/", tcp = true }\nport = true\n',
            ":3: services.web.ready",
            "exactly one",
        ),
        ('[project]\nmode = "cloud"\n', ":2: project.mode", "container"),
        ("[hooks]\npost_up = 3\n", ":2: hooks.post_up", ""),
        ('[env]\nA = "${B}"\nB = "${A}"\n', ": env.", "cycle"),
        ("[ports]\nrange = [30000, 20000]\n", ": ports", "low <= high"),
        (
            '[groups.a]\nfiles = ["a.yaml"]\nmin_uptime = -1\n',
            ":3: groups.a.min_uptime",
            "greater than or equal",
        ),
        ('[groups.a]\nfiles = ["a.yaml"]\nmin_uptime = "2s"\n', ":3: groups.a.min_uptime", "number"),
        ("[project\n", "devup.toml", "not valid TOML"),
        ('[limits]\nmax_sessions = "1"\n', ":2: limits.max_sessions", "integer"),  # was ignored
        ("[limits]\nmax_running = true\n", ":2: limits.max_running", "integer"),
        ('[routes]\nhostnames = "yes"\n', ":2: routes.hostnames", "boolean"),  # types are not guessed
        ('[routes]\nhttp_port = "80"\n', ":2: routes.http_port", "integer"),
        ('[services.web]\nrun = "x"\nport = "yes"\n', ":3: services.web.port", "boolean"),
        ('[services.web]\nrun = "x"\nready_timeout = "60"\n', ":3: services.web.ready_timeout", "number"),
        ('[limits]\nexpire = "3000000d"\n', ":2: limits.expire", "too long"),
    ],
)
def test_invalid_config_names_file_key_and_line(tmp_path, text, where, why):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    assert where in info.value.message and why in info.value.message
    assert info.value.exit_code == 2


def test_defaults_and_hook_forms(tmp_path):
    cfg = load(
        tmp_path,
        """
        [groups.infra]
        files = ["a.yaml"]
        [services.web]
        run = "x"
        [hooks]
        pre_up = "a"
        pre_spawn = ["a", "b"]
        post_up = { run = "seed", undo = "unseed", timeout = 30 }
    """,
    )
    assert cfg.project.mode == "container" and cfg.ports.range == (20000, 39999)
    assert cfg.groups["infra"].modes == ["container", "hybrid"] and cfg.groups["infra"].wait_timeout == 120
    assert cfg.groups["infra"].min_uptime == 2
    assert cfg.services["web"].modes == ["host", "hybrid"] and cfg.services["web"].stop_timeout == 10
    assert cfg.hooks.get("pre_spawn").commands == ("a", "b")
    post_up = cfg.hooks.get("post_up")
    assert (post_up.commands, post_up.undo, post_up.timeout) == (("seed",), "unseed", 30)
    assert list(cfg.groups_for("host")) == [] and list(cfg.services_for("container")) == []


RICH = """
[project]
name = "p"
mode = "hybrid"
[ports]
range = [21000, 21999]
[limits]
max_sessions = 3
idle_stop = "2h"
[routes]
domain = "dev.test"
[worktree]
copy = [".env"]
[env]
A = "1"
[groups.db]
files = ["db.yaml"]
wait_timeout = 30
[services.web]
run = "serve"
port = true
depends_on = ["db"]
ready = { http = "/" }
[hooks]
post_up = { run = "seed", undo = "unseed" }
pre_down = ["a", "b"]
"""


def test_the_models_and_their_twins_agree_field_for_field() -> None:
    # config_check.py validates, config.py holds the values: the two must name the same fields.
    import dataclasses

    from devup import config_check

    names = ["ProjectCfg", "PortsCfg", "LimitsCfg", "RoutesCfg", "WorktreeCfg", "GroupCfg"]
    for name in [*names, "ReadyCfg", "ServiceCfg", "HooksCfg", "Config"]:
        checked = list(getattr(config_check, name).model_fields)
        held = [f.name for f in dataclasses.fields(getattr(config, name))]
        assert checked == held, name
    assert config.parse(Path("devup.toml"), "") == config.Config()  # the same defaults


def test_remembered_values_build_the_same_config_without_pydantic(tmp_path) -> None:
    text = textwrap.dedent(RICH)
    kept = tmp_path / "config.json"
    validated = config.parse(tmp_path / "devup.toml", text)
    config.remember(kept, text, validated)
    script = (
        "import sys; from pathlib import Path; from devup import config; "
        f"cfg = config.cached(Path({str(kept)!r}), {text!r}); "
        "assert 'pydantic' not in sys.modules, 'pydantic was imported'; "
        "print(repr(cfg))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(validated)
    assert config.cached(kept, text + "\n# edited\n") is None  # another text is validated again
    kept.write_text("{not json")
    assert config.cached(kept, text) is None


def test_an_edit_that_breaks_a_remembered_config_is_still_exit_2(tmp_path) -> None:
    kept = tmp_path / "config.json"
    config.remember(kept, "", config.parse(tmp_path / "devup.toml", ""))
    (tmp_path / "devup.toml").write_text('[project]\nmoed = "host"\n')
    with pytest.raises(ConfigError):
        config.cached(kept, '[project]\nmoed = "host"\n') or config.load(tmp_path)


def up_in_new_repo(tmp_path, toml: str, name: str) -> subprocess.CompletedProcess[str]:
    """`devup up NAME` in a fresh repository <tmp_path>/r holding only this devup.toml."""
    repo = tmp_path / "r"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "devup.toml").write_text(toml)
    return subprocess.run(
        # `--` makes a name such as `-x` reach devup as the NAME, not as an unknown option.
        [sys.executable, "-m", "devup", "up", "--", name],
        cwd=repo,
        capture_output=True,
        text=True,
    )


def test_cli_exits_2_and_changes_nothing(tmp_path):
    result = up_in_new_repo(tmp_path, '[project]\nmoed = "host"\n', "x")
    assert result.returncode == 2
    assert "devup.toml:2: project.moed" in result.stderr
    assert not (tmp_path / "r-worktrees").exists()
    assert not (tmp_path / "state").exists()  # not even a lock file was written


@pytest.mark.parametrize("name", ["Bad", "-x", "x-", "a_b", "a" * 41, ""])
def test_bad_session_names_exit_2(tmp_path, name):
    result = up_in_new_repo(tmp_path, "", name)
    assert result.returncode == 2, result.stderr
    assert "invalid session name" in result.stderr
    assert not (tmp_path / "r-worktrees").exists() and not (tmp_path / "state").exists()


def test_error_text_keeps_brackets(tmp_path):
    result = up_in_new_repo(tmp_path, "[ports]\nrange = [30000, 20000]\n", "x")
    assert result.returncode == 2 and "[low, high]" in result.stderr


@pytest.mark.parametrize(
    ("text", "pre_down", "copy"),
    [
        ('[hooks]\npre_down = "a"\n[worktree]\ncopy = [".env"]\n', ("a",), (".env",)),
        ('[hooks]\npre_down = ["a", "b"]\n', ("a", "b"), ()),
        ('[hooks]\npre_down = { run = "a", undo = "b" }\n', ("a",), ()),
        ("[hooks]\npre_down = 3\n", None, ()),  # malformed: skipped, never fatal for down
        ("[hooks\n", None, ()),
        ('[project]\nmoed = "x"\n[hooks]\npre_down = "a"\n', ("a",), ()),  # the rest need not validate
    ],
)
def test_teardown_settings_read_only_what_down_needs(tmp_path, text, pre_down, copy):
    from devup.hookspec import teardown_settings

    (tmp_path / "devup.toml").write_text(text)
    settings = teardown_settings(tmp_path / "devup.toml")
    assert (settings.pre_down.commands if settings.pre_down else None) == pre_down
    assert settings.copy == copy


def test_the_validated_config_and_down_agree_on_hooks(tmp_path):
    from devup.hookspec import teardown_settings

    cfg = load(tmp_path, '[hooks]\npre_down = { run = ["a", "b"], undo = "c", timeout = 5 }\n')
    assert cfg.hooks.get("pre_down") == teardown_settings(tmp_path / "devup.toml").pre_down


def test_a_ttl_past_ten_years_is_refused_and_an_old_one_still_lists(tmp_path) -> None:
    from devup import inspect, usage

    with pytest.raises(ValueError, match="too long"):
        usage.parse_duration("99999999d")
    assert usage.parse_duration("3650d") == 3650 * 86400
    # A record written before the limit: `ls` shows the last ISO time there is, never crashes.
    assert inspect._iso(1e13) == "9999-12-31T23:59:59Z"


def test_an_edit_that_breaks_the_config_of_an_up_session_is_exit_2(tmp_path):
    """`up` remembers the config it validated; an edit is another text, validated again."""
    repo = tmp_path / "r"
    repo.mkdir()
    (repo / "devup.toml").write_text('[project]\nmode = "host"\n')
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True)

    def devup(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "devup", *args], cwd=repo, capture_output=True, text=True
        )

    assert devup("up", "s").returncode == 0
    (repo / "devup.toml").write_text('[project]\nmode = "host"\nmoed = "x"\n')
    again = devup("up", "s")
    assert again.returncode == 2 and "devup.toml:3: project.moed" in again.stderr, again.stderr
    (repo / "devup.toml").write_text('[project]\nmode = "host"\n')
    assert devup("down", "s").returncode == 0
