"""Files: `[worktree].copy` into a new worktree, the env file, and restoring files on undo."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devup.errors import CopyRefused, DevupError
from devup.paths import ENV_FILE, ensure_dir
from devup.state import write_atomic
from devup.undo import UndoRecord, UndoStack, inverse

if TYPE_CHECKING:
    from devup.remote import Engine


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _refuse(rel: str, where: str, target: Path | str) -> CopyRefused:
    return CopyRefused(
        f"[worktree].copy: {rel} leads outside the {where} (through a symlink, to {target}); nothing was copied",
        hint="devup copies only files inside the main checkout into the worktree: replace the symlink "
        "with a real folder, or remove the path from [worktree].copy",
    )


def copy_sources(*, source_root: Path, patterns: list[str]) -> list[Path]:
    """The files and folders `[worktree].copy` names in the main checkout, each checked to stay
    inside it with every symlink on the way resolved (SPEC §5.11)."""
    root = source_root.resolve()
    found: list[Path] = []
    for pattern in patterns:
        matches = (
            sorted(source_root.glob(pattern)) if any(c in pattern for c in "*?[") else [source_root / pattern]
        )
        for src in matches:
            rel = src.relative_to(source_root)
            if ".." in rel.parts or not os.path.lexists(src):
                continue
            if not _inside(src.resolve(), root):
                raise _refuse(str(rel), "main checkout", src.resolve())
            if src.exists():
                found.append(src)
    return found


def check_branch_paths(*, root: Path, commit: str, patterns: list[str]) -> None:
    """Preflight for a worktree not made yet: no `[worktree].copy` destination may pass through
    a symlink that the branch commits and that leads out of the worktree (exit 2)."""
    for src in copy_sources(source_root=root, patterns=patterns):
        rel = src.relative_to(root).as_posix()
        target = _tree_escape(root, commit, rel)
        if target is not None:
            raise _refuse(rel, "worktree", target)


def _tree_escape(root: Path, commit: str, rel: str) -> str | None:
    """The symlink target through which `rel` leaves the tree of `commit`, or None."""
    import posixpath

    from devup import git

    todo = [p for p in rel.split("/") if p]
    done: list[str] = []
    hops = 0
    while todo:
        candidate = [*done, todo.pop(0)]
        target = git.symlink_target(root, commit, "/".join(candidate))
        if target is None:
            done = candidate
            continue
        hops += 1
        joined = posixpath.normpath(posixpath.join(*done, target)) if done else posixpath.normpath(target)
        if hops > 40 or target.startswith("/") or joined == ".." or joined.startswith("../"):
            return target
        todo = [p for p in joined.split("/") if p not in ("", ".")] + todo
        done = []
    return None


def copy_into(*, source_root: Path, worktree: Path, patterns: list[str]) -> list[str]:
    """Copy untracked files named in `[worktree].copy`; returns what was copied.

    Nothing is read or written outside the main checkout and the worktree: a source or a
    destination whose path passes through a symlink that leads out is refused.
    Their inverse is the new worktree's own removal, so nothing is pushed here.
    """
    copied: list[str] = []
    home = worktree.resolve()
    for src in copy_sources(source_root=source_root, patterns=patterns):
        rel = src.relative_to(source_root)
        dest = worktree / rel
        if os.path.lexists(dest):
            continue  # tracked in the branch: the branch's own file (or link) wins
        # The first folder on the way that exists, resolved: a link the branch commits must
        # not take the copy out of the worktree (a committed `config -> /elsewhere`).
        existing = dest.parent
        while not os.path.lexists(existing):
            existing = existing.parent
        if not _inside(existing.resolve(), home):
            raise _refuse(str(rel), "worktree", existing.resolve())
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True)
        else:
            shutil.copy2(src, dest, follow_symlinks=False)
        copied.append(str(rel))
    return copied


def write_restorable(*, stack: UndoStack | None, path: Path, text: str, label: str) -> None:
    """Write `path` atomically (0600); the inverse puts back what was there before."""
    if stack is not None:
        previous = path.read_text(encoding="utf-8") if path.exists() else None
        stack.push(UndoRecord("file_restore", {"path": str(path), "content": previous}, label))
    write_atomic(path, text)


def write_env_file(
    *, stack: UndoStack, common_dir: Path, worktree: Path, env: dict[str, str]
) -> dict[str, str]:
    """The session's env file in the worktree, kept out of git; returns the variables that
    python-dotenv and compose read differently from sh (envvars.inexact: the caller warns)."""
    from devup import envvars, git

    git.exclude(common_dir, ENV_FILE)
    if not git.is_ignored(worktree, ENV_FILE):
        # Preflight read the root .gitignore; this is git's own word, for what it missed.
        raise DevupError(
            f"git in {worktree} does not ignore {ENV_FILE}: a rule of the branch's "
            "ignore files un-ignores it, so `git add -A` would stage the session's variables",
            hint=f"remove the `!{ENV_FILE}`-like rule from the branch's .gitignore",
        )
    write_restorable(
        stack=stack,
        path=worktree / ENV_FILE,
        text=envvars.dotenv(env),
        label=f"env file {worktree / ENV_FILE}",
    )
    return envvars.inexact(env)


def make_dir(*, stack: UndoStack, path: Path, label: str) -> None:
    """Create a folder devup owns; the inverse removes it only if this run created it."""
    if path.exists():
        return
    stack.push(UndoRecord("dir_remove", {"path": str(path)}, label))
    ensure_dir(path)


@inverse("file_restore")
def undo_file(args: dict[str, Any], _engine: Engine) -> None:
    """Put back the previous content, or remove a file this run created."""
    path = Path(args["path"])
    if args["content"] is None:
        path.unlink(missing_ok=True)
    elif path.parent.exists():
        write_atomic(path, args["content"])


@inverse("dir_remove")
def undo_dir(args: dict[str, Any], _engine: Engine) -> None:
    """Remove a folder devup created; already gone is success."""
    path = Path(args["path"])
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DevupError(f"cannot remove {path}: {os.strerror(exc.errno or 0)}") from None
