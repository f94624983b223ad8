"""Hostile input and broken environments (SPEC §5.11): what a hostile contributor or an unlucky
machine does to devup, checked end to end on real git, real processes and the real engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

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


# --- [worktree].copy stays inside the main checkout and the worktree ------------------------


def outside_dir(repo: Repo) -> Path:
    """A folder outside the repository, standing in for /etc or a victim's home."""
    folder = repo.tmp / "outside"
    folder.mkdir(exist_ok=True)
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_copy_refuses_a_committed_symlink_that_leads_out_of_the_worktree(make):
    repo = make(
        HOST + '[worktree]\ncopy = ["config/master.key"]\n',
        {".gitignore": "config/master.key\n", "config/app.yaml": "app: 1\n"},
    )
    outside = outside_dir(repo)
    (outside / "unrelated").write_text("keep")
    # A contributor's branch replaces config/ by a link to a folder outside the repository.
    scratch = repo.tmp / "scratch"
    world.git(repo.path, "worktree", "add", "-q", "-b", "evil", str(scratch))
    world.git(scratch, "rm", "-rq", "config")
    (scratch / "config").symlink_to(outside)
    world.git(scratch, "add", "config")
    world.git(scratch, "commit", "-qm", "config is a link")
    world.git(repo.path, "worktree", "remove", str(scratch))
    (repo.path / "config" / "master.key").write_text("secret")
    before = snapshot(outside)

    result = repo.devup("up", "evil")
    assert result.returncode == 2, result.stderr
    assert "config/master.key" in result.stderr and "outside" in result.stderr
    assert snapshot(outside) == before
    assert world.worktree_paths(repo.path) == [repo.path]
    assert (repo.path / "config" / "master.key").read_text() == "secret"


def test_copy_refuses_an_untracked_symlink_that_leads_out_of_the_main_checkout(make):
    repo = make(HOST + '[worktree]\ncopy = ["sub/shadow", "sub/*"]\n')
    outside = outside_dir(repo)
    (outside / "shadow").write_text("root:hash")
    (repo.path / "sub").symlink_to(outside)
    before = world.branches(repo.path)
    result = repo.devup("up", "s1")
    assert result.returncode == 2, result.stderr
    assert "sub/shadow" in result.stderr
    assert world.branches(repo.path) == before
    assert not repo.worktree("s1").exists()
    assert world.worktree_paths(repo.path) == [repo.path]


@pytest.mark.parametrize("entry", ["ABSOLUTE/shadow", "../outside/shadow", "conf/../../outside/shadow"])
def test_copy_paths_outside_the_main_checkout_are_a_config_error(make, entry):
    repo = make(HOST)
    outside = outside_dir(repo)
    (outside / "shadow").write_text("root:hash")
    entry = entry.replace("ABSOLUTE", str(outside))
    repo.write("devup.toml", (repo.path / "devup.toml").read_text() + f'[worktree]\ncopy = ["{entry}"]\n')
    repo.commit("copy outside")
    result = repo.devup("up", "c1")
    assert result.returncode == 2, result.stderr
    assert "devup.toml:" in result.stderr and "worktree.copy" in result.stderr
    assert not repo.worktree("c1").exists()
    assert world.worktree_paths(repo.path) == [repo.path]
