"""`devup gc`: find what devup created that no session owns, and remove it.

Only objects carrying this repository's identity are candidates: docker objects with its
`dev.devup.repo` label, processes with its DEVUP_REPO_ID tag, leases in its name, routes on the
router whose id names it, and registered git worktrees of this repository that carry devup's own
mark for a session with no record (never the main checkout, never one without the mark). Nothing
else. Each session's orphans are removed under that session's lock, once it is seen there to
own nothing still (a run of the same name may have begun since they were found). Last, the
router itself, shared by every repository, is stopped when no session of any repository has a
route on it (SPEC §9).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup import git, journal, processes, remote
from devup.engine import removal
from devup.engine.http import engine_version
from devup.engine.labels import LABEL_REPO
from devup.engine.volumes import volumes_with
from devup.errors import BusyError, DevupError, EngineUnavailable
from devup.hookspec import teardown_settings
from devup.leases import all_leases, release_ports
from devup.paths import CONFIG_NAME, ENV_FILE, check_session_name
from devup.records import SessionRecord, read_record
from devup.recovery import busy_sessions
from devup.report import Reporter
from devup.run import finish, held, saying
from devup.steps import worktree
from devup.workspace import Workspace


@dataclass(frozen=True)
class Orphan:
    kind: str  # container | network | volume | worktree | process | lease | route | router
    name: str
    session: str
    removed: bool = False
    error: str | None = None
    engine: remote.Engine | None = None  # where a container, network or volume is
    started: float | None = None  # a process's start time when found: a recycled pid is not it
    snapshot: bool = False  # an incomplete snapshot's volume: its sweep's, not its source session's

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "session": self.session,
            "removed": self.removed,
            "error": self.error,
            "engine": None if self.engine is None else self.engine.host,
        }


def _owned(ws: Workspace) -> set[str]:
    """Sessions that own their resources: a record, a run in progress (lock held), or a run
    kept for debugging (its journal still lists what it made; `down` removes it)."""
    owned = {p.stem for p in ws.repo.sessions_dir.glob("*.json")} if ws.repo.sessions_dir.is_dir() else set()
    return owned | busy_sessions(ws)


def engines(ws: Workspace) -> list[remote.Engine]:
    """Every engine this repository's sessions used (recorded when each was created), and the
    environment's: a leftover on a remote engine is found from any shell."""
    recorded = [remote.engine_of(r) for r in _records(ws)]
    try:
        here: list[remote.Engine | None] = [remote.current()]
    except DevupError:
        here = []
    return remote.distinct([*here, *remote.known(ws.repo.state), *recorded])


def _records(ws: Workspace) -> list[SessionRecord]:
    found = []
    for path in sorted(ws.repo.sessions_dir.glob("*.json")) if ws.repo.sessions_dir.is_dir() else []:
        try:
            record = read_record(path)
        except DevupError:
            continue
        if record is not None:
            found.append(record)
    return found


def _on_engine(ws: Workspace, owned: set[str], where: remote.Engine) -> list[Orphan]:
    """Containers, networks and volumes of the repository on engine `where`.

    Snapshots belong to the repository, not to a session: a complete one is never an orphan; an
    incomplete one is, once no run of its source session can still be writing it (SPEC §7)."""
    from devup import snapshots

    snapshot_volumes = {
        v.name for v in volumes_with(where, [f"{LABEL_REPO}={ws.repo.repo_id}", snapshots.LABEL_SNAPSHOT])
    }
    incomplete = {
        v.name: v.labels.get(snapshots.LABEL_SOURCE, "?") for v in snapshots.incomplete_volumes(ws, where)
    }
    found = [
        Orphan(obj.kind, obj.name, obj.session, engine=where)
        for obj in removal.labelled(where, repo_id=ws.repo.repo_id)
        if obj.session not in owned and not (obj.kind == "volume" and obj.name in snapshot_volumes)
    ]
    return found + [
        Orphan("volume", name, source, engine=where, snapshot=True)
        for name, source in sorted(incomplete.items())
    ]


