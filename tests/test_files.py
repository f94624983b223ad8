"""`[worktree].copy` preflight against the branch's tree: which symlinks the branch commits lead
out of the worktree, and how many git commands it takes to know. Real git, no engine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from devup import git, runner
from devup.errors import CopyRefused
from devup.steps import files
from tests import world


def _repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    world.git(root, "init", "-q", "-b", "main")
    (root / "README").write_text("x\n")
    world.git(root, "add", "-A")
    world.git(root, "commit", "-qm", "init")
    return root


def _branch(root: Path, name: str, links: dict[str, str], regular: dict[str, str]) -> str:
    """Commit a branch whose tree holds `links` (path -> symlink target) and `regular` files;
    returns its commit. The main checkout is left as it was."""
    scratch = root.parent / f"scratch-{name}"
    world.git(root, "worktree", "add", "-q", "-b", name, str(scratch))
    for rel, text in regular.items():
        (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
        (scratch / rel).write_text(text)
    for rel, target in links.items():
        (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
        (scratch / rel).symlink_to(target)
    world.git(scratch, "add", "-A")
    world.git(scratch, "commit", "-qm", name)
    world.git(root, "worktree", "remove", "--force", str(scratch))
    commit = git.rev(root, name)
    assert commit is not None
    return commit


def _untracked(root: Path, rels: list[str]) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("secret\n")


LINKS = {
    "inside": "real",
    "chain1": "chain2",
    "chain2": "real",
    "up": "../outside",
    "abs": "/etc",
    "loop1": "loop2",
    "loop2": "loop1",
    "real/deep": "../../x",
    "real/back": "../real",
    "self": ".",
    "dotdot": "real/..",
    "nested/link": "../chain1",
    "nested/out": "../up",
    "trailing": "real/\n",  # a target with a newline at its end (git strips it: the old probe did too)
    "uni": "réal/ünï",  # targets of several bytes per character: cat-file's output is framed in bytes
    "uni_out": "../ö",
}
CASES = [
    ("inside/f", None),
    ("chain1/f", None),
    ("up/f", "../outside"),
    ("abs/f", "/etc"),
    ("loop1/f", "loop2"),  # hop 41 of the loop: refused with that hop's target
    ("real/deep/f", "../../x"),
    ("real/back/f", None),
    ("self/f", None),
    ("dotdot/f", None),
    ("nested/link/f", None),
    ("nested/out/f", "../outside"),
    ("plain/f", None),
    ("trailing/f", None),
    ("uni/f", None),
    ("uni_out/f", "../ö"),
]


@pytest.mark.parametrize(("rel", "escape"), CASES)
def test_branch_symlinks_that_lead_out_of_the_worktree_are_refused(
    tmp_path: Path, rel: str, escape: str | None
) -> None:
    root = _repo(tmp_path)
    commit = _branch(root, "evil", LINKS, {"real/f": "x\n"})
    _untracked(root, [rel])
    if escape is None:
        files.check_branch_paths(root=root, commit=commit, patterns=[rel])
        return
    with pytest.raises(CopyRefused) as caught:
        files.check_branch_paths(root=root, commit=commit, patterns=[rel])
    assert f"{rel} leads outside the worktree" in caught.value.message
    assert f"to {escape})" in caught.value.message


def test_all_cases_at_once_refuse_the_first_escaping_path_in_copy_order(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    commit = _branch(root, "evil", LINKS, {"real/f": "x\n"})
    rels = [rel for rel, _ in CASES]
    _untracked(root, rels)
    safe = [rel for rel, escape in CASES if escape is None]
    files.check_branch_paths(root=root, commit=commit, patterns=safe)
    with pytest.raises(CopyRefused) as caught:
        files.check_branch_paths(root=root, commit=commit, patterns=[*safe, "real/deep/f", "up/f"])
    assert "real/deep/f leads outside" in caught.value.message


def _count_git(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []
    # git goes through runner.run_through_files (a hook's background child must not hold a
    # pipe), a few reads through runner.run: both are counted.
    for name in ("run", "run_through_files"):
        real = getattr(runner, name)

        def counting(args: Any, *, _real: Any = real, **kwargs: Any) -> runner.Result:
            if args[0] == "git":
                calls.append(tuple(args))
            result: runner.Result = _real(args, **kwargs)
            return result

        monkeypatch.setattr(runner, name, counting)
    return calls


def test_preflight_of_400_copied_files_takes_a_few_git_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _repo(tmp_path)
    links = {f"data/d{i}/link": "../../real" for i in range(5)} | {"cfg": "data", "up": "../x"}
    commit = _branch(root, "many", links, {"real/f": "x\n", "data/keep": "x\n"})
    rels = [f"data/d{i % 20}/s{i % 7}/f{i}.json" for i in range(400)]
    _untracked(root, rels)
    _untracked(root, [f"data/d{i}/link/f.json" for i in range(5)] + ["cfg/d1/s1/g.json"])
    patterns = ["data/*/*/*.json", "cfg/d1/s1/g.json"]
    assert len(files.copy_sources(source_root=root, patterns=patterns)) == 406
    calls = _count_git(monkeypatch)
    t0 = time.monotonic()
    files.check_branch_paths(root=root, commit=commit, patterns=patterns)
    took = time.monotonic() - t0
    assert len(calls) <= 10, f"{len(calls)} git commands for 406 files"
    print(f"preflight of 406 copied files: {took:.3f} s, {len(calls)} git commands")
    _untracked(root, ["up/f"])
    calls.clear()
    with pytest.raises(CopyRefused, match="up/f"):
        files.check_branch_paths(root=root, commit=commit, patterns=[*patterns, "up/f"])
    assert len(calls) <= 10


def test_a_symlink_target_that_is_no_utf8_is_read_as_before(tmp_path: Path) -> None:
    """cat-file --batch output is framed by byte counts: a target that is not UTF-8 (decoded
    with replacement characters) must not throw the framing off."""
    root = _repo(tmp_path)
    scratch = root.parent / "scratch"
    world.git(root, "worktree", "add", "-q", "-b", "odd", str(scratch))
    (scratch / "a").symlink_to(b"../\xff\xfe".decode("utf-8", "surrogateescape"))
    (scratch / "b").symlink_to("real")
    (scratch / "real").mkdir()
    (scratch / "real" / "f").write_text("x")
    world.git(scratch, "add", "-A")
    world.git(scratch, "commit", "-qm", "odd")
    world.git(root, "worktree", "remove", "--force", str(scratch))
    commit = git.rev(root, "odd")
    assert commit is not None
    _untracked(root, ["a/f", "b/f"])
    with pytest.raises(CopyRefused, match="a/f leads outside"):
        files.check_branch_paths(root=root, commit=commit, patterns=["b/f", "a/f"])
    files.check_branch_paths(root=root, commit=commit, patterns=["b/f"])


def test_tree_entries_splits_a_long_argument_list_without_losing_an_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _repo(tmp_path)
    commit = _branch(root, "b", {f"l{i}": "real" for i in range(30)}, {f"real/f{i}": "x" for i in range(30)})
    paths = [f"l{i}" for i in range(30)] + [f"real/f{i}" for i in range(30)]
    whole = git.tree_entries(root, commit, paths)
    calls = _count_git(monkeypatch)
    monkeypatch.setattr(git, "_ARGS_BYTES", 40)
    assert git.tree_entries(root, commit, paths) == whole and len(whole) == 60
    assert len(calls) > 5
