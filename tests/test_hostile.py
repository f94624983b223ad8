"""Hostile input and broken environments (SPEC §5.11): what a hostile contributor or an unlucky
machine does to devup, checked end to end on real git, real processes and the real engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests import world
from tests.conftest import Repo, isolated

HOST = isolated("host")


def state_dir(repo: Repo) -> Path:
    return repo.tmp / "state" / "repos" / repo.repo_id


def lose_record(repo: Repo, name: str) -> None:
    """The session record vanishes (a disk restored from backup, a hand `rm`): its worktree is
    now an orphan that only devup's mark can tell apart from a hand-made one."""
    (state_dir(repo) / "sessions" / f"{name}.json").unlink()


# --- gc removes only what carries devup's mark ----------------------------------------------


def test_gc_keeps_a_hand_made_worktree_with_its_ignored_files(make):
    repo = make(HOST, {".gitignore": "*.sqlite\n"})
    assert repo.devup("up", "orphan").returncode == 0
    lose_record(repo, "orphan")
    hand = repo.worktree("review-pr-7")
    world.git(repo.path, "worktree", "add", "-q", "-b", "review-pr-7", str(hand))
    (hand / "dev.sqlite").write_text("precious")

    result = repo.devup("gc", "--json")
    assert result.returncode == 0, result.stderr
    removed = [o["name"] for o in json.loads(result.stdout)["orphans"] if o["kind"] == "worktree"]
    assert removed == [str(repo.worktree("orphan"))]
    assert (hand / "dev.sqlite").read_text() == "precious"
    paths = world.worktree_paths(repo.path)
    assert hand in paths and repo.worktree("orphan") not in paths


def test_gc_never_lists_the_main_checkout(make):
    # Worktrees next to the main checkout: the main checkout sits in the worktrees folder.
    repo = make(HOST.replace("[ports]", 'worktrees = ".."\n[ports]'))
    assert repo.devup("up", "next").returncode == 0
    (repo.path / "local.sqlite").write_text("x")
    dry = repo.devup("gc", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["orphans"] == []
    assert repo.devup("gc").returncode == 0
    assert (repo.path / "local.sqlite").exists() and (repo.path / ".git").is_dir()
    assert world.worktree_paths(repo.path)[:1] == [repo.path]


def test_gc_keeps_an_orphan_worktree_with_ignored_files_unless_forced(make):
    repo = make(HOST, {".gitignore": "*.sqlite\n"})
    assert repo.devup("up", "lost").returncode == 0
    lose_record(repo, "lost")
    wt = repo.worktree("lost")
    (wt / "dev.sqlite").write_text("precious")
    result = repo.devup("gc", "--json")
    assert result.returncode == 1
    (orphan,) = [o for o in json.loads(result.stdout)["orphans"] if o["kind"] == "worktree"]
    assert not orphan["removed"] and "dev.sqlite" in orphan["error"]
    assert (wt / "dev.sqlite").read_text() == "precious"
    assert repo.devup("gc", "--force").returncode == 0
    assert wt not in world.worktree_paths(repo.path) and not wt.exists()


def test_gc_keeps_a_session_record_made_before_the_mark_existed(make):
    repo = make(HOST)
    assert repo.devup("up", "old").returncode == 0
    # A worktree devup made before it wrote marks: no mark, but a record, so it is no orphan.
    private = Path(world.git(repo.worktree("old"), "rev-parse", "--absolute-git-dir").strip())
    (private / "devup-session").unlink()
    assert repo.devup("gc").returncode == 0
    assert repo.worktree("old") in world.worktree_paths(repo.path)
    assert os.path.isdir(repo.worktree("old"))
