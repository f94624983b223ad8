"""Snapshots, clones and restores (SPEC §7): copies of a session's data volumes, on its engine.

A session's data is the named, non-external volumes of its compose groups, each identified by
(group, volume key). A snapshot is a set of docker volumes labelled with it, and is complete
only once its manifest (one more volume, created last) exists: labels cannot change, so the
manifest's existence is the commit. Every run here is journaled under the session's lock like
`up`: a kill at any point is finished or undone by the next devup command on the session.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devup import compose_model, faults, paths, recovery, remote, run, state
from devup.engine import pausing
from devup.engine.copies import copy_volume
from devup.engine.labels import LABEL_COMPOSE_VERSION, LABEL_PROJECT, LABEL_REPO, LABEL_SESSION, LABEL_VOLUME
from devup.engine.volumes import Volume, create_volume, remove_volume, volumes_with
from devup.errors import (
    DevupError,
    Interrupted,
    NoDataVolumes,
    NoSuchSession,
    UsageError,
)
from devup.report import Reporter
from devup.steps import volumes
from devup.undo import UndoStack
from devup.workspace import Workspace

if TYPE_CHECKING:
    from devup.compose_model import GroupModel
    from devup.model import Identity

LABEL_SNAPSHOT = "dev.devup.snapshot"
LABEL_MANIFEST = "dev.devup.snapshot.manifest"
LABEL_SOURCE = "dev.devup.snapshot.source"
LABEL_SNAP_GROUP = "dev.devup.snapshot.group"
LABEL_SNAP_KEY = "dev.devup.snapshot.key"
LABEL_IMAGE = "dev.devup.snapshot.image"
LABEL_CREATED = "dev.devup.snapshot.created"
LABEL_SIZE = "dev.devup.snapshot.size"
SNAPSHOT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,98}[a-z0-9])?$")
RESTART_TIMEOUT = 120.0


def check_snapshot_name(name: str) -> str:
    if not SNAPSHOT_RE.fullmatch(name):
        raise UsageError(
            f"invalid snapshot name {name!r}",
            hint="use 1-100 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit",
        )
    return name


@dataclass(frozen=True)
class DataVolume:
    group: str
    key: str
    name: str  # the engine's volume name
    image: str = ""  # the image a copy helper runs (the service's own)


@dataclass(frozen=True)
class Snapshot:
    name: str
    source: str
    created_at: float
    size: int  # bytes
    volumes: list[DataVolume] = field(default_factory=list)
    complete: bool = True
    engine: remote.Engine | None = None  # where its volumes are (not part of its JSON)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "snapshot": self.name,  # the same: `snapshot ls --json` rows read like `ls --json`'s
            "source": self.source,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at)),
            "size": self.size,
            "volumes": [{"group": v.group, "key": v.key, "volume": v.name} for v in self.volumes],
        }


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def volume_name(repo_id: str, snap: str, group: str, key: str) -> str:
    return f"devup-snap_{repo_id[:8]}_{snap}_{group}_{key}"


def manifest_name(repo_id: str, snap: str) -> str:
    return f"devup-snap_{repo_id[:8]}_{snap}"


# --- reading ------------------------------------------------------------------------------


def snapshots(ws: Workspace, eng: remote.Engine) -> list[Snapshot]:
    """Every snapshot of the repository on engine `eng`, complete or not, by name.

    Complete means the manifest exists and the volumes found are as many as it counts: a volume
    removed since (by hand, or by a sweep that raced the `create`) makes it incomplete, never a
    complete-looking snapshot that a clone would silently start empty from."""
    by: dict[str, list[Volume]] = {}
    for v in volumes_with(eng, [f"{LABEL_REPO}={ws.repo.repo_id}", LABEL_SNAPSHOT]):
        by.setdefault(v.labels[LABEL_SNAPSHOT], []).append(v)
    found = []
    for name, vols in sorted(by.items()):
        manifest = next((v for v in vols if LABEL_MANIFEST in v.labels), None)
        data = sorted(
            (
                DataVolume(
                    v.labels.get(LABEL_SNAP_GROUP, ""),
                    v.labels.get(LABEL_SNAP_KEY, ""),
                    v.name,
                    v.labels.get(LABEL_IMAGE, ""),
                )
                for v in vols
                if LABEL_MANIFEST not in v.labels
            ),
            key=lambda d: (d.group, d.key),
        )
        labels = manifest.labels if manifest else (vols[0].labels if vols else {})
        found.append(
            Snapshot(
                name=name,
                source=labels.get(LABEL_SOURCE, "?"),
                created_at=float(labels.get(LABEL_CREATED, "0") or 0),
                size=int(labels.get(LABEL_SIZE, "0") or 0),
                volumes=data,
                complete=manifest is not None and manifest.labels.get(LABEL_MANIFEST) == str(len(data)),
                engine=eng,
            )
        )
    return found


def find(ws: Workspace, name: str, eng: remote.Engine) -> Snapshot | None:
    return next((s for s in snapshots(ws, eng) if s.name == name), None)


def engines(ws: Workspace) -> list[remote.Engine]:
    """Where the repository's snapshots may be: every engine its sessions ran on (recorded at
    each run), the configured one and the environment's."""
    here: list[remote.Engine] = []
    with contextlib.suppress(DevupError):
        here.append(remote.choose(option=None, configured=remote.configured_context(ws.config_text)))
    return remote.distinct([*here, *remote.known(ws.repo.state)])


