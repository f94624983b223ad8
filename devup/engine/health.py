"""Healthchecks on Podman, run by devup while it waits for them.

Podman 4.x runs a container's healthcheck from a systemd timer; where there is no systemd (a
container, many CI runners) the check never runs, the container stays `starting`, and compose's
`up --wait` never ends. While devup waits for containers to be healthy on Podman, it runs their
healthchecks itself (libpod's `GET /containers/{id}/healthcheck`, what `podman healthcheck run`
does), each at its own interval. Podman counts the results as its timer's (retries, start
period), so `unhealthy` means what it means on Docker. Where systemd runs them too, a check runs
a little more often during the wait, nothing else. On Docker nothing here runs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from devup.engine.client import client, libpod
from devup.engine.http import is_podman
from devup.engine.labels import LABEL_PROJECT
from devup.remote import Engine

_POLL = 0.5  # seconds between looks at the project's containers
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