def find(ws: Workspace, *, on: bool | list[remote.Engine] = True) -> list[Orphan]:
    """Orphans on each engine of `on` (True: every engine of `engines(ws)`), and here."""
    owned = _owned(ws)
    found: list[Orphan] = []
    for where in engines(ws) if on is True else on or []:
        found += _on_engine(ws, owned, where)
    seen_pids: set[int] = set()
    for proc in processes.tagged_all(repo_id=ws.repo.repo_id):
        session = proc.environ().get(processes.TAG_SESSION, "?")
        if session not in owned and proc.pid not in seen_pids:
            seen_pids.add(proc.pid)
            found.append(Orphan("process", str(proc.pid), session, started=proc.create_time()))
    for port, lease in sorted(all_leases().items()):
        if lease.get("repo") == ws.repo.repo_id and lease.get("session") not in owned:
            found.append(Orphan("lease", str(port), lease.get("session", "?")))
    found += _routes(ws, owned)
    main = ws.repo.root.resolve()
    # A session's worktree is never an orphan, whatever mark it carries: one attached after its
    # own session's record was lost still holds that session's mark (new-M1).
    in_use = {Path(r.worktree).resolve() for r in _records(ws)}
    for wt in git.worktrees(ws.repo.root)[1:]:  # the first one listed is the main checkout
        if wt.path.resolve() == main or wt.path.resolve() in in_use:
            continue  # never the main checkout, whatever [project].worktrees says
        mark = worktree.read_mark(ws.repo.common_dir, wt.path)
        # Only a worktree devup made for a session carries the mark; a hand-made one, another
        # tool's, or an attached one (--here) never does, and is never a candidate.
        if mark is not None and mark["repo_id"] == ws.repo.repo_id and mark["session"] not in owned:
            found.append(Orphan("worktree", str(wt.path), mark["session"]))
    return found


def _routes(ws: Workspace, owned: set[str]) -> list[Orphan]:
    """Routes of this repository's sessions that no session owns (a route whose run left no
    journal to undo it: a state folder wiped by hand, say)."""
    from devup import router

    if router.running() is None:
        return []
    try:
        ids = router.route_ids()
    except DevupError:
        return []
    return [
        Orphan("route", rid, session)
        for rid in ids
        if (found := router.owner(rid)) is not None
        and found[0] == ws.repo.repo_id
        and (session := found[1]) not in owned
    ]


def _router(reporter: Reporter, *, dry_run: bool) -> list[Orphan]:
    """The router, when no session of any repository has a route on it."""
    from devup import router

    found = router.running()
    if found is None:
        return []
    try:
        if dry_run:
            idle = not any(router.owner(r) for r in router.route_ids())
            return [Orphan("router", f"caddy (pid {found.pid})", "-")] if idle else []
        stopped = router.stop_if_idle()
    except DevupError as exc:
        reporter.warn(f"the router: {exc.message}")
        return []
    return [] if stopped is None else [Orphan("router", f"caddy (pid {stopped.pid})", "-", removed=True)]


def run(ws: Workspace, reporter: Reporter, *, dry_run: bool, force: bool = False) -> list[Orphan]:
    answering = []
    for index, where in enumerate(engines(ws)):
        try:
            # The environment's engine gets the usual ~4 s to ride out a blip; the others, which
            # may simply be switched off, one attempt.
            engine_version(where, attempts=5 if index == 0 else 1)
            answering.append(where)
        except DevupError as exc:
            # Not answering, or no address at all (a DOCKER_HOST of `tcp://h:99999`): as said.
            why = "does not answer" if isinstance(exc, EngineUnavailable) else f"was not asked: {exc.message}"
            reporter.warn(
                f"the Docker engine {where.label} {why}; its containers, networks and volumes were not checked"
            )
    if dry_run:
        return find(ws, on=answering) + _router(reporter, dry_run=True)
    with saying("gc stopped part way; `devup gc` again finishes"):
        _finish_interrupted(ws, reporter)
        found = find(ws, on=answering)
        copied = teardown_settings(ws.repo.root / CONFIG_NAME).copy
        removed: list[Orphan] = []
        for session in sorted({o.session for o in found if not o.snapshot}):
            mine = [o for o in found if o.session == session and not o.snapshot]
            removed += _remove_held(ws, session, mine, reporter, force=force, copied=copied)
        removed += [_remove(ws, o, force=force, copied=copied) for o in found if o.snapshot]
        return removed + _router(reporter, dry_run=False)


def _finish_interrupted(ws: Workspace, reporter: Reporter) -> None:
    """An interrupted run is undone from its journal first, through the run's prologue: that
    removes exactly what it made (branch included), which the sweep could not know. A session
    whose run is in progress (busy), kept, or whose journal cannot be read is left alone: it
    stays owned (see _owned) and the sweep goes on for everything else."""
    folder = ws.repo.journals_dir
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        name = path.stem
        try:
            found = journal.replay(path)
            if found is None or found.outcome is not None:
                continue  # not interrupted: its lock is not taken (a run on it must never meet gc)
            finish(ws, name, reporter)
        except BusyError:
            reporter.note(f"session {name}: a devup run holds it; left alone")
        except DevupError as exc:
            reporter.warn(f"session {name}: {exc.message}")


