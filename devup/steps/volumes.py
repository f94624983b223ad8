"""Data steps (SPEC §7): pausing, volumes made ahead of compose, snapshot volumes, restores.

Every function pushes its inverse before it acts; every inverse succeeds when its target is
already gone (or already resumed), so recovery may run it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devup import journal, remote
from devup.engine import copies, pausing, volumes
from devup.errors import BusyError, EngineError
from devup.locks import file_lock
from devup.remote import Engine
from devup.undo import UndoRecord, UndoStack, inverse, unwind_records


def pause(*, stack: UndoStack, ids: list[str], label: str) -> None:
    """Pause `ids` for a crash-consistent copy; the inverse resumes them."""
    if not ids:
        return
    stack.push(UndoRecord("containers_unpause", {"ids": ids}, f"paused containers of {label}"))
    pausing.pause(stack.engine, ids)


@inverse("containers_unpause")
def undo_pause(args: dict[str, Any], eng: Engine) -> None:
    """Resume the paused containers and wait until they serve again; running or removed ones
    are fine."""
    resume(eng, list(args["ids"]))


def resume(eng: Engine, ids: list[str]) -> None:
    """Unpause, then wait out a healthcheck that failed while paused (the engine marks a paused
    container unhealthy at once), so `status` right after says what is true: it serves."""
    pausing.unpause(eng, ids)
    pausing.wait_healthy(eng, ids, timeout=60)


def stop(*, stack: UndoStack, ids: list[str], label: str) -> None:
    """Stop `ids` for a restore; the inverse starts them again."""
    if not ids:
        return
    stack.push(UndoRecord("containers_start", {"ids": ids}, f"stopped containers of {label}"))
    pausing.stop(stack.engine, ids)


def start(*, stack: UndoStack, ids: list[str], label: str) -> None:
    """Start `ids` again after a restore; the inverse stops them, so that a copy back never
    runs under a database that uses the volume."""
    if not ids:
        return
    stack.push(UndoRecord("containers_stop", {"ids": ids}, f"started containers of {label}"))
    pausing.start(stack.engine, ids)


@inverse("containers_stop")
def undo_start(args: dict[str, Any], eng: Engine) -> None:
    pausing.stop(eng, list(args["ids"]))


@inverse("containers_start")
def undo_stop(args: dict[str, Any], eng: Engine) -> None:
    """Start the stopped containers again and wait until they serve (healthy, where they have a
    healthcheck); running or removed ones are fine."""
    pausing.start(eng, list(args["ids"]))
    pausing.wait_healthy(eng, list(args["ids"]), timeout=120)


def create_volume(*, stack: UndoStack, name: str, labels: dict[str, str], label: str) -> None:
    """Create a volume this run owns (a clone's copy); the inverse removes it."""
    stack.push(UndoRecord("volume_remove", {"name": name}, label))
    volumes.create_volume(stack.engine, name, labels)


@inverse("volume_remove")
def undo_create(args: dict[str, Any], eng: Engine) -> None:
    """Remove the volume (and a copy helper still writing to it); already gone is success."""
    volumes.remove_volume(eng, args["name"])


def create_snapshot_volume(
    *, stack: UndoStack, name: str, manifest: str, labels: dict[str, str], label: str
) -> None:
    """Create a volume of a snapshot; the inverse removes it unless the snapshot is complete."""
    stack.push(UndoRecord("snapshot_volume_remove", {"name": name, "manifest": manifest}, label))
    volumes.create_volume(stack.engine, name, labels)


@inverse("snapshot_volume_remove")
def undo_snapshot_volume(args: dict[str, Any], eng: Engine) -> None:
    """An incomplete snapshot's volume goes; a complete snapshot (its manifest exists) stays."""
    if volumes.volume_info(eng, args["manifest"]) is None:
        volumes.remove_volume(eng, args["name"])


def keep_for_restore(
    *, stack: UndoStack, pairs: list[tuple[str, str, str]], labels: dict[str, str], manifest: str
) -> None:
    """Record, before a restore copies over the session's volumes, how to put their data back:
    `pairs` are (before-restore snapshot volume, session volume, helper image)."""
    stack.push(
        UndoRecord(
            "restore_copy_back",
            {"pairs": [list(p) for p in pairs], "labels": labels, "manifest": manifest},
            "the data the restore replaced",
        )
    )


@inverse("restore_copy_back")
def undo_restore(args: dict[str, Any], eng: Engine) -> None:
    """Copy the kept data back into the session's volumes; only then drop the kept snapshot
    (the state before the restore had no such snapshot). A failed copy keeps it.

    The manifest goes only after every copy back: when it is gone, a run of this inverse that
    was interrupted afterwards has copied everything already, and copying again from volumes
    it may have removed would empty the session's data."""
    if volumes.volume_info(eng, args["manifest"]) is not None:
        for kept, target, image in args["pairs"]:
            copies.copy_volume(
                eng, source=kept, target=target, image=image, labels=args["labels"], phase="copy-back"
            )
        volumes.remove_volume(eng, args["manifest"])
    for kept, _, _ in args["pairs"]:
        volumes.remove_volume(eng, kept)


def discard_snapshot(*, stack: UndoStack, manifest: str, names: list[str], label: str) -> None:
    """Before a snapshot that only a run needs is taken (a restore's kept data): its inverse
    removes it, complete or not, manifest first."""
    stack.push(UndoRecord("snapshot_remove", {"manifest": manifest, "names": names}, label))


@inverse("snapshot_remove")
def undo_discard(args: dict[str, Any], eng: Engine) -> None:
    volumes.remove_volume(eng, args["manifest"])
    for name in args["names"]:
        volumes.remove_volume(eng, name)


def source_run(*, stack: UndoStack, journal_path: Path, lock_path: Path, session: str) -> None:
    """Before a clone writes the source session's own journal (its pause), record in this run's
    journal that recovering this run recovers that one too."""
    stack.push(
        UndoRecord(
            "source_recover",
            {"journal": str(journal_path), "lock": str(lock_path), "session": session},
            f"the copy from session {session}",
        )
    )


@inverse("source_recover")
def undo_source(args: dict[str, Any], eng: Engine) -> None:
    """Finish the source session's interrupted copy run (resume its containers). When another
    run holds the source's lock, that run has finished it already (every run starts so)."""
    path = Path(args["journal"])
    try:
        with file_lock(Path(args["lock"]), blocking=False):
            found = journal.replay(path)
            if found is None or found.outcome is not None or found.begin.get("kind") != "clone-source":
                return
            # The source's own run names its engine (the same as this run's, by plan_clone).
            records = [(i, UndoRecord.from_json(r)) for i, r in reversed(found.pending)]
            leftovers = unwind_records(journal.Journal(path), records, remote.engine_of(found.begin))
            if leftovers:
                raise EngineError(
                    f"session {args['session']}: " + "; ".join(f"{lo.label}: {lo.error}" for lo in leftovers)
                )
            path.unlink(missing_ok=True)
    except BusyError:
        return
