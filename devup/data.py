"""The snapshot commands (SPEC §7): create, restore, remove and list copies of a session's data.

A session's data is the named, non-external volumes of its compose groups, each identified by
(group, volume key); snapshots.py names, reads and sweeps the copies, clones.py makes a new
session's from them. Every run here is journaled under the session's lock like `up`: a kill at
any point is finished or undone by the next devup command on the session.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from devup import compose_model, faults, paths, remote, run, snapshots
from devup.engine import pausing
from devup.engine.copies import copy_volume
from devup.engine.labels import LABEL_PROJECT, LABEL_REPO, LABEL_SESSION, LABEL_VOLUME
from devup.engine.volumes import create_volume, remove_volume, volumes_with
from devup.errors import (
    DevupError,
    Interrupted,
    NoDataVolumes,
    NoSuchSession,
    UsageError,
)
from devup.records import SessionRecord
from devup.report import Reporter
from devup.snapshots import (
    LABEL_CREATED,
    LABEL_IMAGE,
    LABEL_MANIFEST,
    LABEL_SIZE,
    LABEL_SNAP_GROUP,
    LABEL_SNAP_KEY,
    LABEL_SNAPSHOT,
    LABEL_SOURCE,
    DataVolume,
    Snapshot,
)
from devup.steps import volumes
from devup.undo import UndoStack
from devup.workspace import Workspace

RESTART_TIMEOUT = 120.0


def session_volumes(ws: Workspace, record: SessionRecord) -> list[DataVolume]:
    """The session's data: the volumes compose created for its groups (never external ones,
    which carry no project label), each with the image of a container that mounts it."""
    projects = {g.project: g.name for g in record.groups}
    eng = remote.engine_of(record)
    conts = pausing.containers_of(
        eng, repo_id=ws.repo.repo_id, session=record.session, projects=list(projects)
    )
    found = []
    for project, group in projects.items():
        labels = [
            f"{LABEL_PROJECT}={project}",
            f"{LABEL_SESSION}={record.session}",
            f"{LABEL_REPO}={ws.repo.repo_id}",
        ]
        for v in volumes_with(eng, labels):
            if compose_model.host_path(v.options) is not None:
                continue  # a host folder every session shares, not this session's data (new-M6)
            key = v.labels.get(LABEL_VOLUME) or v.name.removeprefix(f"{project}_")
            image = next((c.image for c in conts if v.name in c.mounts), "") or next(
                (c.image for c in conts if c.project == project), ""
            )
            found.append(DataVolume(group, key, v.name, image))
    return sorted(found, key=lambda d: (d.group, d.key))


# --- runs -------------------------------------------------------------------------------------


def session_run(ws: Workspace, record: SessionRecord, kind: str, reporter: Reporter) -> run.Run:
    """A data run on the session's journal, on its engine. The session exists either way: a
    rollback never marks it failed (resumed=False)."""
    return run.Run(
        ws, record.session, kind=kind, engine=remote.engine_of(record), reporter=reporter, resumed=False
    )


def ready(ws: Workspace, name: str) -> SessionRecord:
    """The record of `name`, whose run the caller holds (`run.held`); what a killed `create` left
    on its engine is swept first."""
    record = ws.record(name)
    if record is None:
        raise NoSuchSession(name)
    snapshots.sweep_incomplete(ws, remote.engine_of(record))
    return record


def helper_labels(ws: Workspace, session: str) -> dict[str, str]:
    return {LABEL_REPO: ws.repo.repo_id, LABEL_SESSION: session}


def _images(vols: list[DataVolume]) -> str:
    image = next((v.image for v in vols if v.image), "")
    if not image:
        raise DevupError(
            "the session has no container to take a copy helper's image from",
            hint="bring the session up (`devup up NAME`) first",
        )
    return image


def _take(
    stack: UndoStack,
    ws: Workspace,
    record: SessionRecord,
    snap: str,
    vols: list[DataVolume],
    reporter: Reporter,
    *,
    paused: list[str],
) -> Snapshot:
    """Copy `vols` into snapshot `snap`; complete once the manifest exists. `paused`: the
    containers to resume right after the last copy (before the manifest: as short as it can be)."""
    fallback = _images(vols)
    manifest = snapshots.manifest_name(ws.repo.repo_id, snap)
    base = {LABEL_REPO: ws.repo.repo_id, LABEL_SNAPSHOT: snap, LABEL_SOURCE: record.session}
    total = 0
    made = []
    for v in vols:
        target = snapshots.volume_name(ws.repo.repo_id, snap, v.group, v.key)
        image = v.image or fallback
        labels = {**base, LABEL_SNAP_GROUP: v.group, LABEL_SNAP_KEY: v.key, LABEL_IMAGE: image}
        volumes.create_snapshot_volume(
            stack=stack, name=target, manifest=manifest, labels=labels, label=f"snapshot volume {target}"
        )
        reporter.step_started(f"copy {v.group}/{v.key}")
        t0 = time.monotonic()
        total += copy_volume(
            stack.engine,
            source=v.name,
            target=target,
            image=image,
            labels=helper_labels(ws, record.session),
            phase="snapshot",
        )
        reporter.step_done(f"copy {v.group}/{v.key}", time.monotonic() - t0)
        made.append(DataVolume(v.group, v.key, target, image))
    # Resumed at once: the pause lasts the copies, not the bookkeeping. The engine reports a
    # paused container unhealthy and says healthy again at its next probe (one healthcheck
    # interval); the service itself serves from the moment it is unpaused.
    pausing.unpause(stack.engine, paused)
    created = time.time()
    create_volume(
        stack.engine,
        manifest,
        {**base, LABEL_MANIFEST: str(len(made)), LABEL_CREATED: f"{created:.3f}", LABEL_SIZE: str(total)},
    )
    return Snapshot(snap, record.session, created, total, made)


def group_containers(
    ws: Workspace, record: SessionRecord, vols: list[DataVolume], states: tuple[str, ...]
) -> list[str]:
    """The containers, in one of `states`, of the groups whose volumes are copied (those alone
    are paused or stopped)."""
    groups = {v.group for v in vols}
    projects = [g.project for g in record.groups if g.name in groups]
    return [
        c.id
        for c in pausing.containers_of(
            remote.engine_of(record), repo_id=ws.repo.repo_id, session=record.session, projects=projects
        )
        if c.status in states
    ]


RUNNING = ("running",)  # what a snapshot or clone pauses
_UP = ("running", "paused", "restarting")  # what a restore stops


# --- commands --------------------------------------------------------------------------------


def create(ws: Workspace, name: str, snap: str | None, reporter: Reporter) -> Snapshot:
    """`snapshot create NAME [--as SNAP]`: pause the groups being copied, copy, resume."""

    paths.check_session_name(name)
    if snap is not None:
        snapshots.check_snapshot_name(snap)
    with run.held(ws, name, reporter):
        record = ready(ws, name)
        from devup import usage

        usage.touch(ws.repo, name)  # a use (SPEC §5.13)
        snap = snap or f"{name}-{snapshots.stamp()}"
        with snapshots.lock(ws, snap):
            if snapshots.find(ws, snap, remote.engine_of(record)) is not None:
                raise UsageError(
                    f"snapshot {snap} exists already",
                    hint=f"`devup snapshot rm {snap}` first, or pick another name",
                )
            vols = session_volumes(ws, record)
            if not vols:
                raise NoDataVolumes(f"session {name} has no data volumes: there is nothing to snapshot")
            this = session_run(ws, record, "snapshot", reporter)
            try:
                ids = group_containers(ws, record, vols, RUNNING)
                volumes.pause(stack=this.stack, ids=ids, label=f"session {name}")
                result = _take(this.stack, ws, record, snap, vols, reporter, paused=ids)
            except (Exception, Interrupted) as exc:
                raise this.fail(exc, what="snapshot create") from None
            this.commit()
            return result


@dataclass(frozen=True)
class Restored:
    session: str
    snapshot: str
    kept: Snapshot

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "status": "restored",
            "snapshot": self.snapshot,
            "kept": self.kept.to_json(),
        }


def restore(ws: Workspace, name: str, snap: str, reporter: Reporter) -> Restored:
    """`snapshot restore NAME SNAP`: stop the groups, keep their data as a snapshot, copy SNAP's
    in, start them again; a failure or a kill copies the kept data back."""

    paths.check_session_name(name)
    snapshots.check_snapshot_name(snap)
    with run.held(ws, name, reporter):
        record = ready(ws, name)
        with snapshots.reading(ws, snap, remote.engine_of(record)) as found:
            return _restore(ws, record, found, reporter)


def _restore(ws: Workspace, record: SessionRecord, found: Snapshot, reporter: Reporter) -> Restored:
    """The restore itself, with the session's lock and a read hold on `found` taken."""
    name, snap = record.session, found.name
    vols = session_volumes(ws, record)
    if not vols:
        raise NoDataVolumes(f"session {name} has no data volumes: there is nothing to restore into")
    before = f"{name}-before-restore-{snapshots.stamp()}"
    with snapshots.lock(ws, before):
        if snapshots.find(ws, before, remote.engine_of(record)) is not None:
            raise UsageError(f"snapshot {before} exists already; try again in a second")
        this = session_run(ws, record, "restore", reporter)
        try:
            ids = group_containers(ws, record, vols, _UP)
            volumes.stop(stack=this.stack, ids=ids, label=f"session {name}")
            volumes.discard_snapshot(
                stack=this.stack,
                manifest=snapshots.manifest_name(ws.repo.repo_id, before),
                names=[snapshots.volume_name(ws.repo.repo_id, before, v.group, v.key) for v in vols],
                label=f"snapshot {before}",
            )
            kept = _take(this.stack, ws, record, before, vols, reporter, paused=[])
            helper = helper_labels(ws, name)
            volumes.keep_for_restore(
                stack=this.stack,
                pairs=[(k.name, v.name, k.image) for k, v in zip(kept.volumes, vols, strict=True)],
                labels=helper,
                manifest=snapshots.manifest_name(ws.repo.repo_id, before),
            )
            theirs = {(v.group, v.key): v for v in found.volumes}
            for v in vols:
                src = theirs.get((v.group, v.key))
                reporter.step_started(f"restore {v.group}/{v.key}")
                t0 = time.monotonic()
                copy_volume(
                    this.stack.engine,
                    source=src.name if src else None,
                    target=v.name,
                    image=v.image or kept.volumes[0].image,
                    labels=helper,
                    phase="restore",
                )
                reporter.step_done(f"restore {v.group}/{v.key}", time.monotonic() - t0)
            volumes.start(stack=this.stack, ids=ids, label=f"session {name}")
            faults.hit("during:restarted")  # a test fails the restore here: the database runs again
            slow = pausing.wait_healthy(this.stack.engine, ids, timeout=RESTART_TIMEOUT)
            if slow:
                raise DevupError(
                    f"containers {', '.join(slow)} did not come back healthy on the restored data "
                    f"within {RESTART_TIMEOUT:.0f} s"
                )
        except (Exception, Interrupted) as exc:
            raise this.fail(exc, what="snapshot restore") from None
        this.commit()
        return Restored(name, snap, kept)


