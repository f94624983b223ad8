"""The engine adapter for data: volumes, pausing, and copy helpers (docker SDK; SPEC §7).

The start of issue 12's split of the engine side out of compose.py: compose.py keeps the
Compose CLI and the queries `up` needs; volumes and containers as objects live here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from devup import faults
from devup.compose import LABEL_PROJECT, LABEL_REPO, LABEL_SESSION, client
from devup.errors import DevupError

LABEL_VOLUME = "com.docker.compose.volume"
LABEL_COMPOSE_VERSION = "com.docker.compose.version"
LABEL_HELPER = "dev.devup.helper"  # a copy helper container: the volume it writes to
# The copy's exit code when the image has no usable copy tool: stream through the API instead.
_NO_TOOL = 42

# GNU cp (reflink where the storage has it, holes kept), else busybox cp -a, else tar.
# The target is emptied first: a restore copies into a volume that holds other data.
_COPY_SCRIPT = """
set -e
find /to -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>/dev/null || rm -rf /to/* /to/.[!.]* /to/..?* 2>/dev/null || true
if cp --version 2>/dev/null | grep -q GNU; then
  cp -a --reflink=auto --sparse=auto /from/. /to/
elif cp -a /from/. /to/ 2>/dev/null; then
  :
elif command -v tar >/dev/null 2>&1; then
  (cd /from && tar -cf - .) | (cd /to && tar -xpf -)
else
  exit 42
fi
du -sk /to 2>/dev/null | cut -f1 || echo 0
"""


_EMPTY_SCRIPT = _COPY_SCRIPT.split("\n")[2] + "\necho 0\n"


class EngineError(DevupError):
    """The engine refused a data operation (a volume, a pause, a copy)."""


@dataclass(frozen=True)
class Volume:
    name: str
    labels: dict[str, str]
    created: str


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def volume(name: str) -> Volume | None:
    from docker.errors import NotFound

    try:
        v = client().volumes.get(name)
    except NotFound:
        return None
    return Volume(v.name, dict(v.attrs.get("Labels") or {}), str(v.attrs.get("CreatedAt", "")))


def volumes(labels: list[str]) -> list[Volume]:
    """Volumes carrying every one of `labels` (`key=value` or `key`)."""
    found = client().volumes.list(filters={"label": labels})
    return [
        Volume(v.name, dict(v.attrs.get("Labels") or {}), str(v.attrs.get("CreatedAt", ""))) for v in found
    ]


def create_volume(name: str, labels: dict[str, str]) -> None:
    """Create `name`; one that exists already is an error (the engine would hand it back silently)."""
    from docker.errors import APIError

    if volume(name) is not None:
        raise EngineError(f"volume {name} exists already; devup will not copy into it")
    try:
        client().volumes.create(name=name, labels=labels)
    except APIError as exc:
        raise EngineError(f"cannot create volume {name}: {_explain(exc)}") from None


def remove_volume(name: str) -> None:
    """Remove `name` and any copy helper still writing to it; already gone is success."""
    from docker.errors import APIError, NotFound

    remove_helpers(name)
    try:
        client().volumes.get(name).remove(force=True)
    except NotFound:
        return
    except APIError as exc:
        raise EngineError(f"cannot remove volume {name}: {_explain(exc)}") from None


def remove_helpers(target: str) -> None:
    """Kill copy helpers writing to `target`: a killed devup leaves its helper copying."""
    from docker.errors import APIError, NotFound

    for c in client().containers.list(all=True, filters={"label": f"{LABEL_HELPER}={target}"}):
        try:
            c.remove(force=True)
        except NotFound:
            continue
        except APIError as exc:
            raise EngineError(f"cannot remove copy helper {c.name}: {_explain(exc)}") from None


def compose_version() -> str:
    """The version compose writes on what it creates (a volume made ahead carries it too)."""
    from devup import compose

    return compose.compose_version().lstrip("v")


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    project: str
    status: str  # running, paused, exited, ...
    image: str  # the image id
    mounts: list[str]  # names of the volumes it mounts


def containers(*, repo_id: str, session: str, projects: list[str]) -> list[Container]:
    """The containers of `projects` that belong to the session (copy helpers excepted)."""
    found = []
    labels = [f"{LABEL_REPO}={repo_id}", f"{LABEL_SESSION}={session}"]
    for c in client().api.containers(all=True, filters={"label": labels}):
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


def _each(ids: list[str], action: str) -> None:
    from docker.errors import APIError, NotFound

    api = client().api
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
            raise EngineError(f"cannot {action} container {cid[:12]}: {_explain(exc)}") from None


def pause(ids: list[str]) -> None:
    _each(ids, "pause")


def unpause(ids: list[str]) -> None:
    """Resume paused ones; running or gone ones are left as they are."""
    _each(ids, "unpause")


def stop(ids: list[str]) -> None:
    _each(ids, "stop")


def start(ids: list[str]) -> None:
    """Start the ones that are not running; running or gone ones are left as they are."""
    _each(ids, "start")


def wait_healthy(ids: list[str], *, timeout: float) -> list[str]:
    """Wait until each container runs (and is healthy, when it has a healthcheck); the names of
    those that did not get there in time."""
    from docker.errors import NotFound

    api = client().api
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while pending and time.monotonic() < deadline:
        still = []
        for cid in pending:
            try:
                state = api.inspect_container(cid)["State"]
            except NotFound:
                continue
            health = (state.get("Health") or {}).get("Status")
            if not (state.get("Running") and health in (None, "healthy")):
                still.append(cid)
        pending = still
        if pending:
            time.sleep(0.2)
    return [cid[:12] for cid in pending]


def image_exists(image: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client().images.get(image)
    except ImageNotFound:
        return False
    return True


def copy_volume(
    *, source: str | None, target: str, image: str, labels: dict[str, str], phase: str = "copy"
) -> int:
    """Copy `source`'s files into `target` (emptied first) on the engine; returns the bytes copied.

    A helper container of `image` (already on the engine: never pulled) mounts the source
    read-only; an image without sh, cp or tar is streamed through the engine API instead.
    Ownership, modes, symlinks and holes are kept (PostgreSQL refuses a data directory with
    the wrong owner or mode).
    """
    from docker.errors import APIError, ContainerError, ImageNotFound

    remove_helpers(target)
    mounts = {target: {"bind": "/to", "mode": "rw"}}
    if source is not None:
        mounts[source] = {"bind": "/from", "mode": "ro"}
    script = _COPY_SCRIPT if source is not None else _EMPTY_SCRIPT
    helper_labels = {**labels, LABEL_HELPER: target}
    try:
        container = client().containers.create(
            image,
            entrypoint=["sh", "-c", script],
            command=[],
            volumes=mounts,
            user="0:0",
            network_disabled=True,
            labels=helper_labels,
            working_dir="/",
        )
    except ImageNotFound:
        raise EngineError(f"image {image} is not on the engine; devup pulls no image for a copy") from None
    except APIError as exc:
        raise EngineError(f"cannot create a copy helper from {image}: {_explain(exc)}") from None
    try:
        try:
            container.start()
            faults.hit(f"during:{phase}")  # a test kills devup here: the helper copies on
        except APIError:
            return _stream(container.id, target, image, helper_labels)  # no sh in the image
        code = int(container.wait().get("StatusCode", 1))
        out = container.logs(stdout=True, stderr=True).decode(errors="replace")
        if code in (_NO_TOOL, 126, 127) and source is not None:
            return _stream(container.id, target, image, helper_labels)
        if code != 0:
            raise EngineError(
                f"copying volume {source} into {target} failed (helper exit {code}): {out.strip()[-800:]}"
            )
        lines = out.strip().splitlines()
        return int(lines[-1]) * 1024 if lines and lines[-1].strip().isdigit() else 0
    except ContainerError as exc:
        raise EngineError(f"copying volume {source} into {target} failed: {exc}") from None
    finally:
        _remove_quietly(container)


def _remove_quietly(container: Any) -> None:
    from docker.errors import APIError, NotFound

    with contextlib.suppress(NotFound, APIError):
        container.remove(force=True)


def _stream(cid: str, target: str, image: str, labels: dict[str, str]) -> int:
    """get_archive of /from piped into put_archive of /to, ownership kept (copyUIDGID).

    The writer is a second (never started) container: the engine holds a container's lock for
    the whole of an archive request, so reading and writing through one container deadlocks.
    """
    from docker.errors import APIError

    api = client().api
    size = 0
    writer = client().containers.create(
        image,
        command=["-"],
        volumes={target: {"bind": "/to", "mode": "rw"}},
        labels=labels,
        network_disabled=True,
    )
    try:
        # The target may hold the data a restore replaces: empty it through the API too.
        _empty_via_api(writer.id)
        stream, _ = api.get_archive(cid, "/from/.", chunk_size=1 << 20)

        def counted() -> Iterator[bytes]:
            nonlocal size
            for chunk in stream:
                size += len(chunk)
                yield chunk

        url = api._url("/containers/{0}/archive", writer.id)
        response = api._put(url, params={"path": "/to", "copyUIDGID": "1"}, data=counted())
        api._raise_for_status(response)
    except APIError as exc:
        raise EngineError(f"streaming into volume {target} failed: {_explain(exc)}") from None
    finally:
        _remove_quietly(writer)
    return size


def _empty_via_api(cid: str) -> None:
    """An image with no tool cannot `rm`: a target that holds files is refused (only a restore
    copies into a full volume, and it uses the session's own image, which has a shell)."""
    import io
    import tarfile

    api = client().api
    stream, _ = api.get_archive(cid, "/to/.")
    data = io.BytesIO(b"".join(stream))
    with tarfile.open(fileobj=data) as tar:
        names = [m.name for m in tar.getmembers() if m.name not in (".", "./")]
    if names:
        raise EngineError("the copy helper's image has no shell to empty the target volume with")
