"""Ownership and removal: what of a project is not this session's, what gc finds by label and
removes, and sweeping a project's leftovers after `compose down`."""

from __future__ import annotations

import contextlib
import time
import urllib.parse
from dataclasses import dataclass

from devup.engine import http
from devup.engine.client import client, edge
from devup.engine.labels import LABEL_PROJECT, LABEL_REPO, LABEL_SESSION, carries
from devup.errors import DevupError
from devup.remote import Engine


@edge
def foreign_objects(
    eng: Engine, *, project: str, volume_names: list[str], session: str, repo_id: str
) -> list[str]:
    """Containers or volumes of `project` (or at the volume names it will use) that do not
    carry this session's identity: devup adopts only what is its own (SPEC §5.6)."""
    mine = {LABEL_SESSION: session, LABEL_REPO: repo_id}

    def foreign(labels: dict[str, str] | None) -> bool:
        return any((labels or {}).get(k) != v for k, v in mine.items())

    by_project = http.filters(label=[f"{LABEL_PROJECT}={project}"])
    found = [
        f"container {c['Names'][0].lstrip('/')}"
        for c in http.get(eng, "/containers/json", all="1", filters=by_project) or []
        if foreign(c.get("Labels"))
    ]
    seen: set[str] = set()
    for v in (http.get(eng, "/volumes", filters=by_project) or {}).get("Volumes") or []:
        seen.add(v["Name"])
        if foreign(v.get("Labels")):
            found.append(f"volume {v['Name']}")
    for name in volume_names:
        volume = None if name in seen else http.get(eng, f"/volumes/{urllib.parse.quote(name, safe='')}")
        if volume is not None and foreign(volume.get("Labels")):
            found.append(f"volume {name}")
    return found


@dataclass(frozen=True)
class Labelled:
    """A container, network or volume carrying a repository's label (what gc looks at)."""

    kind: str  # "container" | "network" | "volume"
    name: str
    session: str  # its session label, "?" when it has none


@edge
def labelled(eng: Engine, *, repo_id: str) -> list[Labelled]:
    """Every container (running or not), network and volume labelled with repository `repo_id`."""
    api = client(eng)
    label = [f"{LABEL_REPO}={repo_id}"]

    def session_of(labels: dict[str, str] | None) -> str:
        return (labels or {}).get(LABEL_SESSION, "?")

    found = [
        Labelled("container", c.name, session_of(c.labels))
        for c in api.containers.list(all=True, filters={"label": label})
    ]
    found += [
        Labelled("network", n.name, session_of(n.attrs.get("Labels")))
        for n in api.networks.list(filters={"label": label})
    ]
    found += [
        Labelled("volume", v.name, session_of(v.attrs.get("Labels")))
        for v in api.volumes.list(filters={"label": label})
    ]
    return found


@edge
def remove(eng: Engine, kind: str, name: str) -> None:
    """Remove a container (force), network or volume by name; already gone is success."""
    from docker.errors import APIError, NotFound

    collection = {
        "container": client(eng).containers,
        "network": client(eng).networks,
        "volume": client(eng).volumes,
    }[kind]
    try:
        obj = collection.get(name)
        # A container's anonymous volumes go with it (v); named ones are gc's to judge apart.
        obj.remove(
            **(
                {}
                if kind == "network"
                else {"force": True, "v": True}
                if kind == "container"
                else {"force": True}
            )
        )
    except NotFound:
        pass
    except APIError as exc:
        raise DevupError(f"cannot remove {kind} {name}: {exc.explanation}") from None


@edge
def sweep_project(
    eng: Engine,
    *,
    project: str,
    session: str,
    repo_id: str,
    keep_volumes: set[str],
    settle: float = 15.0,
    looks: int = 2,
) -> list[str]:
    """Remove what is still on the engine of this session's `project` after `compose down`, and
    confirm through the engine that nothing is left; what cannot be removed within `settle`
    seconds is returned ("container x", ...), never hidden.

    Compose can fail on one container while the engine is still creating its siblings: those
    creates land after `down` listed the project (compose-corpus.md: 5 of 11 such rollbacks left
    containers in state `created`). So the project is listed again until `looks` looks in a
    row, a moment apart, find nothing (one is enough once the compose that brought it up has
    exited).
    """
    from docker.errors import APIError, NotFound

    api = client(eng).api
    labels = [f"{LABEL_PROJECT}={project}", f"{LABEL_SESSION}={session}", f"{LABEL_REPO}={repo_id}"]
    deadline = time.monotonic() + settle
    quiet = 0
    while True:
        found = [
            ("container", c["Id"], c["Names"][0].lstrip("/"))
            for c in api.containers(all=True, filters={"label": labels})
        ]
        found += [("network", n["Id"], n["Name"]) for n in api.networks(filters={"label": labels})]
        found += [
            ("volume", v["Name"], v["Name"])
            for v in api.volumes(filters={"label": labels}).get("Volumes") or []
            if v["Name"] not in keep_volumes and carries(v.get("Labels"), labels)  # Podman ORs them
        ]
        if not found:
            quiet += 1
            if quiet >= looks:
                return []
        else:
            quiet = 0
            for kind, ident, _ in found:
                with contextlib.suppress(NotFound, APIError):  # judged again at the next look
                    if kind == "container":
                        api.remove_container(ident, force=True, v=True)
                    elif kind == "network":
                        api.remove_network(ident)
                    else:
                        api.remove_volume(ident, force=True)
        if time.monotonic() >= deadline:
            return [f"{kind} {name}" for kind, _, name in found]
        time.sleep(0.3)
