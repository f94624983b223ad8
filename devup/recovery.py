"""Finishing an interrupted run: every command on a session does this first (SPEC §5.3).

A run journals its undo records before each step acts (undo.py); a run that ended without
marking its journal committed or rolled back (killed, power cut, a rollback it could not
finish) is finished here: the pending records are undone in reverse, on the engine the run
used, and the journal is removed. This module is the only place that does it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devup import journal, remote, steps
from devup.errors import (
    BusyError,
    DevupError,
    Interrupted,
    Leftover,
    NoSuchSession,
    RecoverIncomplete,
    leftover_text,
)
from devup.locks import is_locked
from devup.records import SessionRecord, write_record
from devup.report import Reporter
from devup.undo import UndoRecord, unwind_records
from devup.workspace import Workspace


@dataclass(frozen=True)
class Recovery:
    """What finishing session `session`'s interrupted run did.

    status: "clean" (there was none), "recovered", "rollback_incomplete" (see `leftovers`),
    "busy" (a run holds the session: it is not interrupted) or "error" (its journal could not
    be read; `message` says why).
    """

    session: str
    status: str
    leftovers: list[Leftover] = field(default_factory=list)
    error: str | None = None

    @property
    def message(self) -> str:
        return {
            "clean": f"session {self.session}: nothing to recover",
            "recovered": f"session {self.session}: interrupted run rolled back",
            "busy": f"session {self.session}: a devup run is in progress; left alone",
            "rollback_incomplete": leftover_text(self.session, self.leftovers),
        }.get(self.status, self.error or "")

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "status": self.status,
            "message": self.message,
            "leftovers": [f"{lo.label}: {lo.error}" for lo in self.leftovers],
        }

    def check(self, *, hint: str | None = None) -> None:
        """Raise RecoverIncomplete (exit 3) when something is left to undo."""
        if self.leftovers:
            raise RecoverIncomplete(self.session, self.leftovers, hint=hint)


def finish(ws: Workspace, name: str, reporter: Reporter, *, include_kept: bool = False) -> Recovery:
    """Finish an interrupted run of `name`; the caller holds the session's lock.

    A run kept for debugging (`--on-failure keep`) is left as it is unless `include_kept`
    (`down` removes what it made).
    """
    path = ws.repo.journal(name)
    found = journal.replay(path)
    if found is None:
        return Recovery(name, "clean")
    if found.outcome in ("committed", "rolled_back") or (found.outcome == "kept" and not include_kept):
        if found.outcome != "kept":
            path.unlink(missing_ok=True)
        return Recovery(name, "clean")
    reporter.note(f"rolling back the interrupted run of {name}")
    records = [(i, UndoRecord.from_json(r)) for i, r in reversed(found.pending)]
    steps.load_all()  # every inverse a journal may name
    # Undone on the engine the run used, whatever this shell's DOCKER_HOST says (guarantee 10).
    where = remote.engine_of(found.begin)
    try:
        leftovers = unwind_records(
            journal.Journal(path), records, where, on_undo=reporter.undone, reraise=True
        )
    except Interrupted as exc:
        # What is undone is marked so on the journal, the rest is still pending there: the next
        # command on the session goes on from here. This command ends as interrupted (130).
        raise Interrupted(
            exc.signum,
            context=f"the rollback of the interrupted run of {name} stopped part way; "
            f"`devup recover {name}` (or any devup command on {name}) finishes it",
        ) from None
    if not leftovers:
        leftovers = finish_rollback(ws, name, resumed=bool(found.begin.get("resumed")), reporter=reporter)
    return Recovery(name, "rollback_incomplete" if leftovers else "recovered", leftovers)


def finish_if_idle(ws: Workspace, name: str, reporter: Reporter) -> Recovery:
    """`finish` for the commands that only read a session: a run in progress is not
    interrupted, so a held lock is "busy", never a wait."""
    if not ws.repo.journal(name).exists():
        return Recovery(name, "clean")  # the common case: nothing read, no lock taken
    found = journal.replay(ws.repo.journal(name))
    if found is None or found.outcome is not None:
        return Recovery(name, "clean")
    try:
        with ws.locked(name):
            return finish(ws, name, reporter)
    except BusyError:
        return Recovery(name, "busy")


def open_session(ws: Workspace, name: str, reporter: Reporter) -> SessionRecord:
    """The record of session `name` for a command that reads it, an interrupted run of it
    finished first. A missing session raises `missing`
    (`path` and `exec` say exit 2, SPEC §2)."""
    from devup.paths import check_session_name

    check_session_name(name)
    finish_if_idle(ws, name, reporter)
    record = ws.record(name)
    if record is None:
        raise NoSuchSession(name)
    from devup import usage

    usage.touch(ws.repo, name)  # env, logs, path, exec: a use (SPEC §5.13)
    return record


def busy_sessions(ws: Workspace) -> set[str]:
    """Sessions with a run in progress (its lock held), an interrupted one (its journal
    pending), one kept for debugging, or a journal that cannot be read (a person must look):
    what gc and the snapshot sweep leave alone."""
    found: set[str] = set()
    folder = ws.repo.journals_dir
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            replayed = journal.replay(path)
        except DevupError:
            found.add(path.stem)
            continue
        if replayed is not None and replayed.outcome in (None, "kept"):
            found.add(path.stem)
    locks = ws.repo.state / "locks"
    if locks.is_dir():
        found |= {p.stem for p in locks.glob("*.lock") if is_locked(p)}
    return found


def finish_rollback(ws: Workspace, name: str, *, resumed: bool, reporter: Reporter) -> list[Leftover]:
    """After a complete unwind: mark a resumed session failed, remove the journal. Neither may
    stop or hide anything (SPEC §5.11): a journal that cannot be removed (a read-only state
    folder) is a leftover, since the next command would replay it."""
    if resumed:
        try:
            record = ws.record(name)
            if record is not None:
                write_record(ws.repo.record(name), record.replace(status="failed", services={}))
        except (OSError, DevupError) as exc:
            reporter.warn(f"could not mark session {name} failed: {getattr(exc, 'strerror', None) or exc}")
    path = ws.repo.journal(name)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        return [Leftover(f"journal {path}", f"could not be removed: {exc.strerror}")]
    return []
