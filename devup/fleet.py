"""Many sessions on one machine (SPEC §5.13): limits checked before `up` creates anything, and
reaping (orphaned, expired, idle sessions) in `gc` and, cheaply, in every `up`.

Reaping never loses work: an orphaned or expired session's data volumes are kept as a snapshot
before it is brought down, a worktree with uncommitted changes is kept, the branch always is,
and a session that is busy (another run holds it) is left for the next time.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup import usage
from devup.errors import BusyError, CorruptState, DevupError, LimitReached, NoDataVolumes
from devup.locks import file_lock, is_locked
from devup.records import SessionRecord, read_record
from devup.report import Reporter
from devup.workspace import Workspace


def records(ws: Workspace) -> list[SessionRecord]:
    """Every readable session record of the repository (a corrupt one is its own problem)."""
    folder = ws.repo.sessions_dir
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        with contextlib.suppress(CorruptState):
            record = read_record(path)
            if record is not None:
                found.append(record)
    return found


def last_used(ws: Workspace, record: SessionRecord) -> float:
    return usage.last_used(ws.repo, record.session, worktree=record.worktree, since=record.updated_at)


def expires(ws: Workspace, record: SessionRecord, limits: usage.Limits) -> float | None:
    """When the session expires (its `--ttl`, else `[limits].expire`, after its last use)."""
    ttl = record.ttl if record.ttl is not None else limits.expire
    return None if ttl is None else last_used(ws, record) + ttl


# --- limits ----------------------------------------------------------------------------------


def make_room(ws: Workspace, name: str, limits: usage.Limits, reporter: Reporter, *, new: bool) -> None:
    """Before `up` of `name` creates anything (its lock held): exit 6 when the repository is at
    `max_sessions` (a new session) or at `max_running` with nothing to evict; with evict = "lru"
    the least recently used running sessions are stopped to make room (never removed, never
    `name`). Counted under the repository's limits lock, so two `up`s never both take the last
    place: a run in progress holds its session's lock and counts as one more running session
    (a new session, or a resume). The sessions to stop are chosen (their locks taken) under
    that lock and stopped after it is released: another `up` never waits for those stops."""
    if limits.max_sessions is None and limits.max_running is None:
        return
    with contextlib.ExitStack() as claimed:
        with file_lock(ws.repo.state / "locks" / "limits.lock"):
            known = {r.session: r for r in records(ws) if r.session != name}
            busy = _in_progress(ws) - {name}
            sessions = len(known) + len(busy - set(known))
            if new and limits.max_sessions is not None and sessions >= limits.max_sessions:
                raise LimitReached(
                    f"[limits].max_sessions = {limits.max_sessions}: this repository has {_count(sessions)}; "
                    "nothing was changed",
                    hint="`devup down` a session you no longer need (`devup ls` lists them), or raise the limit",
                )
            if limits.max_running is None:
                return
            running = {n for n, r in known.items() if r.status == "up"} | busy
            excess = len(running) + 1 - limits.max_running  # + 1: `name`
            if excess <= 0:
                return
            idle = [known[n] for n in running - busy]
            victims = _claim(ws, idle, excess, claimed) if limits.evict == "lru" else []
            if len(victims) < excess:
                raise LimitReached(
                    f"[limits].max_running = {limits.max_running}: {_count(len(running))} running"
                    + ("" if limits.evict == "lru" else ' and evict = "none"')
                    + "; nothing was changed",
                    hint="`devup stop` a session (`devup ls` lists them), or raise the limit",
                )
        _evict(ws, victims, limits, reporter)


def _count(n: int) -> str:
    return f"{n} session{'' if n == 1 else 's'}"


def _in_progress(ws: Workspace) -> set[str]:
    folder = ws.repo.state / "locks"
    return {
        p.stem
        for p in (folder.glob("*.lock") if folder.is_dir() else [])
        if p.stem != "limits" and is_locked(p)
    }


def _claim(
    ws: Workspace, idle: list[SessionRecord], wanted: int, claimed: contextlib.ExitStack
) -> list[SessionRecord]:
    """The `wanted` least recently used of `idle` whose locks this run could take (held in
    `claimed` until they are stopped); fewer when others hold the rest."""
    taken: list[SessionRecord] = []
    for record in sorted(idle, key=lambda r: last_used(ws, r)):
        if len(taken) == wanted:
            break
        try:
            claimed.enter_context(ws.locked(record.session))
        except BusyError:
            continue
        taken.append(record)
    return taken


def _evict(ws: Workspace, victims: list[SessionRecord], limits: usage.Limits, reporter: Reporter) -> None:
    """Stop the claimed sessions (their locks held by this run); one that cannot be stopped
    leaves the limit unmet, said as such (what was stopped stays stopped: nothing is lost)."""
    from devup import teardown

    stopped: list[str] = []
    for record in victims:
        try:
            teardown.stop(ws, record.session, reporter)
        except DevupError as exc:
            raise LimitReached(
                f"[limits].max_running = {limits.max_running}: could not stop session {record.session} "
                f"to make room ({exc.message})"
                + (f"; stopped to make room: {', '.join(stopped)}" if stopped else "; nothing was changed"),
                hint=f"`devup stop {record.session}`, then `up` again; or raise the limit",
            ) from None
        stopped.append(record.session)
        reporter.note(
            f"stopped session {record.session}, the least recently used, to stay within "
            f"[limits].max_running = {limits.max_running} (`devup up {record.session}` resumes it)"
        )


# --- reaping ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reaped:
    session: str
    why: str  # orphaned | expired | idle
    done: str  # down | stopped | kept | busy | failed
    message: str
    snapshot: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "why": self.why,
            "done": self.done,
            "message": self.message,
            "snapshot": self.snapshot,
        }


def due(ws: Workspace, limits: usage.Limits, *, now: float | None = None) -> list[tuple[str, str]]:
    """(session, why) of what is due, at the cost of a stat or two per session: a worktree that
    another tool removed (orphaned), a session past its expiry (expired), a running session not
    used for `idle_stop` (idle)."""
    now = time.time() if now is None else now
    found = []
    for record in records(ws):
        why = _why(ws, record, limits, now)
        if why is not None:
            found.append((record.session, why))
    return found


def _why(ws: Workspace, record: SessionRecord, limits: usage.Limits, now: float) -> str | None:
    if not Path(record.worktree).is_dir():
        return "orphaned"
    ends = expires(ws, record, limits)
    if ends is not None and ends <= now:
        return "expired"
    if (
        limits.idle_stop is not None
        and record.status == "up"
        and last_used(ws, record) + limits.idle_stop <= now
    ):
        return "idle"
    return None


def reap(ws: Workspace, reporter: Reporter, *, skip: str | None = None) -> list[Reaped]:
    """Do what is due (see `due`), each session under its own lock and judged again there; a
    busy one is left alone, one no longer due (its own `down` was removing its worktree when
    `due` looked, say) is not touched."""
    limits = usage.limits_of(ws.config_text)
    done = [_reap_one(ws, name, why, limits, reporter) for name, why in due(ws, limits) if name != skip]
    return [r for r in done if r is not None]


def would_reap(ws: Workspace) -> list[Reaped]:
    """`gc --dry-run`: what `reap` would do, doing nothing."""
    limits = usage.limits_of(ws.config_text)
    what = {
        "idle": "would be stopped",
        "expired": "would be brought down",
        "orphaned": "would be brought down",
    }
    return [Reaped(n, why, "due", f"session {n} is {why}: {what[why]}") for n, why in due(ws, limits)]


def _reap_one(ws: Workspace, name: str, why: str, limits: usage.Limits, reporter: Reporter) -> Reaped | None:
    """Reap `name` for `why`, holding its lock from the judgement to the end: `due` looked
    without it, and what it saw may be gone by now (a `down` in progress removes the worktree
    before the record; after it, the session's own `up` may bring it back). Acting on that
    stale look brought down a session that was up again, or held the lock of one that was
    gone while its owner's next command met it as busy (exit 4, SPEC §5.14)."""
    try:
        with ws.locked(name):
            record = ws.record(name)
            if record is None or _why(ws, record, limits, time.time()) != why:
                return None
            return _reap_held(ws, name, why, reporter)
    except BusyError:
        return Reaped(name, why, "busy", f"session {name} is busy: left for the next time")
    except CorruptState:
        return None  # its own problem (`records` skips it too)


def _reap_held(ws: Workspace, name: str, why: str, reporter: Reporter) -> Reaped:
    from devup import teardown

    try:
        if why == "idle":
            teardown.stop(ws, name, reporter)
            reporter.note(f"session {name} was not used for a while: stopped (`devup up {name}` resumes it)")
            return Reaped(name, why, "stopped", f"session {name} stopped: idle")
        snap = _keep_data(ws, name, why, reporter)
        record = ws.record(name)
        dirty = record is not None and _has_changes(record)
        teardown.down(ws, name, reporter, keep_worktree=dirty, force=not dirty)
        kept = (
            f"; its worktree {record.worktree} has uncommitted changes and is kept"
            if record and dirty
            else ""
        )
        said = (
            f"session {name} {why}: brought down"
            + (f", its data kept as snapshot {snap}" if snap else "")
            + kept
        )
        reporter.note(said)
        return Reaped(name, why, "down", said, snap)
    except BusyError:
        return Reaped(name, why, "busy", f"session {name} is busy: left for the next time")
    except DevupError as exc:
        if exc.exit_code == 130:
            raise  # its data snapshot was interrupted: so is the command that reaps (SPEC §5.8)
        reporter.warn(f"session {name} is {why} but was left as it is: {exc.message}")
        return Reaped(name, why, "failed", exc.message)


def _keep_data(ws: Workspace, name: str, why: str, reporter: Reporter) -> str | None:
    """Its data volumes as snapshot NAME-<why>-<UTC stamp> (SPEC §5.13); None when it has none
    (host mode, or no named volumes). A failure stops the reaping of this session: data first."""
    record = ws.record(name)
    if record is None or not record.groups:
        return None
    from devup import data

    snap = f"{name}-{why}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    try:
        data.create(ws, name, snap, reporter)
    except NoDataVolumes:
        return None
    return snap


def _has_changes(record: SessionRecord) -> bool:
    """Uncommitted changes in a worktree devup made (an attached one is never removed anyway)."""
    from devup import git, paths

    wt = Path(record.worktree)
    if not wt.is_dir() or record.attached or not record.created_worktree:
        return False
    return any(p != paths.ENV_FILE for p in git.dirty_paths(wt))
