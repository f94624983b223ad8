"""The git adapter: repository discovery, worktrees and branches (gitpython only here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup import runner
from devup.errors import CommandFailed, DevupError, UsageError
from devup.paths import RepoPaths


def find_repo(start: Path) -> RepoPaths:
    """The main checkout that `start` belongs to, from the main checkout or any worktree.

    Pure file reads, no subprocess, for a checkout and its worktrees (every command starts
    here, and `ls` must start fast); git itself is asked only for a submodule checkout.
    """
    here = start.resolve()
    for folder in (here, *here.parents):
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return RepoPaths(root=folder, common_dir=dot_git)
        if dot_git.is_file():
            text = dot_git.read_text(encoding="utf-8").strip()
            if text.startswith("gitdir:"):
                gitdir = (folder / text.split(":", 1)[1].strip()).resolve()
                commondir = gitdir / "commondir"
                common = (gitdir / commondir.read_text().strip()).resolve() if commondir.is_file() else gitdir
                if common.name == ".git" and (common.parent / ".git").resolve() == common:
                    return RepoPaths(root=common.parent, common_dir=common)
                # A submodule (its git dir is the superproject's .git/modules/NAME) or another
                # layout where the main checkout is not the common dir's parent: ask git.
                return _ask_git(folder)
    if (here / "HEAD").is_file() and (here / "objects").is_dir() and (here / "refs").is_dir():
        raise _bare(here)
    raise UsageError(
        f"{start} is not inside a git repository",
        hint="run devup from the main checkout of your project or from one of its session worktrees",
    )


def _ask_git(folder: Path) -> RepoPaths:
    common_out = git(folder, "rev-parse", "--git-common-dir").strip()
    common = (folder / common_out).resolve()
    bare = runner.run(
        ["git", "--git-dir", str(common), "config", "--bool", "core.bare"], cwd=folder, timeout=60
    )
    if bare.ok and bare.output.strip() == "true":
        raise _bare(common)  # a worktree of a bare repository: there is no main checkout
    result = runner.run(
        ["git", "--git-dir", str(common), "rev-parse", "--show-toplevel"], cwd=folder, timeout=60
    )
    top = result.output.strip() if result.ok else ""
    return RepoPaths(root=Path(top).resolve() if top else common.parent, common_dir=common)


def _bare(path: Path) -> UsageError:
    return UsageError(
        f"{path} is a bare repository: devup needs its main checkout, where devup.toml is",
        hint="run devup in a clone with a working tree (`git clone URL`), not in a bare one or its worktrees",
    )


def _is_lock_contention(result: runner.Result) -> bool:
    """Another git in the same repository, met in the act: a lock it holds, or the files of a
    worktree it is adding or removing. `git worktree add` creates `.git/worktrees/<id>/commondir`
    and writes it after, and `remove` deletes it before the folder; a git that lists the
    worktrees in that moment (`worktree add`, `worktree list`, `branch`) dies with "failed to
    read .git/worktrees/<id>/commondir" (git 2.39), before it changed anything. Twenty sessions
    coming up at once met it in 5 of 192 `up`s (SPEC §5.14)."""
    if result.ok:
        return False
    output = result.output + result.errors
    locked = ".lock" in output and (
        "File exists" in output or "Unable to create" in output or "could not lock" in output
    )
    return locked or ("failed to read" in output and "/worktrees/" in output)


def git(root: Path, *args: str) -> str:
    """Run git in `root`; contention with another git in the same repository (see
    `_is_lock_contention`) is retried with jitter, any other failure is a CommandFailed at once.

    Plain git through the runner: gitpython's command wrapper does the same, and importing it
    costs up to 0.17 s on every devup command that touches git. tenacity is loaded only when a
    first attempt met a lock.
    """
    result = _git_once(root, args)
    if _is_lock_contention(result):
        from tenacity import Retrying, retry_if_result, stop_after_attempt, wait_random_exponential

        retrying = Retrying(
            retry=retry_if_result(_is_lock_contention),
            wait=wait_random_exponential(multiplier=0.05, max=1),
            stop=stop_after_attempt(7),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        result = retrying(_git_once, root, args)
    if not result.ok:
        raise CommandFailed(
            command="git " + " ".join(args),
            returncode=result.returncode,
            output_tail="\n".join((result.output + result.errors).strip().splitlines()[-20:]),
        )
    return result.output.rstrip("\n")


def _git_once(root: Path, args: tuple[str, ...]) -> runner.Result:
    # Through files, not pipes: a repository's own git hook may leave a background child
    # holding git's output, and `up` must not wait for it (new-M4).
    return runner.run_through_files(["git", *args], cwd=root, timeout=300)


@dataclass(frozen=True)
class Worktree:
    path: Path
    branch: str | None  # short name, None when detached
    head: str | None


def worktrees(root: Path) -> list[Worktree]:
    found: list[Worktree] = []
    block: dict[str, Any] = {}
    for line in [*git(root, "worktree", "list", "--porcelain").splitlines(), ""]:
        if not line:
            if "worktree" in block:
                branch = block.get("branch")
                found.append(
                    Worktree(
                        path=Path(block["worktree"]),
                        branch=branch.removeprefix("refs/heads/") if branch else None,
                        head=block.get("HEAD"),
                    )
                )
            block = {}
            continue
        key, _, value = line.partition(" ")
        block[key] = value
    return found


def worktree_at(root: Path, path: Path) -> Worktree | None:
    target = path.resolve()
    return next((w for w in worktrees(root) if w.path.resolve() == target), None)


def rev(root: Path, ref: str) -> str | None:
    """The commit `ref` names, or None when it names none."""
    try:
        return git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip() or None
    except CommandFailed:
        return None


def branch_exists(root: Path, branch: str) -> bool:
    return rev(root, f"refs/heads/{branch}") is not None


def add_worktree(root: Path, path: Path, *, branch: str, new_from: str | None) -> None:
    """Check out `branch` at `path`; with `new_from`, create the branch there first.

    Two commands, not `worktree add -b`: that one creates the branch and then lists the
    worktrees, so when the listing meets another git's half-written worktree, a retry of it
    would find the branch there and fail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if new_from is not None:
        git(root, "branch", "--no-track", branch, new_from)
    git(root, "worktree", "add", str(path), branch)