def find_anywhere(ws: Workspace, name: str) -> Snapshot | None:
    """Snapshot `name` on whichever engine holds it (engines that do not answer are skipped)."""
    for eng in engines(ws):
        with contextlib.suppress(DevupError):
            found = find(ws, name, eng)
            if found is not None:
                return found
    return None


def session_volumes(ws: Workspace, record: state.SessionRecord) -> list[DataVolume]:
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


def _run(ws: Workspace, record: state.SessionRecord, kind: str, reporter: Reporter) -> run.Run:
    """A data run on the session's journal, on its engine. The session exists either way: a
    rollback never marks it failed (resumed=False)."""
    return run.Run(
        ws, record.session, kind=kind, engine=remote.engine_of(record), reporter=reporter, resumed=False
    )


def _ready(ws: Workspace, name: str) -> state.SessionRecord:
    """The record of `name`, whose run the caller holds (`run.held`); what a killed `create` left
    on its engine is swept first."""
    record = ws.record(name)
    if record is None:
        raise NoSuchSession(name)
    sweep_incomplete(ws, remote.engine_of(record))
    return record


@contextlib.contextmanager
def _snapshot_lock(ws: Workspace, snap: str) -> Iterator[None]:
    """Two runs making snapshots of one name (from two sessions) never interleave."""
    with state.file_lock(
        ws.repo.state / "locks" / f"snapshot~{snap}.lock",
        blocking=False,
        busy_message=f"snapshot {snap} is being written by another devup run",
    ):
        yield


@contextlib.contextmanager
def _snapshot_read(ws: Workspace, snap: str, eng: remote.Engine) -> Iterator[Snapshot]:
    """Hold snapshot `snap` for reading (many readers at once; never while a run writes or
    removes it), and return it, complete: a copy never reads a snapshot that goes meanwhile."""
    with state.file_lock(
        ws.repo.state / "locks" / f"snapshot~{snap}.lock",
        blocking=False,
        shared=True,
        busy_message=f"snapshot {snap} is being written or removed by another devup run",
    ):
        found = find(ws, snap, eng)
        if found is None or not found.complete:
            raise UsageError(f"no snapshot named {snap}", hint="`devup snapshot ls` lists them")
        yield found


