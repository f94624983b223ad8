"""Clones (`up NEW --from SOURCE`, SPEC §7): what SOURCE names, holding it for the run, and the
new session's volumes made as copies of its own before the groups come up."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devup import data, paths, remote, run, snapshots
from devup.engine import pausing
from devup.engine.copies import copy_volume
from devup.engine.labels import LABEL_COMPOSE_VERSION, LABEL_PROJECT, LABEL_VOLUME
from devup.errors import DevupError, Interrupted, UsageError
from devup.report import Reporter
from devup.snapshots import DataVolume, Snapshot
from devup.steps import volumes
from devup.undo import UndoStack
from devup.workspace import Workspace

if TYPE_CHECKING:
    from devup.compose_model import GroupModel
    from devup.model import Identity


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
    found = snapshots.find(ws, source, eng) if snapshots.SNAPSHOT_RE.fullmatch(source) else None
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
        with snapshots.reading(ws, source.name, eng) as snapshot:
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
        record = data.ready(ws, source.name)
        theirs = {(v.group, v.key): v for v in data.session_volumes(ws, record)}
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
        this = data.session_run(ws, record, "clone-source", reporter)
        try:
            ids = data.group_containers(ws, record, copied, data.RUNNING)
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
        labels=data.helper_labels(ws, new),
        phase="clone",
    )
    reporter.step_done(f"copy {t.group}/{t.key}", time.monotonic() - t0)
