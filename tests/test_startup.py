"""Start-up: the read-only commands load none of the heavy libraries (SPEC's fast paths).

`ls`, `env`, `status` of a host session and `--help` run on every shell prompt and in hook
scripts; each of these libraries costs tens of milliseconds to import. This test replaces the
comments that used to defend each lazy import one by one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydantic", "docker", "rich", "tenacity", "git")


def _imported(args: list[str], cwd: Path) -> set[str]:
    """Top-level modules Python imported while running `devup ARGS` (python -X importtime)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "devup", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one host-mode session that is up (no groups, no native services)."""
    root = tmp_path_factory.mktemp("startup")
    state = root / "state"
    path = root / "r"
    path.mkdir()
    # Module-scoped: built before the per-test environment exists, so it sets its own.
    ident = {
        f"GIT_{who}_{what}": val
        for who in ("AUTHOR", "COMMITTER")
        for what, val in (("NAME", "t"), ("EMAIL", "t@example.invalid"))
    }
    env = {**os.environ, **ident, "DEVUP_HOME": str(state)}
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    (path / "devup.toml").write_text('[project]\nmode = "host"\n[env]\nGREETING = "hi"\n')
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env=env)
    up = subprocess.run(
        [sys.executable, "-m", "devup", "up", "s"], cwd=path, env=env, capture_output=True, text=True
    )
    assert up.returncode == 0, up.stderr
    return path


@pytest.mark.parametrize("args", [["ls"], ["ls", "--json"], ["env", "s"], ["status", "s"], ["--help"]])
def test_read_only_commands_import_no_heavy_library(
    repo: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEVUP_HOME", str(repo.parent / "state"))
    loaded = _imported(args, repo)
    assert "devup.cli" in loaded  # the measurement itself works
    assert sorted(lib for lib in HEAVY if lib in loaded) == []


def test_the_check_sees_a_heavy_import(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: an `up` that meets a devup.toml devup has not validated before validates it,
    so pydantic shows up; the next `up` that meets the same text builds it from the values the
    first one kept, without pydantic."""
    monkeypatch.setenv("DEVUP_HOME", str(repo.parent / "state"))
    toml = repo / "devup.toml"
    text = toml.read_text()
    try:
        toml.write_text(text + "# edited\n")
        assert "pydantic" in _imported(["up", "other"], repo)
        assert "pydantic" not in _imported(["up", "third"], repo)
    finally:
        toml.write_text(text)
