"""`devup gc`: find what devup created that no session owns, and remove it.

Only objects carrying this repository's identity are candidates: docker objects with its
`dev.devup.repo` label, processes with its DEVUP_REPO_ID tag, leases in its name, and
registered git worktrees of this repository under the worktrees folder. Nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup import compose, git, journal, processes, state
from devup.errors import DevupError
from devup.report import Reporter
from devup.workspace import Workspace, recover_if_idle


@dataclass(frozen=True)
class Orphan:
    kind: str  # container | network | volume | worktree | process | lease
    name: str
    session: str
    removed: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "session": self.session,
            "removed": self.removed,
            "error": self.error,
        }


def _owned(ws: Workspace) -> set[str]:
    """Sessions that own their resources: a record, a run in progress (lock held), or a run
    kept for debugging (its journal still lists what it made; `down` removes it)."""
    owned = {p.stem for p in ws.repo.sessions_dir.glob("*.json")} if ws.repo.sessions_dir.is_dir() else set()
    for path in sorted(ws.repo.journals_dir.glob("*.jsonl")) if ws.repo.journals_dir.is_dir() else []:
        try:
            found = journal.replay(path)
        except DevupError:
            owned.add(path.stem)  # a corrupt journal: a person must look, gc must not guess
            continue
        if found is not None and found.outcome in (None, "kept"):
            owned.add(path.stem)
    locks = ws.repo.state / "locks"
    if locks.is_dir():
        owned |= {p.stem for p in locks.glob("*.lock") if state.is_locked(p)}
    return owned


def find(ws: Workspace, *, engine: bool = True) -> list[Orphan]:
    owned = _owned(ws)
    found: list[Orphan] = []
    if engine:
        client = compose.client()
        label = [f"{compose.LABEL_REPO}={ws.repo.repo_id}"]
        for c in client.containers.list(all=True, filters={"label": label}):
            if c.labels.get(compose.LABEL_SESSION) not in owned:
                found.append(Orphan("container", c.name, c.labels.get(compose.LABEL_SESSION, "?")))
        for n in client.networks.list(filters={"label": label}):
            if n.attrs.get("Labels", {}).get(compose.LABEL_SESSION) not in owned:
                found.append(Orphan("network", n.name, n.attrs["Labels"].get(compose.LABEL_SESSION, "?")))
        for v in client.volumes.list(filters={"label": label}):
            session = (v.attrs.get("Labels") or {}).get(compose.LABEL_SESSION, "?")
            if session not in owned:
                found.append(Orphan("volume", v.name, session))
    seen_pids: set[int] = set()
    for proc in processes.tagged_all(repo_id=ws.repo.repo_id):
        session = proc.environ().get(processes.TAG_SESSION, "?")
        if session not in owned and proc.pid not in seen_pids:
            seen_pids.add(proc.pid)
            found.append(Orphan("process", str(proc.pid), session))
    for port, lease in sorted(state.all_leases().items()):
        if lease.get("repo") == ws.repo.repo_id and lease.get("session") not in owned:
            found.append(Orphan("lease", str(port), lease.get("session", "?")))
    folder = ws.worktrees_dir
    if folder.is_dir():
        # A session's worktree is never an orphan, whatever its folder is called: an attached one
        # (SPEC §8) can sit in the worktrees folder under a name that is not its session's.
        in_use = {Path(r.worktree).resolve() for r in _readable_records(ws)}
        for wt in git.worktrees(ws.repo.root):
            if wt.path.resolve() in in_use:
                continue
            if wt.path.parent.resolve() == folder.resolve() and wt.path.name not in owned:
                found.append(Orphan("worktree", str(wt.path), wt.path.name))
    return found


def _readable_records(ws: Workspace) -> list[state.SessionRecord]:
    found = []
    for path in sorted(ws.repo.sessions_dir.glob("*.json")) if ws.repo.sessions_dir.is_dir() else []:
        try:
            record = state.read_record(path)
        except DevupError:
            continue  # a corrupt record: its name is still in `owned`, so its folder is kept
        if record is not None:
            found.append(record)
    return found


def run(ws: Workspace, reporter: Reporter, *, dry_run: bool) -> list[Orphan]:
    try:
        compose.engine_version()
        engine = True
    except DevupError:
        engine = False
        reporter.warn("the Docker engine does not answer: containers, networks and volumes were not checked")
    if not dry_run:
        # An interrupted run is undone from its journal first: that removes exactly what it
        # made (branch included), which the sweep below could not know.
        for journal_path in (
            sorted(ws.repo.journals_dir.glob("*.jsonl")) if ws.repo.journals_dir.is_dir() else []
        ):
            recover_if_idle(ws, journal_path.stem, reporter)
    found = find(ws, engine=engine)
    if dry_run:
        return found
    order = {"process": 0, "container": 1, "network": 2, "volume": 3, "worktree": 4, "lease": 5}
    return [_remove(ws, o) for o in sorted(found, key=lambda o: order[o.kind])]


def _remove(ws: Workspace, orphan: Orphan) -> Orphan:
    try:
        if orphan.kind == "process":
            processes.kill_pid(int(orphan.name))
        elif orphan.kind == "container":
            compose.client().containers.get(orphan.name).remove(force=True)
        elif orphan.kind == "network":
            compose.client().networks.get(orphan.name).remove()
        elif orphan.kind == "volume":
            compose.client().volumes.get(orphan.name).remove(force=True)
        elif orphan.kind == "worktree":
            path = Path(orphan.name)
            dirty = git.dirty_paths(path) if path.is_dir() else []
            dirty = [p for p in dirty if p != ".env.devup"]
            if dirty:
                return Orphan(
                    orphan.kind,
                    orphan.name,
                    orphan.session,
                    False,
                    f"kept: uncommitted changes ({', '.join(dirty[:3])})",
                )
            git.remove_worktree(ws.repo.root, path)
        elif orphan.kind == "lease":
            state.release_ports(repo_id=ws.repo.repo_id, session=orphan.session, ports=[int(orphan.name)])
    except Exception as exc:  # report per object; one failure must not stop the rest
        message = getattr(exc, "message", None) or getattr(exc, "explanation", None) or str(exc)
        return Orphan(orphan.kind, orphan.name, orphan.session, False, str(message))
    return Orphan(orphan.kind, orphan.name, orphan.session, True)