def remove_worktree(root: Path, path: Path) -> None:
    """Remove the worktree registered at `path`; already gone is success."""
    if worktree_at(root, path) is not None:
        git(root, "worktree", "remove", "--force", "--force", str(path))
    git(root, "worktree", "prune")


def delete_branch(root: Path, branch: str, *, expected: str) -> None:
    """Delete `branch` only while it still points where this run created it (nothing lost)."""
    if rev(root, f"refs/heads/{branch}") == expected:
        git(root, "branch", "-D", branch)


def dirty_paths(worktree: Path, *, ignored: bool = False) -> list[str]:
    """Uncommitted changes and untracked files (and with `ignored`, ignored files too), as
    paths relative to the worktree."""
    args = ["status", "--porcelain", "--untracked-files=all"] + (["--ignored"] if ignored else [])
    out = git(worktree, *args)
    return [line[3:] for line in out.splitlines() if line.strip()]


def git_dir(worktree: Path) -> Path:
    """The worktree's private git dir (`<common-dir>/worktrees/<id>` for a linked worktree)."""
    return Path(git(worktree, "rev-parse", "--absolute-git-dir").strip())


def exclude(common_dir: Path, pattern: str) -> None:
    """Keep `pattern` out of git in every worktree of the repository (info/exclude)."""
    path = common_dir / "info" / "exclude"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if pattern not in text.splitlines():
        from devup.locks import write_atomic  # a crash mid-write must not cut the user's rules

        path.parent.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        write_atomic(
            path, text + ("" if text.endswith("\n") or not text else "\n") + pattern + "\n", mode=mode
        )


def unignoring_rule(gitignore: str, name: str) -> str | None:
    """The rule of a root `.gitignore` that makes `name` (a file at the worktree root) NOT
    ignored (`!name`, `!.env*`), when it is the last rule matching; else None.

    A root .gitignore outranks info/exclude, where devup keeps the env file out of git: such a
    rule would let `git add -A` stage the session's variables. Only the root .gitignore can
    match a file at the root (git's wildmatch, approximated by fnmatch for these patterns).
    """
    import fnmatch

    last: str | None = None
    negated = False
    for raw in gitignore.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pattern = line[1:] if neg else line
        pattern = pattern.removeprefix("\\")
        if pattern.endswith("/"):
            continue  # folders only
        pattern = pattern.lstrip("/")
        if "/" in pattern.rstrip("*"):
            continue  # a path below the root
        if fnmatch.fnmatchcase(name, pattern) or pattern in ("*", "**"):
            last, negated = line, neg
    return last if negated else None


