"""The session's git worktree: created (with its branch when missing), reused, or adopted."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devup import git
from devup.errors import CommandFailed, PreflightError
from devup.undo import UndoRecord, UndoStack, inverse

if TYPE_CHECKING:
    from devup.remote import Engine


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
    if branch == "@" or re.fullmatch(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}", branch):
        # Valid ref names that git reads as something else: `@` is HEAD, 40 (64) hex digits a
        # commit id, so git would check out a detached commit rather than the branch.
        raise PreflightError(
            f"{branch!r} cannot be a session's branch: git reads it as {'HEAD' if branch == '@' else 'a commit id'}",
            hint="pass --branch with a branch name",
        )
    if branch.startswith("refs/"):
        # git would make refs/heads/refs/heads/foo of `-b refs/heads/foo`.
        short = branch.removeprefix("refs/heads/")
        raise PreflightError(
            f"{branch!r} is a full ref name, not a branch name",
            hint=f"pass --branch {short}" if short != branch else "pass --branch with a branch name",
        )
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


# devup's own mark on a worktree it created (SPEC §5.11): `gc` removes a worktree only when it
# carries this mark for a session that has no record. It lives in the worktree's private git
# dir, where no checkout, `git clean` or `git add -A` can touch or stage it, and it goes away
# with the worktree's registration.
MARK_FILE = "devup-session"


def write_mark(worktree: Path, *, repo_id: str, session: str) -> None:
    from devup.locks import write_atomic

    text = json.dumps({"repo_id": repo_id, "session": session})
    write_atomic(git.git_dir(worktree) / MARK_FILE, text + "\n")


def read_mark(common_dir: Path, worktree: Path) -> dict[str, str] | None:
    """The mark of the registered worktree at `worktree`, found through the registration
    (`<common-dir>/worktrees/<id>/gitdir`), so a worktree folder deleted by hand still counts."""
    private = _registration(common_dir, worktree)
    try:
        data = json.loads((private / MARK_FILE).read_text(encoding="utf-8")) if private else None
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("repo_id", "session")):
        return {"repo_id": data["repo_id"], "session": data["session"]}
    return None


def drop_mark(common_dir: Path, worktree: Path) -> None:
    """Take devup's mark off the worktree at `worktree`: it is no longer devup's to remove (a
    `down` that keeps it, an attach that hands it to the user); none there is success."""
    private = _registration(common_dir, worktree)
    if private is not None:
        (private / MARK_FILE).unlink(missing_ok=True)


def _registration(common_dir: Path, worktree: Path) -> Path | None:
    """The private git dir (`<common-dir>/worktrees/<id>`) registered for `worktree`."""
    target = worktree.resolve()
    registrations = common_dir / "worktrees"
    for private in sorted(registrations.iterdir()) if registrations.is_dir() else []:
        try:
            checkout = Path((private / "gitdir").read_text(encoding="utf-8").strip()).parent
        except (OSError, ValueError):
            continue
        if checkout.resolve() == target:
            return private
    return None


def apply(*, stack: UndoStack, root: Path, plan: WorktreePlan, mark: dict[str, str] | None = None) -> bool:
    """Create the worktree unless it exists, with devup's mark; returns whether this run
    created it."""
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
    if mark is not None:
        write_mark(plan.path, repo_id=mark["repo_id"], session=mark["session"])
    return True


def remove_session_worktree(*, root: Path, path: Path) -> None:
    """`down`: remove a session's worktree; its branch stays (`down` never deletes a branch)."""
    _remove({"root": str(root), "path": str(path)})


@inverse("worktree_remove")
def undo(args: dict[str, Any], _engine: Engine) -> None:
    """Remove the worktree this run created, and its branch if this run created that too."""
    _remove(args)


def _remove(args: dict[str, Any]) -> None:
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
