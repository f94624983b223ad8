"""Snapshots on an engine (SPEC §7): their names and labels, reading them, when one is complete,
and the sweep of what a killed `create` left.

A snapshot is a set of docker volumes labelled with it, and is complete only once its manifest
(one more volume, created last) exists: labels cannot change, so the manifest's existence is
the commit.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from devup import recovery, remote
from devup.engine.labels import LABEL_REPO
from devup.engine.volumes import Volume, remove_volume, volumes_with
from devup.errors import DevupError, UsageError
from devup.locks import file_lock
from devup.workspace import Workspace

LABEL_SNAPSHOT = "dev.devup.snapshot"
LABEL_MANIFEST = "dev.devup.snapshot.manifest"
LABEL_SOURCE = "dev.devup.snapshot.source"
LABEL_SNAP_GROUP = "dev.devup.snapshot.group"
LABEL_SNAP_KEY = "dev.devup.snapshot.key"
LABEL_IMAGE = "dev.devup.snapshot.image"
LABEL_CREATED = "dev.devup.snapshot.created"
LABEL_SIZE = "dev.devup.snapshot.size"
SNAPSHOT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,98}[a-z0-9])?$")


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


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def volume_name(repo_id: str, snap: str, group: str, key: str) -> str:
    return f"devup-snap_{repo_id[:8]}_{snap}_{group}_{key}"


def manifest_name(repo_id: str, snap: str) -> str:
    return f"devup-snap_{repo_id[:8]}_{snap}"


def on_engine(ws: Workspace, eng: remote.Engine) -> list[Snapshot]:
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
    return next((s for s in on_engine(ws, eng) if s.name == name), None)


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


@contextlib.contextmanager
def lock(ws: Workspace, snap: str) -> Iterator[None]:
    """Two runs making snapshots of one name (from two sessions) never interleave."""
    with file_lock(
        ws.repo.state / "locks" / f"snapshot~{snap}.lock",
        blocking=False,
        busy_message=f"snapshot {snap} is being written by another devup run",
    ):
        yield


@contextlib.contextmanager
def reading(ws: Workspace, snap: str, eng: remote.Engine) -> Iterator[Snapshot]:
    """Hold snapshot `snap` for reading (many readers at once; never while a run writes or
    removes it), and return it, complete: a copy never reads a snapshot that goes meanwhile."""
    with file_lock(
        ws.repo.state / "locks" / f"snapshot~{snap}.lock",
        blocking=False,
        shared=True,
        busy_message=f"snapshot {snap} is being written or removed by another devup run",
    ):
        found = find(ws, snap, eng)
        if found is None or not found.complete:
            raise UsageError(f"no snapshot named {snap}", hint="`devup snapshot ls` lists them")
        yield found


def incomplete_volumes(ws: Workspace, eng: remote.Engine) -> list[Volume]:
    """Volumes of incomplete snapshots on `eng` that no run is writing (a killed `create`): the
    candidates of the sweep, which re-checks each under the snapshot's own lock."""
    busy = recovery.busy_sessions(ws)
    complete = {s.name for s in on_engine(ws, eng) if s.complete}
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
        with contextlib.suppress(DevupError), lock(ws, snap):
            found = find(ws, snap, eng)
            if found is None or found.complete:
                continue
            remove_volume(eng, manifest_name(ws.repo.repo_id, snap))
            for left in found.volumes:
                remove_volume(eng, left.name)
