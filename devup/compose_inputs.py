"""What compose will read in a worktree that does not exist yet, written from the branch into a
temp dir: the compose files, then what they name (`env_file`, `extends`, `include`, `label_file`,
the project dir's `.env`), followed until nothing new appears. Never the whole tree: a 3-line
compose file in a monorepo of 50,000 files costs a few small git reads (bench/preflight.py).

Reading more than compose needs is harmless (compose only opens what it names), reading less
is what made valid files "invalid" (issue 10), so every reference is looked up against each
folder compose might resolve it from.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from devup import git

_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|git@|oci:)", re.IGNORECASE)


def materialize(
    *,
    root: Path,
    commit: str,
    groups: Iterable[list[str]],
    dest: Path,
    worktree: Path,
    env: Mapping[str, str],
    copy: Callable[[], object] | None = None,
) -> list[str]:
    """Write into `dest` what compose reads for `groups` (each a list of compose files, relative
    to the repository) as the worktree at `worktree` will hold them at `commit`; then `copy`
    (the `[worktree].copy` files) and what the copied files name. Returns the paths written."""
    reader = _Reader(root=root, commit=commit, dest=dest, worktree=worktree)
    groups = [list(g) for g in groups]
    _close(reader, groups, env)
    if copy is not None:
        copy()
        _close(reader, groups, env)  # a copied .env or compose file may name more files
    return sorted(reader.done)


def watched(*, worktree: Path, groups: Iterable[list[str]], env: Mapping[str, str]) -> list[str]:
    """Every path (relative to `worktree`) that compose may read for `groups` there, present or
    not (a `.env` that appears changes what compose reads): what `up` fingerprints to tell, with
    a read of each, whether a session's compose inputs changed since it came up (SPEC §5.12)."""
    reader = _InWorktree(worktree)
    _close(reader, [list(g) for g in groups], env)
    return sorted(reader.looked)


def _close(reader: _Reader | _InWorktree, groups: list[list[str]], env: Mapping[str, str]) -> None:
    # (path, folders its references resolve from, whether it is a compose file)
    todo: list[tuple[str, tuple[str, ...], bool]] = []
    for files in groups:
        project_dir = posixpath.dirname(_norm(files[0])) if files else ""
        todo += [(posixpath.join(project_dir, ".env"), (), False), (".env", (), False)]
        todo += [(_norm(f), (project_dir,), True) for f in files]
    parsed: set[str] = set()
    while todo:
        batch, todo = todo, []
        reader.fetch([p for p, _, _ in batch])
        for path, bases, is_compose in batch:
            if not is_compose or path in parsed:
                continue
            parsed.add(path)
            text = reader.text(path)
            if text is None:
                continue
            here = posixpath.dirname(path)
            folders = tuple(dict.fromkeys((here, *bases)))
            scope = {**_dotenv(reader.text(posixpath.join(folders[-1], ".env")) or ""), **env}
            for ref, ref_is_compose, own_dir in _references(text, scope):
                for folder in folders:
                    target = _join(folder, ref)
                    if target is None:
                        continue
                    if ref_is_compose:
                        # An included file is its own project: its own folder (or its
                        # project_directory) holds its .env and anchors its references.
                        own = _join(folder, own_dir) if own_dir else None
                        inner = (posixpath.dirname(target), *((own,) if own is not None else ()))
                        todo.append((target, inner, True))
                        todo.append((posixpath.join(inner[-1], ".env"), (), False))
                    else:
                        todo.append((target, (), False))


