"""Volumes for the data commands (SPEC §7): read, listed by label, created, removed."""

from __future__ import annotations

from dataclasses import dataclass

from devup.engine import http
from devup.engine.client import client, edge, explain
from devup.engine.labels import LABEL_HELPER, LABEL_PROJECT, carries
from devup.errors import EngineError
from devup.remote import Engine


@dataclass(frozen=True)
class Volume:
    name: str
    labels: dict[str, str]
    created: str
    options: dict[str, str] | None = None  # the driver's options (`driver_opts`)


@edge
def volume_info(eng: Engine, name: str) -> Volume | None:
    from docker.errors import NotFound

    try:
        v = client(eng).volumes.get(name)
    except NotFound:
        return None
    return Volume(v.name, dict(v.attrs.get("Labels") or {}), str(v.attrs.get("CreatedAt", "")))


@edge
def volumes_with(eng: Engine, labels: list[str]) -> list[Volume]:
    """Volumes carrying every one of `labels` (`key=value` or `key`)."""
    found = client(eng).volumes.list(filters={"label": labels})
    return [
        Volume(
            v.name,
            dict(v.attrs.get("Labels") or {}),
            str(v.attrs.get("CreatedAt", "")),
            dict(v.attrs.get("Options") or {}),
        )
        for v in found
        if carries(v.attrs.get("Labels"), labels)
    ]


@edge
def create_volume(eng: Engine, name: str, labels: dict[str, str]) -> None:
    """Create `name`; one that exists already is an error (the engine would hand it back silently)."""
    from docker.errors import APIError

    if volume_info(eng, name) is not None:
        raise EngineError(f"volume {name} exists already; devup will not copy into it")
    try:
        client(eng).volumes.create(name=name, labels=labels)
    except APIError as exc:
        raise EngineError(f"cannot create volume {name}: {explain(exc)}") from None


@edge
def remove_volume(eng: Engine, name: str) -> None:
    """Remove `name` and any copy helper still writing to it; already gone is success."""
    from docker.errors import APIError, NotFound

    remove_helpers(eng, name)
    try:
        client(eng).volumes.get(name).remove(force=True)
    except NotFound:
        return
    except APIError as exc:
        raise EngineError(f"cannot remove volume {name}: {explain(exc)}") from None


@edge
def remove_helpers(eng: Engine, target: str) -> None:
    """Kill copy helpers writing to `target`: a killed devup leaves its helper copying."""
    from docker.errors import APIError, NotFound

    for c in client(eng).containers.list(all=True, filters={"label": f"{LABEL_HELPER}={target}"}):
        try:
            c.remove(force=True, v=True)  # v: the anonymous volume of the image's VOLUME, if any
        except NotFound:
            continue
        except APIError as exc:
            raise EngineError(f"cannot remove copy helper {c.name}: {explain(exc)}") from None


@edge
def project_volumes(eng: Engine, *, project: str) -> set[str]:
    """The names of the volumes labelled as `project`'s."""
    found = http.get(eng, "/volumes", filters=http.filters(label=[f"{LABEL_PROJECT}={project}"]))
    return {v["Name"] for v in (found or {}).get("Volumes") or []}