def is_ignored(worktree: Path, rel: str) -> bool:
    return runner.run(["git", "check-ignore", "-q", rel], cwd=worktree, timeout=60).returncode == 0


def show(root: Path, commit: str, path: str) -> str | None:
    """The text of `path` at `commit`, or None when it is not there."""
    result = runner.run(["git", "show", f"{commit}:{path}"], cwd=root, timeout=60, merge_stderr=False)
    return result.output if result.ok else None


def extract(root: Path, commit: str, paths: list[str], dest: Path) -> None:
    """Write `paths` (files or folders) as they are at `commit` into `dest`."""
    import io
    import tarfile

    from git import Repo

    data = io.BytesIO()
    try:
        Repo(str(root)).archive(data, commit, path=paths, format="tar")
    except Exception as exc:  # gitpython raises several types here; translate at the edge
        raise DevupError(f"cannot read {', '.join(paths)} at {commit[:12]}: {exc}") from None
    data.seek(0)
    with tarfile.open(fileobj=data) as tar:
        tar.extractall(dest, filter="data")


def runner_check_ref(root: Path, branch: str) -> bool:
    """Whether `branch` is a valid branch name (git check-ref-format)."""
    try:
        git(root, "check-ref-format", "--branch", branch)
    except CommandFailed:
        return False
    return True


# Bytes of paths per `git ls-tree`: well under Linux's 2 MiB for all of a command's arguments.
_ARGS_BYTES = 256 * 1024


def tree_entries(root: Path, commit: str, paths: list[str]) -> dict[str, tuple[str, str]]:
    """path -> (mode, object id) of those of `paths` (repository-relative) present at `commit`;
    one `git ls-tree` for all of them (one per 256 KiB of paths), literal paths (no globbing).

    Where one path is a folder on the way to another, git lists that folder's entries instead
    of the folder itself: those come too, and a folder asked for may be missing. Every entry
    that is no folder (a file, a symlink) is listed when asked for."""
    found: dict[str, tuple[str, str]] = {}
    chunk: list[str] = []
    size = 0
    for path in [*paths, None]:
        if path is not None and (not chunk or size + len(path) < _ARGS_BYTES):
            chunk.append(path)
            size += len(path) + 1
            continue
        if chunk:
            out = git(root, "--literal-pathspecs", "ls-tree", "-z", "--full-tree", commit, "--", *chunk)
            for entry in out.split("\0"):
                meta, _, name = entry.partition("\t")
                if name:
                    mode, _kind, oid = meta.split()
                    found[name] = (mode, oid)
        chunk, size = ([path], len(path) + 1) if path is not None else ([], 0)
    return found


def blobs(root: Path, oids: list[str]) -> dict[str, str]:
    """oid -> content, as text, of many blobs with one `git cat-file --batch`."""
    if not oids:
        return {}
    result = runner.run(
        ["git", "cat-file", "--batch"],
        cwd=root,
        timeout=300,
        stdin="".join(f"{oid}\n" for oid in oids),
        merge_stderr=False,
    )
    if not result.ok:
        raise CommandFailed(
            command="git cat-file --batch", returncode=result.returncode, output_tail=result.errors
        )
    if "\ufffd" in result.output:
        # Framed by byte counts, and the runner's text replaced bytes that are no UTF-8: one
        # command per blob then (a symlink target that is no UTF-8 is rare).
        return {oid: blob(root, oid) for oid in oids}
    data = result.output.encode()
    found: dict[str, str] = {}
    at = 0
    for oid in oids:
        end = data.index(b"\n", at)
        header = data[at:end].split()
        at = end + 1
        if len(header) != 3:  # "<oid> missing" instead of "<oid> <type> <size>"
            raise CommandFailed(
                command="git cat-file --batch", returncode=0, output_tail=f"object {oid} is missing"
            )
        size = int(header[2])
        found[oid] = data[at : at + size].decode()
        at += size + 1
    return found


def blob(root: Path, oid: str) -> str:
    """The content of one blob (a file's or a symlink's target), as text."""
    result = _git_once(root, ("cat-file", "blob", oid))
    if not result.ok:
        raise CommandFailed(
            command=f"git cat-file blob {oid}", returncode=result.returncode, output_tail=result.errors
        )
    return result.output
