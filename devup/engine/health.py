"""Readiness: waiting for a compose project's containers, and healthchecks on Podman.

`wait_ready` is compose's `up --wait`, but it looks every 0.1 s where compose looks every 0.5 s:
a container with a 1 s healthcheck interval is seen healthy as soon as it is, not up to half a
second later, on every `up`, reconcile and restore. Its verdicts are compose's (same conditions,
same words), so a failure reads as compose's own would.

Podman 4.x runs a container's healthcheck from a systemd timer; where there is no systemd (a
container, many CI runners) the check never runs, the container stays `starting`, and compose's
`up --wait` never ends. While devup waits for containers to be healthy on Podman, it runs their
healthchecks itself (libpod's `GET /containers/{id}/healthcheck`, what `podman healthcheck run`
does), each at its own interval. Podman counts the results as its timer's (retries, start
period), so `unhealthy` means what it means on Docker. Where systemd runs them too, a check runs
a little more often during the wait, nothing else. On Docker the engine runs them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from devup.engine import http
from devup.engine.client import client, libpod
from devup.engine.http import is_podman
from devup.engine.labels import LABEL_PROJECT, LABEL_SERVICE
from devup.remote import Engine

_POLL = 0.5  # seconds between the Podman helper's looks at the project's containers
_LOOK = 0.1  # seconds between wait_ready's looks
_ONEOFF = "com.docker.compose.oneoff"
# "db:service_healthy:false,init:service_completed_successfully:true"
_DEPENDS_ON = "com.docker.compose.depends_on"


def wait_ready(eng: Engine, *, project: str, timeout: float) -> str | None:
    """Wait until every container of `project` (`compose up -d` has just returned) is ready as
    compose's `up --wait` means it: running, and healthy when it has a healthcheck; a one-shot
    that another service waits for (`service_completed_successfully`) has exited 0. None when
    they are; else what failed, in compose's words: exited, unhealthy, or not ready in time.

    A container seen ready is not looked at again, as compose stops looking at a service once
    it is done; what happens later is the readiness checks' to find (restarts, min_uptime)."""
    deadline = time.monotonic() + timeout
    done: set[str] = set()
    while True:
        listed = http.get(
            eng, "/containers/json", all="1", filters=http.filters(label=[f"{LABEL_PROJECT}={project}"])
        )
        mine = [c for c in listed or [] if (c.get("Labels") or {}).get(_ONEOFF) != "True"]
        one_shots = {
            dep.split(":")[0]
            for c in mine
            for dep in ((c.get("Labels") or {}).get(_DEPENDS_ON) or "").split(",")
            if dep.split(":")[1:2] == ["service_completed_successfully"]
        }
        waiting = []
        for c in sorted(mine, key=lambda c: str(c.get("Names"))):
            if c["Id"] in done:
                continue
            verdict = _verdict(
                http.get(eng, f"/containers/{c['Id']}/json"),
                one_shot=(c.get("Labels") or {}).get(LABEL_SERVICE) in one_shots,
            )
            if verdict is True:
                done.add(c["Id"])
            elif verdict is False:
                waiting.append(str((c.get("Names") or ["?"])[0]).lstrip("/"))
            else:
                return verdict
        if not waiting:
            return None
        if time.monotonic() >= deadline:
            return f"application not healthy after {timeout:g}s: {', '.join(waiting)} not ready"
        time.sleep(_LOOK)


def _verdict(data: dict[str, Any] | None, *, one_shot: bool) -> bool | str:
    """True: ready; False: not yet; a str: failed, and why (compose's words)."""
    if data is None:
        return False  # removed meanwhile: the next list no longer has it
    name = str(data.get("Name", "?")).lstrip("/")
    state = data.get("State") or {}
    status, code = state.get("Status"), int(state.get("ExitCode") or 0)
    if one_shot:
        if status != "exited":
            return False
        return True if code == 0 else f"container {name} didn't complete successfully: exit {code}"
    if status == "exited":
        return f"container {name} exited ({code})"
    test = ((data.get("Config") or {}).get("Healthcheck") or {}).get("Test") or ["NONE"]
    health = (state.get("Health") or {}).get("Status") or ""  # Podman: "" without a healthcheck
    if test[0] == "NONE" or not health:
        return status == "running"
    if health == "unhealthy":
        return f"container {name} is unhealthy"
    return health == "healthy"


_DEFAULT_INTERVAL = 30.0  # the engines' default healthcheck interval


def run_due(
    eng: Engine, *, ids: list[str] | None = None, project: str | None = None, due: dict[str, float]
) -> None:
    """Run the healthcheck of each running container (of `ids`, or of `project`) that has one, is
    not healthy yet, and whose interval has passed since devup last ran it (`due`: id -> when)."""
    from docker.errors import DockerException

    api = client(eng).api
    if ids is None:
        ids = [c["Id"] for c in api.containers(filters={"label": f"{LABEL_PROJECT}={project}"})]
    now = time.monotonic()
    for cid in ids:
        if due.get(cid, 0.0) > now:
            continue
        try:
            data = api.inspect_container(cid)
            state, check = data.get("State") or {}, (data.get("Config") or {}).get("Healthcheck") or {}
            status = (state.get("Health") or {}).get("Status")
            if not state.get("Running") or not check.get("Test") or check["Test"][0] == "NONE":
                continue
            if status == "healthy":
                continue
            interval = float(check.get("Interval") or 0) / 1e9 or _DEFAULT_INTERVAL
            due[cid] = now + interval
            libpod(eng, "GET", f"/containers/{cid}/healthcheck", timeout=interval + 60)
        except DockerException:
            continue  # removed meanwhile, or a check the engine refused: the wait reports it
        except OSError:
            continue  # the engine blinked: the next round tries again


@contextlib.contextmanager
def tended(eng: Engine, *, project: str | None = None, ids: list[str] | None = None) -> Iterator[None]:
    """Run the healthchecks of `project`'s containers (or of `ids`) in the background for as long
    as the block runs, on Podman; on Docker, nothing."""
    if not is_podman(eng):
        yield
        return
    stop = threading.Event()
    due: dict[str, float] = {}

    def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a background helper: the wait itself reports
                run_due(eng, ids=ids, project=project, due=due)
            stop.wait(_POLL)

    thread = threading.Thread(target=loop, name=f"devup-health-{project or 'ids'}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