def remove(ws: Workspace, names: list[str], reporter: Reporter) -> list[tuple[str, bool]]:
    """`snapshot rm SNAP...`: (name, removed); one that does not exist is (name, False).

    The manifest goes first: a kill halfway leaves an incomplete snapshot, which the next
    command removes, never a complete-looking one with volumes missing."""
    for n in names:
        snapshots.check_snapshot_name(n)
    where = snapshots.engines(ws)
    for eng in where:
        with contextlib.suppress(DevupError):  # an engine that is off keeps its snapshots
            snapshots.sweep_incomplete(ws, eng)
    result = []
    for n in names:
        with snapshots.lock(ws, n):
            found = snapshots.find_anywhere(ws, n)
            if found is None or found.engine is None:
                result.append((n, False))
                continue
            remove_volume(found.engine, snapshots.manifest_name(ws.repo.repo_id, n))
            for v in found.volumes:
                remove_volume(found.engine, v.name)
            result.append((n, True))
    return result


def listing(ws: Workspace) -> list[Snapshot]:
    """`snapshot ls`: the complete snapshots of every engine the repository used (incomplete ones
    are swept first). The first engine (the configured or current one) must answer; another that
    does not is skipped: its snapshots are there again when it is."""
    found: dict[str, Snapshot] = {}
    for index, eng in enumerate(snapshots.engines(ws)):
        try:
            snapshots.sweep_incomplete(ws, eng)
            found.update(
                {s.name: s for s in snapshots.on_engine(ws, eng) if s.complete and s.name not in found}
            )
        except DevupError:
            # Host mode needs no Docker (SPEC §6): a repository without compose groups has no
            # data to snapshot, so an engine that does not answer has nothing of it either.
            if index == 0 and _has_groups(ws.config_text):
                raise
    return [found[n] for n in sorted(found)]


def _has_groups(config_text: str) -> bool:
    import tomllib

    try:
        return bool(tomllib.loads(config_text).get("groups"))
    except tomllib.TOMLDecodeError:
        return True  # the config error is `up`'s to report; here, ask the engine as always
