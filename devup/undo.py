"""The undo stack: push(record) before acting, disarm() on success, unwind() on failure.

ExitStack's semantics with records instead of closures: each record is a kind plus JSON
arguments, journaled before the step acts, so another process can undo it after a crash.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devup.errors import DevupError, Interrupted, Leftover, NotUndoable
from devup.journal import Journal
from devup.remote import Engine

# An inverse gets its record's arguments and the engine of the run that made it: the engine is
# the run's (its journal's begin entry), never the environment of whoever unwinds.
UndoFn = Callable[[dict[str, Any], Engine], None]
_REGISTRY: dict[str, UndoFn] = {}


def inverse(kind: str) -> Callable[[UndoFn], UndoFn]:
    """Register the function that undoes records of `kind`; it must be idempotent."""

    def register(fn: UndoFn) -> UndoFn:
        _REGISTRY[kind] = fn
        return fn

    return register


@dataclass(frozen=True)
class UndoRecord:
    kind: str
    args: dict[str, Any]
    label: str  # what a person reads in a leftover list: "worktree ../x-worktrees/a"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "args": self.args, "label": self.label}

    @staticmethod
    def from_json(data: dict[str, Any]) -> UndoRecord:
        return UndoRecord(kind=data["kind"], args=data["args"], label=data.get("label", data["kind"]))


def undo_one(record: UndoRecord, engine: Engine) -> None:
    """Run the registered inverse. The steps register theirs when imported; whoever unwinds
    (session, recovery) loads them first, so this module never imports the steps above it."""
    fn = _REGISTRY.get(record.kind)
    if fn is None:
        raise DevupError(
            f"no inverse is registered for {record.kind!r} (a journal of another devup version?)"
        )
    fn(record.args, engine)


class UndoStack:
    def __init__(self, journal: Journal, engine: Engine) -> None:
        self._journal = journal
        self.engine = engine
        self._lock = threading.Lock()
        self._records: list[tuple[int, UndoRecord]] = []
        self._next = 0

    def push(self, record: UndoRecord) -> int:
        """Journal (fsync) first, then remember: the record exists before the step acts."""
        with self._lock:
            ident = self._next
            self._next += 1
            self._journal.append({"op": "push", "id": ident, "undo": record.to_json()})
            self._records.append((ident, record))
            return ident

    def update(self, ident: int, record: UndoRecord) -> None:
        """Refine a record once the step knows more (a process's pid and start time)."""
        with self._lock:
            self._journal.append({"op": "update", "id": ident, "undo": record.to_json()})
            self._records = [(i, record if i == ident else r) for i, r in self._records]

    def disarm(self) -> None:
        with self._lock:
            self._journal.append({"op": "end", "outcome": "committed"})
            self._records = []

    def keep(self) -> None:
        """Leave everything in place for debugging; `down` unwinds it later."""
        with self._lock:
            self._journal.append({"op": "end", "outcome": "kept"})

    def unwind(self, *, on_undo: Callable[[str, str | None], None] | None = None) -> list[Leftover]:
        """Undo last-in first-out, going on past failures; returns what could not be undone."""
        with self._lock:
            records = list(reversed(self._records))
        leftovers = unwind_records(self._journal, records, self.engine, on_undo=on_undo)
        if not leftovers:
            # Not being able to say so is no leftover: the caller removes the journal next.
            _append_quietly(self._journal, {"op": "end", "outcome": "rolled_back"})
        return leftovers


# Inverses that touch independent objects and may run side by side when adjacent on the
# stack: compose groups brought up in parallel come down in parallel.
_PARALLEL_KINDS = frozenset({"compose_down"})


def unwind_records(
    journal: Journal,
    records: list[tuple[int, UndoRecord]],
    engine: Engine,
    *,
    on_undo: Callable[[str, str | None], None] | None = None,
    reraise: bool = False,
) -> list[Leftover]:
    """Undo `records` in the order given; an Interrupted stops here and leaves the journal. The
    records not undone are leftovers, or, with `reraise` (a recovery: the command was
    interrupted, not its own rollback), the Interrupted goes on up."""
    from devup import runner

    # The interrupt that led here (if one did) stopped the run's commands; the inverses' own
    # commands must run. (dag.run joins its workers before the Interrupted reaches us.)
    runner.resume()
    leftovers: list[Leftover] = []
    position = 0
    while position < len(records):
        batch = [records[position]]
        while (
            batch[0][1].kind in _PARALLEL_KINDS
            and position + len(batch) < len(records)
            and records[position + len(batch)][1].kind == batch[0][1].kind
        ):
            batch.append(records[position + len(batch)])
        try:
            results = _undo_batch(batch, engine)
        except Interrupted:
            if reraise:
                raise
            leftovers.extend(Leftover(r.label, "not undone: interrupted") for _, r in records[position:])
            return leftovers
        for (ident, record), (error, final) in zip(batch, results, strict=True):
            if error is None or final:
                # A full disk or a read-only state folder must not stop the unwind (SPEC
                # §5.11): the record stays pending in the journal, and undoing it again is
                # harmless (every inverse succeeds when its target is already gone). One that
                # can never be carried out is reported below once and not retried, so that
                # `devup recover` can finish.
                _append_quietly(journal, {"op": "undone", "id": ident})
            if error is not None:
                leftovers.append(Leftover(record.label, error))
            if on_undo:
                with contextlib.suppress(Exception):  # reporting is never a reason to stop undoing
                    on_undo(record.label, error)
        position += len(batch)
    return leftovers


def _append_quietly(journal: Journal, entry: dict[str, Any]) -> bool:
    try:
        journal.append(entry)
    except OSError:
        return False
    return True


def _undo_batch(batch: list[tuple[int, UndoRecord]], engine: Engine) -> list[tuple[str | None, bool]]:
    """Undo each record: (None, False) for success, else the error and whether it is final (no
    later attempt could do better). One failure never stops the rest."""

    def attempt(record: UndoRecord) -> tuple[str | None, bool]:
        try:
            undo_one(record, engine)
        except Exception as exc:  # keep unwinding: one failed inverse must not strand the rest
            error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            return error, isinstance(exc, NotUndoable)
        return None, False

    if len(batch) == 1:
        return [attempt(batch[0][1])]
    from concurrent.futures import ThreadPoolExecutor

    from devup import runner

    with ThreadPoolExecutor(max_workers=len(batch), thread_name_prefix="devup-undo") as pool:
        futures = [pool.submit(attempt, record) for _, record in batch]
        try:
            return [f.result() for f in futures]
        except BaseException:
            runner.terminate_all()
            raise
