"""Files: `[worktree].copy` into a new worktree, the env file, and restoring files on undo."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devup.errors import CopyRefused, DevupError
from devup.locks import write_atomic
from devup.paths import ENV_FILE, ensure_dir
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
    rels = [src.relative_to(root).as_posix() for src in copy_sources(source_root=root, patterns=patterns)]
    escapes = _tree_escapes(root, commit, rels)
    for rel in rels:
        if rel in escapes:
            raise _refuse(rel, "worktree", escapes[rel])


_MAX_HOPS = 40  # symlinks followed on one path before it counts as leading out (a loop)


def _tree_escapes(root: Path, commit: str, rels: list[str]) -> dict[str, str]:
    """rel -> the symlink target through which it leaves the tree of `commit`, for those of
    `rels` that do.

    Each path is walked component by component; a symlink on the way is replaced by its target
    (lexically normalised), and the walk starts again from the top. All walks advance together:
    each round asks git about every path on the way of every walk still going (one `ls-tree`,
    one `cat-file --batch` for the symlinks found), so 400 files cost two commands, not one per
    component of each file; a round is added only per symlink hop.
    """
    targets: dict[str, str | None] = {}  # path in the tree -> its symlink target, None if none
    walks = {rel: _Walk([p for p in rel.split("/") if p]) for rel in rels}
    escapes: dict[str, str] = {}
    while walks:
        wanted = sorted({p for w in walks.values() for p in w.ahead() if p not in targets})
        _learn(root, commit, wanted, targets)
        for rel, walk in list(walks.items()):
            if walk.advance(targets):
                del walks[rel]
                if walk.escape is not None:
                    escapes[rel] = walk.escape
    return escapes


def _learn(root: Path, commit: str, paths: list[str], targets: dict[str, str | None]) -> None:
    """Record for each of `paths` its symlink target in `commit`'s tree, or None."""
    from devup import git

    entries = git.tree_entries(root, commit, paths)
    links = {p: entries[p][1] for p in paths if p in entries and entries[p][0] == "120000"}
    contents = git.blobs(root, sorted(set(links.values())))
    for path in paths:
        oid = links.get(path)
        # As `git cat-file blob` read through git(): the trailing newlines stripped.
        targets[path] = None if oid is None else contents.get(oid, "").rstrip("\n")


class _Walk:
    """One path's walk through the tree: `done` components checked, `todo` still to check."""

    def __init__(self, todo: list[str]) -> None:
        self.todo = todo
        self.done: list[str] = []
        self.hops = 0
        self.escape: str | None = None  # the symlink target through which the path leaves

    def ahead(self) -> list[str]:
        """Every path from here to the end of the walk, as far as no symlink changes it."""
        return ["/".join([*self.done, *self.todo[: i + 1]]) for i in range(len(self.todo))]

    def advance(self, targets: dict[str, str | None]) -> bool:
        """Walk on as far as `targets` tells: True once finished (`escape` set when the path
        leads out), False when the next step needs a path git was not asked about yet."""
        import posixpath

        while self.todo:
            candidate = [*self.done, self.todo[0]]
            key = "/".join(candidate)
            if key not in targets:
                return False
            self.todo.pop(0)
            target = targets[key]
            if target is None:
                self.done = candidate
                continue
            self.hops += 1
            done = self.done
            joined = posixpath.normpath(posixpath.join(*done, target)) if done else posixpath.normpath(target)
            if self.hops > _MAX_HOPS or target.startswith("/") or joined == ".." or joined.startswith("../"):
                self.escape = target
                return True
            self.todo = [p for p in joined.split("/") if p not in ("", ".")] + self.todo
            self.done = []
        return True


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


def write_env_file(*, stack: UndoStack, common_dir: Path, worktree: Path, env: dict[str, str]) -> list[str]:
    """The session's env file in the worktree, kept out of git; returns a warning for each
    variable that python-dotenv and compose read differently from sh (envvars.inexact)."""
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
    return [
        f"{key} {why}: sh, bash and `devup env --format shell` read it exactly, "
        f"python-dotenv and compose's env_file read {ENV_FILE} differently"
        for key, why in envvars.inexact(env).items()
    ]


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
