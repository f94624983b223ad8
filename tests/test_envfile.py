"""The env file is inert data (SPEC §4): `.` in sh and bash, `eval` of `devup env --format shell`,
compose's `env_file` and python-dotenv all give back exactly the values and run nothing."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devup import envvars, errors
from tests import world
from tests.conftest import BUSYBOX, Repo, isolated

HOST = isolated("host")
CANARY = "canary"
# Fragments a hostile value is made of: every quote, expansion and separator the readers know,
# each of which would create the canary file if anything ran it.
NASTY = [
    "'",
    '"',
    "\\",
    "\\\\",
    "$",
    "`",
    "\n",
    "\t",
    " ",
    "#",
    "=",
    "!",
    "{",
    "}",
    "$(touch canary)",
    "`touch canary`",
    "${HOME}",
    "$HOME",
    "$$",
    ";touch canary;",
    "&& touch canary",
    "|touch canary",
    "\\n",
    "é",
    "\u2028",
    "\x01",
]
VALUE = st.lists(st.sampled_from(NASTY) | st.text(max_size=6), max_size=8).map("".join)


def read_back(folder: Path, env_file: str, shell_text: str, keys: list[str]) -> dict[str, dict[str, str]]:
    """What each reader makes of the files in `folder` (and the canary never appears)."""

    def shell_env(shell: str, script: str) -> dict[str, str]:
        out = subprocess.run(
            [shell, "-c", script], cwd=folder, capture_output=True, env={"PATH": os.environ["PATH"]}
        )
        assert out.returncode == 0, out.stderr
        pairs = (item.split(b"=", 1) for item in out.stdout.split(b"\0") if b"=" in item)
        return {k.decode(): v.decode() for k, v in pairs if k.decode() in keys}

    (folder / "shell.txt").write_text(shell_text)
    found = {
        "sh": shell_env("sh", f"set -a; . ./{env_file}; env -0"),
        "bash": shell_env("bash", f"set -a; . ./{env_file}; env -0"),
        "eval": shell_env("bash", 'eval "$(cat shell.txt)"; env -0'),
        "eval-sh": shell_env("sh", 'eval "$(cat shell.txt)"; env -0'),
        "dotenv": {k: v or "" for k, v in dotenv_values(folder / env_file).items() if k in keys},
    }
    assert not (folder / CANARY).exists(), "a value was run as a command"
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(VALUE, min_size=1, max_size=5))
def test_any_value_reads_back_exactly_and_never_runs(values):
    """Every value is written; sh, bash and eval always read it back exactly, python-dotenv
    too unless `inexact` names it (no form exists that all readers agree on for those)."""
    env = {f"V{i}": v.replace("\0", "") for i, v in enumerate(values)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / ".env.devup").write_text(envvars.dotenv(env))
        inexact = envvars.inexact(env)
        for reader, got in read_back(folder, ".env.devup", envvars.shell(env), list(env)).items():
            if reader == "dotenv":
                assert {k: v for k, v in got.items() if k not in inexact} == {
                    k: v for k, v in env.items() if k not in inexact
                }, reader
            else:
                assert got == env, reader


def test_the_values_readers_disagree_on_are_named():
    for value in ["pr'`id`", "a'$(x)", "a\\\\b$x", "`x`end\\", "${HOME}", "a\rb"]:
        assert envvars.unrepresentable(value), value
    for value in ["pr`id>x`", "a'b", "a$(x)", "a\\\\b", "end\\", "a\nb'", "$", "${", "$$HOME"]:
        assert envvars.unrepresentable(value) is None, value


def test_a_nul_or_a_bad_key_is_refused():
    with pytest.raises(errors.Unrepresentable):
        envvars.dotenv({"A": "a\0b"})
    with pytest.raises(errors.Unrepresentable):
        envvars.dotenv({"X; touch canary #": "v"})


FIXED = [
    "pr`touch canary`",
    "it's",
    'a"b`touch canary`',
    "$(touch canary)",
    "line one\nline two",
    "back\\slash\\\\double",
    "trailing\\",
    "  spaced  #not a comment",
    "$HOME and $$ and ${",
    "x'y\"z\nw",
    "tab\there",
    "é\u2028\x01",
    "",
]


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_compose_env_file_reads_back_exactly(tmp_path):
    env = {f"V{i}": v for i, v in enumerate(FIXED)}
    (tmp_path / ".env.devup").write_text(envvars.dotenv(env))
    (tmp_path / "c.yaml").write_text(
        f"services:\n  s:\n    image: {BUSYBOX}\n    env_file: [.env.devup]\n"
        '    command: ["cat", "/proc/self/environ"]\n'
    )
    project = "tenv" + secrets.token_hex(4)
    try:
        out = subprocess.run(
            ["docker", "compose", "-p", project, "-f", "c.yaml", "run", "--rm", "-T", "s"],
            cwd=tmp_path,
            capture_output=True,
        )
        assert out.returncode == 0, out.stderr
    finally:
        subprocess.run(
            ["docker", "compose", "-p", project, "-f", "c.yaml", "down"], cwd=tmp_path, capture_output=True
        )
    pairs = (item.split(b"=", 1) for item in out.stdout.split(b"\0") if b"=" in item)
    got = {k.decode(): v.decode() for k, v in pairs if k.decode() in env}
    assert got == env
    assert not (tmp_path / CANARY).exists()


# --- end to end: values from branch names, [env] and the environment ----------------------


def env_of(repo: Repo, name: str, wt: Path) -> dict[str, dict[str, str]]:
    shell = repo.devup("env", name, "--format", "shell")
    assert shell.returncode == 0, shell.stderr
    as_json = json.loads(repo.devup("env", name, "--format", "json").stdout)
    return as_json, read_back(wt, ".env.devup", shell.stdout, list(as_json))


def test_a_hostile_branch_name_is_inert_data(make):
    repo = make(HOST)
    branch = 'pr`>canary`"$(>canary)"'

    result = repo.devup("up", "b1", "--branch", branch)
    assert result.returncode == 0, result.stderr
    wt = repo.worktree("b1")
    expected, found = env_of(repo, "b1", wt)
    assert expected["DEVUP_BRANCH"] == branch
    for reader, got in found.items():
        assert got == expected, reader
    assert world.git(wt, "rev-parse", "--abbrev-ref", "HEAD").strip() == branch


def test_hostile_env_values_from_config_and_environment_are_inert(make):
    repo = make(
        HOST
        + "[env]\n"
        + 'FROM_CONFIG = "it is `touch canary` \\n$(touch canary) \\\\ #"\n'
        + 'QUOTED = "it\'s \\"quoted\\" \\\\ #x"\n'
        + 'FROM_ENV = "pre-${EVIL}-post"\n'
    )
    evil = '"; touch canary; echo "`touch canary`\n'
    result = repo.devup("up", "e1", env={"EVIL": evil})
    assert result.returncode == 0, result.stderr
    expected, found = env_of(repo, "e1", repo.worktree("e1"))
    assert expected["FROM_CONFIG"] == "it is `touch canary` \n$(touch canary) \\ #"
    assert expected["QUOTED"] == 'it\'s "quoted" \\ #x'
    assert expected["FROM_ENV"] == f"pre-{evil}-post"
    for reader, got in found.items():
        assert got == expected, reader


def test_the_audits_branch_name_comes_up_and_sourcing_runs_nothing(make):
    """The issue's own example: a `'` and backticks together. No env-file form satisfies every
    reader, so `up` writes the one sh and bash read exactly, and says python-dotenv differs."""
    repo = make(HOST)
    branch = "pr'`>canary`$(>canary)"
    result = repo.devup("up", "b2", "--branch", branch)
    assert result.returncode == 0, result.stderr
    assert "DEVUP_BRANCH" in result.stderr and "python-dotenv" in result.stderr
    wt = repo.worktree("b2")
    expected, found = env_of(repo, "b2", wt)  # read_back fails if the canary appears
    assert expected["DEVUP_BRANCH"] == branch
    for reader in ("sh", "bash", "eval", "eval-sh"):
        assert found[reader] == expected, reader
    assert found["dotenv"].keys() == expected.keys()  # parsed, every variable there
    assert not (wt / CANARY).exists() and not (repo.path / CANARY).exists()


def test_an_env_key_that_is_not_a_variable_name_is_a_config_error(make):
    repo = make(HOST + '[env]\n"X; touch canary #" = "1"\n')
    result = repo.devup("up", "k1")
    assert result.returncode == 2
    assert "devup.toml:" in result.stderr and "env.X; touch canary #" in result.stderr
    assert world.worktree_paths(repo.path) == [repo.path]
    assert not (repo.path / CANARY).exists()