def _helper_labels(ws: Workspace, session: str) -> dict[str, str]:
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
    record: state.SessionRecord,
    snap: str,
    vols: list[DataVolume],
    reporter: Reporter,
    *,
    paused: list[str],
) -> Snapshot:
    """Copy `vols` into snapshot `snap`; complete once the manifest exists. `paused`: the
    containers to resume right after the last copy (before the manifest: as short as it can be)."""
    fallback = _images(vols)
    manifest = manifest_name(ws.repo.repo_id, snap)
    base = {LABEL_REPO: ws.repo.repo_id, LABEL_SNAPSHOT: snap, LABEL_SOURCE: record.session}
    total = 0
    made = []
    for v in vols:
        target = volume_name(ws.repo.repo_id, snap, v.group, v.key)
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
            labels=_helper_labels(ws, record.session),
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


def _containers(
    ws: Workspace, record: state.SessionRecord, vols: list[DataVolume], states: tuple[str, ...]
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


_RUNNING = ("running",)  # what a snapshot or clone pauses
_UP = ("running", "paused", "restarting")  # what a restore stops


# --- commands --------------------------------------------------------------------------------


def create(ws: Workspace, name: str, snap: str | None, reporter: Reporter) -> Snapshot:
    """`snapshot create NAME [--as SNAP]`: pause the groups being copied, copy, resume."""

    paths.check_session_name(name)
    if snap is not None:
        check_snapshot_name(snap)
    with run.held(ws, name, reporter):
        record = _ready(ws, name)
        from devup import usage

        usage.touch(ws.repo, name)  # a use (SPEC §5.13)
        snap = snap or f"{name}-{_stamp()}"
        with _snapshot_lock(ws, snap):
            if find(ws, snap, remote.engine_of(record)) is not None:
                raise UsageError(
                    f"snapshot {snap} exists already",
                    hint=f"`devup snapshot rm {snap}` first, or pick another name",
                )
            vols = session_volumes(ws, record)
            if not vols:
                raise NoDataVolumes(f"session {name} has no data volumes: there is nothing to snapshot")
            this = _run(ws, record, "snapshot", reporter)
            try:
                ids = _containers(ws, record, vols, _RUNNING)
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
    check_snapshot_name(snap)
    with run.held(ws, name, reporter):
        record = _ready(ws, name)
        with _snapshot_read(ws, snap, remote.engine_of(record)) as found:
            return _restore(ws, record, found, reporter)


def _restore(ws: Workspace, record: state.SessionRecord, found: Snapshot, reporter: Reporter) -> Restored:
    """The restore itself, with the session's lock and a read hold on `found` taken."""
    name, snap = record.session, found.name
    vols = session_volumes(ws, record)
    if not vols:
        raise NoDataVolumes(f"session {name} has no data volumes: there is nothing to restore into")
    before = f"{name}-before-restore-{_stamp()}"
    with _snapshot_lock(ws, before):
        if find(ws, before, remote.engine_of(record)) is not None:
            raise UsageError(f"snapshot {before} exists already; try again in a second")
        this = _run(ws, record, "restore", reporter)
        try:
            ids = _containers(ws, record, vols, _UP)
            volumes.stop(stack=this.stack, ids=ids, label=f"session {name}")
            volumes.discard_snapshot(
                stack=this.stack,
                manifest=manifest_name(ws.repo.repo_id, before),
                names=[volume_name(ws.repo.repo_id, before, v.group, v.key) for v in vols],
                label=f"snapshot {before}",
            )
            kept = _take(this.stack, ws, record, before, vols, reporter, paused=[])
            helper = _helper_labels(ws, name)
            volumes.keep_for_restore(
                stack=this.stack,
                pairs=[(k.name, v.name, k.image) for k, v in zip(kept.volumes, vols, strict=True)],
                labels=helper,
                manifest=manifest_name(ws.repo.repo_id, before),
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
        check_snapshot_name(n)
    where = engines(ws)
    for eng in where:
        with contextlib.suppress(DevupError):  # an engine that is off keeps its snapshots
            sweep_incomplete(ws, eng)
    result = []
    for n in names:
        with _snapshot_lock(ws, n):
            found = find_anywhere(ws, n)
            if found is None or found.engine is None:
                result.append((n, False))
                continue
            remove_volume(found.engine, manifest_name(ws.repo.repo_id, n))
            for v in found.volumes:
                remove_volume(found.engine, v.name)
            result.append((n, True))
    return result


def listing(ws: Workspace) -> list[Snapshot]:
    """`snapshot ls`: the complete snapshots of every engine the repository used (incomplete ones
    are swept first). The first engine (the configured or current one) must answer; another that
    does not is skipped: its snapshots are there again when it is."""
    found: dict[str, Snapshot] = {}
    for index, eng in enumerate(engines(ws)):
        try:
            sweep_incomplete(ws, eng)
            found.update({s.name: s for s in snapshots(ws, eng) if s.complete and s.name not in found})
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


def incomplete_volumes(ws: Workspace, eng: remote.Engine) -> list[Volume]:
    """Volumes of incomplete snapshots on `eng` that no run is writing (a killed `create`): the
    candidates of the sweep, which re-checks each under the snapshot's own lock."""
    busy = recovery.busy_sessions(ws)
    complete = {s.name for s in snapshots(ws, eng) if s.complete}
    vols = volumes_with(eng, [f"{LABEL_REPO}={ws.repo.repo_id}", LABEL_SNAPSHOT])
    return [
        v
        for v in vols
        if v.labels[LABEL_SNAPSHOT] not in complete
        and v.labels.get(LABEL_SOURCE) not in busy
        and f"snapshot~{v.labels[LABEL_SNAPSHOT]}" not in busy
    ]


def sweep_incomplete(ws: Workspace, eng: remote.Engine) -> None:
    """Remove what a killed `create` left. A run writing a snapshot holds its lock (`create`
    takes it before its first volume), so each candidate is taken under that lock, tried and
    never waited for, and judged again there: a busy list read before the volumes were listed
    can be stale by then."""
    by_snapshot: dict[str, list[Volume]] = {}
    for v in incomplete_volumes(ws, eng):
        by_snapshot.setdefault(v.labels[LABEL_SNAPSHOT], []).append(v)
    for snap in sorted(by_snapshot):
        # BusyError: a run writes it now; an engine error: the next sweep tries again.
        with contextlib.suppress(DevupError), _snapshot_lock(ws, snap):
            found = find(ws, snap, eng)
            if found is None or found.complete:
                continue
            remove_volume(eng, manifest_name(ws.repo.repo_id, snap))
            for left in found.volumes:
                remove_volume(eng, left.name)


# --- clones (`up NEW --from SOURCE`) ----------------------------------------------------------


@dataclass(frozen=True)
class CloneSource:
    kind: str  # session | snapshot
    name: str
    snapshot: Snapshot | None = None

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name}


@dataclass(frozen=True)
class CloneTarget:
    group: str
    key: str
    name: str  # the volume compose will use in the new session
    labels: dict[str, str]


def clone_targets(
    ident: Identity, groups: Iterable[str], projects: dict[str, str], models: dict[str, GroupModel]
) -> list[CloneTarget]:
    """The new session's data volumes, each with compose's own labels so that compose adopts it
    as the volume of that key (SPEC §7: made as copies before the groups come up)."""
    from devup import compose

    version = compose.compose_version().lstrip("v")  # the CLI's own: no engine asked
    return [
        CloneTarget(
            group=g,
            key=key,
            name=name,
            labels={
                **ident.labels(g),
                LABEL_PROJECT: projects[g],
                LABEL_VOLUME: key,
                LABEL_COMPOSE_VERSION: version,
            },
        )
        for g in groups
        for key, name in models[g].volume_names.items()
    ]


def plan_clone(ws: Workspace, source: str, *, new: str, eng: remote.Engine) -> CloneSource:
    """What `--from SOURCE` names: a session (preferred) or a complete snapshot; exit 2 when
    neither exists, checked before anything changes."""
    if source == new:
        raise UsageError(f"session {new} cannot be its own --from source")
    record = ws.record(source) if paths.NAME_RE.fullmatch(source) else None
    if record is not None:
        there = remote.engine_of(record)
        if there.host != eng.host:
            raise UsageError(
                f"session {source} runs on engine {there.label}, the new session on {eng.label}: "
                "copies run on one engine",
                hint="snapshot it there and bring the new session up on that engine (--context)",
            )
        return CloneSource("session", source)
    found = find(ws, source, eng) if SNAPSHOT_RE.fullmatch(source) else None
    if found is not None and found.complete:
        return CloneSource("snapshot", source, found)
    raise UsageError(
        f"--from {source}: no session or snapshot of that name; nothing was changed",
        hint="`devup ls` lists the sessions, `devup snapshot ls` the snapshots",
    )


@contextlib.contextmanager
def held(ws: Workspace, source: CloneSource, eng: remote.Engine) -> Iterator[CloneSource]:
    """SOURCE for `up --from`, checked before anything changes (busy: exit 4, nothing to roll
    back). A snapshot is held for reading for the whole run (other clones may read it too; no
    run may remove or write it meanwhile). A session's lock is only tried here: `clone` takes it
    for the copy, and must let it go before the run ends, since undoing a killed copy (the
    `source_recover` inverse) takes it again."""
    if source.kind == "snapshot":
        with _snapshot_read(ws, source.name, eng) as snapshot:
            yield CloneSource("snapshot", source.name, snapshot)
        return
    with ws.locked(source.name):
        pass
    yield source


def clone(
    ws: Workspace,
    stack: UndoStack,
    source: CloneSource,
    targets: list[CloneTarget],
    *,
    new: str,
    reporter: Reporter,
) -> None:
    """Create each target volume (its removal journaled first) as a copy of SOURCE's volume of
    the same group and key; one SOURCE lacks is left for compose to create empty. The caller
    has SOURCE `held`."""
    if source.kind == "snapshot":
        assert source.snapshot is not None
        theirs = {(v.group, v.key): v for v in source.snapshot.volumes}
        for t in targets:
            src = theirs.get((t.group, t.key))
            if src is not None:
                _clone_one(ws, stack, t, src, new=new, reporter=reporter)
        return
    with run.held(ws, source.name, reporter):
        record = _ready(ws, source.name)
        theirs = {(v.group, v.key): v for v in session_volumes(ws, record)}
        copied = [theirs[(t.group, t.key)] for t in targets if (t.group, t.key) in theirs]
        if not copied:
            return
        # The pause goes on the source's own journal (its next command resumes it); this run's
        # journal says to finish that one (recovering the new session resumes the source too).
        volumes.source_run(
            stack=stack,
            journal_path=ws.repo.journal(source.name),
            lock_path=ws.repo.lock(source.name),
            session=source.name,
        )
        this = _run(ws, record, "clone-source", reporter)
        try:
            ids = _containers(ws, record, copied, _RUNNING)
            volumes.pause(stack=this.stack, ids=ids, label=f"session {source.name}")
            for t in targets:
                src = theirs.get((t.group, t.key))
                if src is not None:
                    _clone_one(ws, stack, t, src, new=new, reporter=reporter)
            pausing.unpause(stack.engine, ids)
        except (Exception, Interrupted) as exc:
            left = this.rollback()
            if left and not isinstance(exc, Interrupted):
                # The source could not be resumed: said now, not at its next command.
                raise DevupError(
                    f"{exc}; and the copy from session {source.name} could not be undone: "
                    + "; ".join(f"{lo.label}: {lo.error}" for lo in left)
                ) from None
            raise
        this.commit(last=False)


def _clone_one(
    ws: Workspace, stack: UndoStack, t: CloneTarget, src: DataVolume, *, new: str, reporter: Reporter
) -> None:
    volumes.create_volume(stack=stack, name=t.name, labels=t.labels, label=f"volume {t.name}")
    reporter.step_started(f"copy {t.group}/{t.key}")
    t0 = time.monotonic()
    if not src.image:
        raise DevupError(f"no image to copy volume {src.name} with (no container of its group)")
    copy_volume(
        stack.engine,
        source=src.name,
        target=t.name,
        image=src.image,
        labels=_helper_labels(ws, new),
        phase="clone",
    )
    reporter.step_done(f"copy {t.group}/{t.key}", time.monotonic() - t0)