_ORDER = {"route": 0, "process": 1, "container": 2, "network": 3, "volume": 4, "worktree": 5, "lease": 6}


def _remove_held(
    ws: Workspace,
    session: str,
    orphans: list[Orphan],
    reporter: Reporter,
    *,
    force: bool,
    copied: tuple[str, ...],
) -> list[Orphan]:
    """The orphans of `session`, removed under its lock (the run's prologue) once it is seen
    there to own nothing still: a run of it that began after `find` looked (an `up` of the same
    name makes objects of the same names) is never swept. Objects of no valid session name (a
    process tagged without one) need no lock: no run can claim them."""
    ordered = sorted(orphans, key=lambda o: _ORDER[o.kind])
    try:
        check_session_name(session)
    except DevupError:
        return [_remove(ws, o, force=force, copied=copied) for o in ordered]
    try:
        with held(ws, session, reporter, kept="leave"):
            if _claimed(ws, session):
                reporter.note(f"session {session} exists again: its objects are left to it")
                return []
            return [_remove(ws, o, force=force, copied=copied) for o in ordered]
    except BusyError:
        reporter.note(f"session {session}: a devup run holds it now; its objects are left to it")
        return []
    except DevupError as exc:  # an earlier run of it that cannot be finished: left, and said
        return [Orphan(o.kind, o.name, o.session, False, exc.message, o.engine) for o in ordered]


def _claimed(ws: Workspace, name: str) -> bool:
    """Under `name`'s lock, its run finished: whether it owns its objects after all (a record, a
    run kept for debugging, or state that cannot be read: a person must look)."""
    try:
        if ws.record(name) is not None:
            return True
        found = journal.replay(ws.repo.journal(name))
    except DevupError:
        return True
    return found is not None and found.outcome == "kept"


def _precious(ws: Workspace, path: Path, copied: tuple[str, ...]) -> list[str]:
    """Files in an orphan worktree that removing it would lose: uncommitted changes, untracked
    and ignored files, except the env file and unchanged copies of `[worktree].copy` files."""
    found = []
    for rel in git.dirty_paths(path, ignored=True):
        rel = rel.rstrip("/")
        if rel == ENV_FILE:
            continue
        if any(rel == c or rel.startswith(c.rstrip("/") + "/") for c in copied):
            ours, theirs = path / rel, ws.repo.root / rel
            if ours.is_file() and not ours.is_symlink() and theirs.is_file():
                with contextlib.suppress(OSError):
                    if ours.read_bytes() == theirs.read_bytes():
                        continue
        found.append(rel)
    return found


def _remove(ws: Workspace, orphan: Orphan, *, force: bool, copied: tuple[str, ...]) -> Orphan:
    try:
        if orphan.kind == "process":
            processes.kill_pid(int(orphan.name), started=orphan.started)
        elif orphan.kind in ("container", "network", "volume"):
            assert orphan.engine is not None  # found on an engine: find() names it
            removal.remove(orphan.engine, orphan.kind, orphan.name)
        elif orphan.kind == "worktree":
            path = Path(orphan.name)
            dirty = _precious(ws, path, copied) if path.is_dir() and not force else []
            if dirty:
                return Orphan(
                    orphan.kind,
                    orphan.name,
                    orphan.session,
                    False,
                    f"kept: uncommitted, untracked or ignored files ({', '.join(dirty[:3])}); "
                    "`devup gc --force` removes it anyway",
                )
            git.remove_worktree(ws.repo.root, path)
        elif orphan.kind == "route":
            from devup import router

            router.remove(orphan.name)
        elif orphan.kind == "lease":
            release_ports(repo_id=ws.repo.repo_id, session=orphan.session, ports=[int(orphan.name)])
    except Exception as exc:  # report per object; one failure must not stop the rest
        message = exc.message if isinstance(exc, DevupError) else f"{type(exc).__name__}: {exc}"
        return Orphan(orphan.kind, orphan.name, orphan.session, False, message, orphan.engine)
    return Orphan(orphan.kind, orphan.name, orphan.session, True, engine=orphan.engine)
