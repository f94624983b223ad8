"""Worktrees made by other tools (SPEC §8): attach a session to one, and find a session by path.

An attached worktree belongs to the tool that made it (Claude Code, Codex, Conductor, Cursor,
Worktrunk, a person with `git worktree add`). devup records it with `attached: true` and never
pushes an undo record for it, so no rollback, `down`, `gc` or recovery can remove it.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from devup import git, paths
from devup.errors import CommandFailed, DevupError, UsageError
from devup.records import SessionRecord, read_record
from devup.report import Reporter
from devup.workspace import Workspace, open_workspace

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_MAX = 40  # SPEC's NAME: at most 40 characters


def slugify(text: str) -> str:
    """`text` (a branch name, an agent's worktree name) as a valid session NAME, or "" when
    nothing of it survives: lower case, runs of other characters as one '-', at most 40."""
    slug = _NOT_SLUG.sub("-", text.lower()).strip("-")
    return slug[:_MAX].strip("-")


def agent_session_name(raw: str) -> str:
    """An agent tool's worktree name as a session NAME (SPEC §8): the name itself when it is a
    valid NAME; else its slug (cut to 31 characters) and a short hash of the raw name.

    Names that slug alike (`Agent One`, `agent_one`, `agent/one`) or differ only past 40
    characters then never share a session (hostile-input new-M5), and the same name again is
    the same session. A name with nothing slug-able left is its hash alone.
    """
    if paths.NAME_RE.fullmatch(raw):
        return raw
    import hashlib

    digest = hashlib.sha256(raw.encode("utf-8", errors="surrogatepass")).hexdigest()[:8]
    slug = slugify(raw)[: _MAX - len(digest) - 1].strip("-")
    return f"{slug}-{digest}" if slug else digest


@dataclass(frozen=True)
class Target:
    """An existing worktree of this repository that a session can attach to."""

    path: Path  # its top level, resolved
    branch: str


def _toplevel(path: Path) -> tuple[Path, Path]:
    """The worktree top level that `path` is in, and its git common dir (both resolved)."""
    try:
        out = git.git(path, "rev-parse", "--show-toplevel", "--git-common-dir").splitlines()
    except CommandFailed:
        raise UsageError(
            f"{path} is not inside a git worktree",
            hint="run `git worktree add` (or let your agent tool make the worktree) first",
        ) from None
    top, common = Path(out[0]), Path(out[1])
    if not common.is_absolute():
        common = path / common  # git prints it relative to the folder it ran in
    return top.resolve(), common.resolve()


def target(ws: Workspace, path: Path, *, here: bool) -> Target:
    """Check that `path` is a worktree of this repository on a branch (exit 2 otherwise).

    With `here` (the current directory) any folder inside the worktree will do; a `--worktree
    PATH` must be the worktree itself, so that a plain folder is never taken for one.
    """
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory", hint="pass the path of an existing worktree")
    top, common = _toplevel(path)
    where = "the current directory" if here else str(path)
    if common != ws.repo.common_dir.resolve():
        raise UsageError(
            f"{where} belongs to another repository ({top}), not {ws.repo.root}",
            hint="run devup from that repository's main checkout, or pass a worktree of this one",
        )
    if not here and top != path.resolve():
        raise UsageError(
            f"{path} is not a worktree (it is a folder inside {top})",
            hint=f"pass the worktree itself: --worktree {top}"
            if top != ws.repo.root.resolve()
            else "pass a worktree of the repository (`git worktree list` shows them)",
        )
    if top == ws.repo.root.resolve():
        raise UsageError(
            f"{where} is the main checkout of {ws.repo.root}, not a worktree made for a session",
            hint="run `devup up NAME` for a worktree of devup's own, or --here inside a worktree "
            "another tool made",
        )
    registered = git.worktree_at(ws.repo.root, top)
    if registered is None:
        raise UsageError(f"{top} is not a registered worktree of {ws.repo.root}")
    if registered.branch is None:
        raise UsageError(
            f"worktree {top} has a detached HEAD; a session needs a branch",
            hint=f"`git -C {top} switch -c BRANCH` first",
        )
    return Target(path=top, branch=registered.branch)


def session_name(ws: Workspace, tgt: Target, name: str | None) -> tuple[str, bool]:
    """The session NAME (given, or the branch slugified) and whether it was derived; exit 2
    when the worktree is already another session's, or NAME is a session elsewhere."""
    derived = name is None
    chosen = slugify(tgt.branch) if name is None else name
    if not chosen:
        raise UsageError(
            f"branch {tgt.branch!r} gives no usable session name", hint="pass NAME: `devup up --here NAME`"
        )
    paths.check_session_name(chosen)
    owner = session_at(ws, tgt.path)
    if owner is not None and owner.session != chosen:
        raise UsageError(
            f"worktree {tgt.path} is already session {owner.session}'s",
            hint=f"`devup up {owner.session}` resumes it",
        )
    previous = ws.record(chosen)
    if previous is not None and Path(previous.worktree).resolve() != tgt.path:
        raise UsageError(
            f"session {chosen} already exists with worktree {previous.worktree}",
            hint="pass another NAME: `devup up --here NAME`",
        )
    return chosen, derived


def check_branch(tgt: Target, branch: str | None, base: str | None) -> None:
    """--branch and --base choose a worktree devup makes; an attached one has its own."""
    if branch is not None and branch != tgt.branch:
        raise UsageError(
            f"worktree {tgt.path} is on branch {tgt.branch}, not {branch}",
            hint="leave out --branch: an attached session uses the worktree's branch",
        )
    if base is not None:
        raise UsageError(
            "--base has no meaning for an attached worktree: its branch exists already",
            hint="leave out --base",
        )


def records(ws: Workspace) -> list[SessionRecord]:
    """Every readable session record of the repository (a corrupt one is skipped, not fatal)."""
    found: list[SessionRecord] = []
    folder = ws.repo.sessions_dir
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(DevupError):
            record = read_record(path)
            if record is not None:
                found.append(record)
    return found


def session_at(ws: Workspace, path: Path) -> SessionRecord | None:
    """The session whose worktree is `path` (or contains it), if any."""
    target_path = path.resolve()
    for record in records(ws):
        wt = Path(record.worktree).resolve()
        if target_path == wt or wt in target_path.parents:
            return record
    return None


def workspace_for(cwd: Path, attach_to: Path | None) -> Workspace:
    """The repository of `cwd`; outside any repository, the one `--worktree PATH` belongs to."""
    try:
        return open_workspace(cwd)
    except UsageError:
        if attach_to is None or not attach_to.is_dir():
            raise
        return open_workspace(attach_to)


def choose(
    ws: Workspace,
    *,
    name: str | None,
    here: bool,
    path: Path | None,
    branch: str | None,
    base: str | None,
    reporter: Reporter,
) -> tuple[Target | None, str]:
    """`up`'s session NAME, and the worktree to attach to with --here/--worktree (None: devup
    makes its own). All checks before anything changes: exit 2."""
    if here and path is not None:
        raise UsageError("--here and --worktree both name a worktree", hint="pass only one of them")
    if not here and path is None:
        if name is None:
            raise UsageError("missing NAME", hint="`devup up NAME`, or `devup up --here` inside a worktree")
        return None, name
    tgt = target(ws, Path.cwd() if path is None else path.absolute(), here=here)
    check_branch(tgt, branch, base)
    chosen, derived = session_name(ws, tgt, name)
    if derived:
        reporter.note(f"session name {chosen} (from branch {tgt.branch})")
    return tgt, chosen


def here_session(ws: Workspace, cwd: Path, name: str | None) -> str | None:
    """`down --here`: the session whose worktree holds `cwd`; None when no session's does (a
    tool running its teardown twice is not an error). The main checkout is exit 2."""
    if _toplevel(cwd)[0] == ws.repo.root.resolve():
        raise UsageError(
            "the current directory is in the main checkout, not in a session's worktree",
            hint="run it inside the session's worktree, or `devup down NAME`",
        )
    record = session_at(ws, cwd)
    if record is None:
        return None
    if name is not None and name != record.session:
        raise UsageError(f"the current worktree is session {record.session}'s, not {name}'s")
    return record.session