def _references(text: str, env: Mapping[str, str]) -> list[tuple[str, bool, str | None]]:
    """(path, is a compose file, its project_directory) named by one compose file."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="rt").load(text)
    except (YAMLError, ValueError):
        return []  # compose reports it, with a better message than ours
    if not isinstance(doc, dict):
        return []
    found: list[tuple[str, bool, str | None]] = []

    def add(value: Any, is_compose: bool, own_dir: str | None = None) -> None:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                item = item.get("path")
            if isinstance(item, str) and item:
                path = _interpolate(item, env)
                if path and not _REMOTE.match(path):
                    found.append((path, is_compose, own_dir))

    includes = doc.get("include")
    for inc in includes if isinstance(includes, list) else []:
        if isinstance(inc, dict):
            own = inc.get("project_directory")
            own_dir = _interpolate(own, env) if isinstance(own, str) else None
            add(inc.get("path"), True, own_dir)
            add(inc.get("env_file"), False)
        else:
            add(inc, True)
    services = doc.get("services")
    for svc in services.values() if isinstance(services, dict) else []:
        if not isinstance(svc, dict):
            continue
        add(svc.get("env_file"), False)
        add(svc.get("label_file"), False)
        ext = svc.get("extends")
        if isinstance(ext, dict) and "file" in ext:
            add(ext.get("file"), True)
    return found


class _Reader:
    """The branch's files, written into `dest` on demand; symlinks are followed inside the
    repository and point where the worktree's would when they lead out of it."""

    def __init__(self, *, root: Path, commit: str, dest: Path, worktree: Path) -> None:
        self.root, self.commit, self.dest, self.worktree = root, commit, dest, worktree
        self.done: set[str] = set()
        self.looked: set[str] = set()

    def fetch(self, paths: list[str]) -> None:
        wanted = [p for p in dict.fromkeys(paths) if p and p not in self.looked]
        while wanted:
            self.looked.update(wanted)
            links: list[str] = []
            for path, (mode, oid) in git.tree_entries(self.root, self.commit, wanted).items():
                target = self.dest / path
                if target.exists() or target.is_symlink():
                    continue  # written already, or copied from the main checkout
                if mode == "120000":
                    link = git.blob(self.root, oid)
                    inside = posixpath.normpath(posixpath.join(posixpath.dirname(path), link))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if posixpath.isabs(link) or inside.split("/")[0] == "..":
                        # Leads out of the repository: what the worktree's copy will point at.
                        # Normalized: the worktree does not exist yet, so `wt/..` would not resolve.
                        os.symlink(
                            link if posixpath.isabs(link) else os.path.normpath(self.worktree / inside),
                            target,
                        )
                    else:
                        os.symlink(link, target)
                        links.append(inside)
                    self.done.add(path)
                elif mode.startswith("100"):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    # Compose reads its files as UTF-8, so text is faithful enough here.
                    target.write_text(git.blob(self.root, oid), encoding="utf-8")
                    self.done.add(path)
            wanted = [p for p in dict.fromkeys(links) if p not in self.looked]

    def text(self, path: str) -> str | None:
        self.fetch([path])
        target = self.dest / path
        try:
            return target.read_text(encoding="utf-8", errors="replace") if target.is_file() else None
        except OSError:
            return None


class _InWorktree:
    """`_Reader`'s interface over a worktree that exists: nothing to fetch, files read in place."""

    def __init__(self, worktree: Path) -> None:
        self.worktree = worktree
        self.looked: set[str] = set()

    def fetch(self, paths: list[str]) -> None:
        self.looked.update(p for p in paths if p)

    def text(self, path: str) -> str | None:
        self.looked.add(path)
        try:
            target = self.worktree / path
            return target.read_text(encoding="utf-8", errors="replace") if target.is_file() else None
        except OSError:
            return None


def _norm(path: str) -> str:
    return posixpath.normpath(path.replace(os.sep, "/"))


def _join(folder: str, path: str) -> str | None:
    """`path` from `folder`, relative to the repository; None when it leads out of it."""
    if posixpath.isabs(path):
        return None  # outside the worktree: compose reads it where it is, not from the branch
    joined = posixpath.normpath(posixpath.join(folder, path))
    return None if joined == ".." or joined.startswith("../") else joined


def _interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `$VAR` and `$$`, enough to
    find a file; `${VAR:?err}` and `${VAR:+alt}` too."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3) or ""
        current = env.get(name)
        if op in (":-", ":?"):
            return current if current else (arg if op == ":-" else "")
        if op in ("-", "?"):
            return current if current is not None else (arg if op == "-" else "")
        if op == ":+":
            return arg if current else ""
        if op == "+":
            return arg if current is not None else ""
        return current or ""

    return _VAR.sub(sub, value)


def _dotenv(text: str) -> dict[str, str]:
    """KEY=VALUE lines of a `.env`, as far as interpolating a file name needs them."""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[key.strip()] = value
    return found
