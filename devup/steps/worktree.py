"""The session's git worktree: created (with its branch when missing), reused, or adopted."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup import git
from devup.errors import CommandFailed, PreflightError
from devup.undo import UndoRecord, UndoStack, inverse


@dataclass(frozen=True)
class WorktreePlan:
    path: Path
    branch: str
    exists: bool  # a worktree of this repository on this branch is already there
    new_from: str | None  # the commit to create the branch at, when it does not exist


def plan(*, root: Path, path: Path, branch: str, base: str) -> WorktreePlan:
    """Decide, without changing anything, how the worktree comes to be (SPEC §5.6)."""
    if git.runner_check_ref(root, branch) is False:
        raise PreflightError(f"{branch!r} is not a valid branch name")
    existing = git.worktrees(root)
    here = next((w for w in existing if w.path.resolve() == path.resolve()), None)
    if here is not None:
        if here.branch != branch:
            raise PreflightError(
                f"{path} is a worktree of this repository on {here.branch or 'a detached HEAD'}, not {branch}",
                hint="choose another session name or --branch, or remove that worktree",
            )
        if not path.exists():
            git.git(root, "worktree", "prune")
            return plan(root=root, path=path, branch=branch, base=base)
        return WorktreePlan(path=path, branch=branch, exists=True, new_from=None)
    if path.exists():
        raise PreflightError(
            f"{path} exists and is not this session's worktree; devup will not touch it",
            hint="move it away, or set [project].worktrees in devup.toml to another folder",
        )
    other = next((w for w in existing if w.branch == branch), None)
    if other is not None:
        raise PreflightError(
            f"branch {branch} is already checked out at {other.path}",
            hint=f"use --branch to pick another branch, or switch {other.path} to another branch",
        )
    if git.branch_exists(root, branch):
        return WorktreePlan(path=path, branch=branch, exists=False, new_from=None)
    commit = git.rev(root, base)
    if commit is None:
        raise PreflightError(
            f"base {base!r} does not name a commit", hint="pass --base REF or set [project].base"
        )
    return WorktreePlan(path=path, branch=branch, exists=False, new_from=commit)


def apply(*, stack: UndoStack, root: Path, plan: WorktreePlan) -> bool:
    """Create the worktree unless it exists; returns whether this run created it."""
    if plan.exists:
        return False
    made = _outermost_missing(plan.path.parent)  # git makes the folders; their undo is ours
    stack.push(
        UndoRecord(
            "worktree_remove",
            {
                "root": str(root),
                "path": str(plan.path),
                "branch": plan.branch,
                "branch_at": plan.new_from,
                "folders_from": str(made) if made else None,
            },
            f"worktree {plan.path}" + (f" and branch {plan.branch}" if plan.new_from else ""),
        )
    )
    git.add_worktree(root, plan.path, branch=plan.branch, new_from=plan.new_from)
    return True


@inverse("worktree_remove")
def undo(args: dict[str, Any]) -> None:
    """Remove the worktree this run created, and its branch if this run created that too."""
    root = Path(args["root"])
    try:
        git.remove_worktree(root, Path(args["path"]))
    except CommandFailed:
        if git.worktree_at(root, Path(args["path"])) is not None:
            raise
    if args.get("branch_at"):
        git.delete_branch(root, args["branch"], expected=args["branch_at"])
    if args.get("folders_from"):
        _remove_empty(Path(args["path"]).parent, up_to=Path(args["folders_from"]))


def _outermost_missing(folder: Path) -> Path | None:
    """The outermost of `folder` and its parents that does not exist yet (None: it exists)."""
    missing = None
    while not folder.exists():
        missing, folder = folder, folder.parent
    return missing


def _remove_empty(folder: Path, *, up_to: Path) -> None:
    """Remove the folders this run made, innermost first, as long as they are empty: another
    session's worktree, made in the meantime, keeps its folder."""
    with contextlib.suppress(OSError):
        while True:
            folder.rmdir()
            if folder == up_to:
                return
            folder = folder.parent
