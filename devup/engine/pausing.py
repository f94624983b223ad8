"""A session's containers around a data copy: listed, paused or stopped, resumed, waited for."""

from __future__ import annotations

import time
from dataclasses import dataclass

from devup.engine.client import client, edge, explain
from devup.engine.http import is_podman
from devup.engine.labels import LABEL_HELPER, LABEL_PROJECT, LABEL_REPO, LABEL_SESSION
from devup.errors import EngineError
from devup.remote import Engine


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    project: str
    status: str  # running, paused, exited, ...
    image: str  # the image id
    mounts: list[str]  # names of the volumes it mounts


@edge
def containers_of(eng: Engine, *, repo_id: str, session: str, projects: list[str]) -> list[Container]:
    """The containers of `projects` that belong to the session (copy helpers excepted)."""
    found = []
    labels = [f"{LABEL_REPO}={repo_id}", f"{LABEL_SESSION}={session}"]
    for c in client(eng).api.containers(all=True, filters={"label": labels}):
        lab = c.get("Labels") or {}
        if LABEL_HELPER in lab or lab.get(LABEL_PROJECT) not in projects:
            continue
        found.append(
            Container(
                id=c["Id"],
                name=c["Names"][0].lstrip("/"),
                project=lab.get(LABEL_PROJECT, ""),
                status=c.get("State", ""),
                image=c.get("ImageID", ""),
                mounts=[
                    m["Name"] for m in c.get("Mounts") or [] if m.get("Type") == "volume" and m.get("Name")
                ],
            )
        )
    return found


@edge
def _each(eng: Engine, ids: list[str], action: str) -> None:
    from docker.errors import APIError, NotFound

    api = client(eng).api
    for cid in ids:
        try:
            state = api.inspect_container(cid)["State"]
            if action == "pause" and state.get("Running") and not state.get("Paused"):
                api.pause(cid)
            elif action == "unpause" and state.get("Paused"):
                api.unpause(cid)
            elif action == "stop" and state.get("Running"):
                if state.get("Paused"):
                    api.unpause(cid)
                api.stop(cid, timeout=10)
            elif action == "start" and not state.get("Running"):
                api.start(cid)
        except NotFound:
            continue  # gone: nothing to pause or resume
        except APIError as exc:
            raise EngineError(f"cannot {action} container {cid[:12]}: {explain(exc)}") from None


def pause(eng: Engine, ids: list[str]) -> None:
    _each(eng, ids, "pause")


def unpause(eng: Engine, ids: list[str]) -> None:
    """Resume paused ones; running or gone ones are left as they are."""
    _each(eng, ids, "unpause")


def stop(eng: Engine, ids: list[str]) -> None:
    _each(eng, ids, "stop")


def start(eng: Engine, ids: list[str]) -> None:
    """Start the ones that are not running; running or gone ones are left as they are."""
    _each(eng, ids, "start")


@edge
def wait_healthy(eng: Engine, ids: list[str], *, timeout: float) -> list[str]:
    """Wait until each container runs (and is healthy, when it has a healthcheck); the names of
    those that did not get there in time."""
    from docker.errors import NotFound

    from devup.engine import health as checks

    api = client(eng).api
    deadline = time.monotonic() + timeout
    pending = list(ids)
    due: dict[str, float] = {}
    podman = is_podman(eng)
    while pending and time.monotonic() < deadline:
        if podman:  # no systemd timer may run them: devup does, while it waits (engine/health.py)
            checks.run_due(eng, ids=pending, due=due)
        still = []
        for cid in pending:
            try:
                state = api.inspect_container(cid)["State"]
            except NotFound:
                continue
            health = (state.get("Health") or {}).get("Status")  # Podman: "" without a healthcheck
            if not (state.get("Running") and health in (None, "", "healthy")):
                still.append(cid)
        pending = still
        if pending:
            time.sleep(0.2)
    return [cid[:12] for cid in pending]
