"""Files: `[worktree].copy` into a new worktree, the env file, and restoring files on undo."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from devup.errors import DevupError
from devup.state import write_atomic
from devup.undo import UndoRecord, UndoStack, inverse


def copy_into(*, source_root: Path, worktree: Path, patterns: list[str]) -> list[str]:
    """Copy untracked files named in `[worktree].copy`; returns what was copied.

    Their inverse is the new worktree's own removal, so nothing is pushed here.
    """
    copied: list[str] = []
    for pattern in patterns:
        matches = (
            sorted(source_root.glob(pattern)) if any(c in pattern for c in "*?[") else [source_root / pattern]
        )
        for src in matches:
            rel = src.relative_to(source_root)
            if ".." in rel.parts or not src.exists():
                continue
            dest = worktree / rel
            if dest.exists():
                continue  # tracked in the branch: the branch's own file wins
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


def make_dir(*, stack: UndoStack, path: Path, label: str) -> None:
    """Create a folder devup owns; the inverse removes it only if this run created it."""
    if path.exists():
        return
    stack.push(UndoRecord("dir_remove", {"path": str(path)}, label))
    path.mkdir(parents=True, mode=0o700)


@inverse("file_restore")
def undo_file(args: dict[str, Any]) -> None:
    """Put back the previous content, or remove a file this run created."""
    path = Path(args["path"])
    if args["content"] is None:
        path.unlink(missing_ok=True)
    elif path.parent.exists():
        write_atomic(path, args["content"])


@inverse("dir_remove")
def undo_dir(args: dict[str, Any]) -> None:
    """Remove a folder devup created; already gone is success."""
    path = Path(args["path"])
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DevupError(f"cannot remove {path}: {os.strerror(exc.errno or 0)}") from None
