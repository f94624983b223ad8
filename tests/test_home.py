"""The test harness itself: no test can reach a real devup state folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_devup_without_devup_home_fails_instead_of_using_a_real_state_folder(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "devup.toml").write_text('[project]\nmode = "host"\n')
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, check=True)
    env = {k: v for k, v in os.environ.items() if k != "DEVUP_HOME"}
    result = subprocess.run(
        [sys.executable, "-m", "devup", "up", "x"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert os.environ["XDG_STATE_HOME"] in result.stderr  # it failed on the trap, nowhere else
    assert not (Path(os.environ["HOME"]) / ".local" / "state" / "devup").exists()
    assert not (repo.parent / "r-worktrees" / "x").exists()
