"""Copying a volume's files on the engine: a helper container, or streaming through the API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO, Any, cast

from devup import faults
from devup.engine.client import client, edge, explain
from devup.engine.http import is_podman
from devup.engine.labels import LABEL_HELPER
from devup.engine.volumes import remove_helpers, volume_info
from devup.errors import EngineError
from devup.remote import Engine

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


@edge
def image_exists(eng: Engine, image: str) -> bool:
    from docker.errors import ImageNotFound

    try:
        client(eng).images.get(image)
    except ImageNotFound:
        return False
    return True


@edge
def copy_volume(
    eng: Engine, *, source: str | None, target: str, image: str, labels: dict[str, str], phase: str = "copy"
) -> int:
    """Copy `source`'s files into `target` (emptied first) on the engine; returns the bytes copied.

    A helper container of `image` (already on the engine: never pulled) mounts the source
    read-only; an image without sh, cp or tar is streamed through the engine API instead.
    Ownership, modes, symlinks and holes are kept (PostgreSQL refuses a data directory with
    the wrong owner or mode).
    """
    from docker.errors import APIError, ContainerError, ImageNotFound

    for name in (source, target):
        # The engine would create a missing volume on mount, empty and unlabelled: a copy from
        # it would look like a copy (a snapshot removed meanwhile, a copy-back run twice).
        if name is not None and volume_info(eng, name) is None:
            raise EngineError(f"cannot copy volume {source} into {target}: volume {name} does not exist")
    remove_helpers(eng, target)
    mounts = {target: {"bind": "/to", "mode": "rw"}}
    if source is not None:
        mounts[source] = {"bind": "/from", "mode": "ro"}
    script = _COPY_SCRIPT if source is not None else _EMPTY_SCRIPT
    helper_labels = {**labels, LABEL_HELPER: target}
    try:
        container = client(eng).containers.create(
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
        raise EngineError(f"cannot create a copy helper from {image}: {explain(exc)}") from None
    try:
        try:
            container.start()
            faults.hit(f"during:{phase}")  # a test kills devup here: the helper copies on
        except APIError:
            return _stream(eng, container.id, target, image, helper_labels)  # no sh in the image
        code = int(container.wait().get("StatusCode", 1))
        out = container.logs(stdout=True, stderr=True).decode(errors="replace")
        if code in (_NO_TOOL, 126, 127) and source is not None:
            return _stream(eng, container.id, target, image, helper_labels)
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
        # v: a helper of the service's own image gets an anonymous volume for each VOLUME the
        # image declares (PostgreSQL's data directory); it goes with the helper.
        container.remove(force=True, v=True)


def _stream(eng: Engine, cid: str, target: str, image: str, labels: dict[str, str]) -> int:
    """get_archive of /from piped into put_archive of /to, ownership kept (copyUIDGID).

    The writer is a second (never started) container: the engine holds a container's lock for
    the whole of an archive request, so reading and writing through one container deadlocks.
    """
    from docker.errors import APIError

    if is_podman(eng):
        # Podman's archive API hands every file out as root's: a copy would silently lose its
        # owners (PostgreSQL then refuses its data directory). Refused, with what to do.
        raise EngineError(
            f"cannot copy into volume {target} on Podman: image {image} has no sh, cp or tar for "
            "the copy helper, and Podman's archive API does not keep file owners",
            hint="use an image with a shell for that service (any busybox- or Debian-based one)",
        )
    api = client(eng).api
    size = 0
    writer = client(eng).containers.create(
        image,
        command=["-"],
        volumes={target: {"bind": "/to", "mode": "rw"}},
        labels=labels,
        network_disabled=True,
    )
    try:
        # The target may hold the data a restore replaces: empty it through the API too.
        _empty_via_api(eng, writer.id)
        stream, _ = api.get_archive(cid, "/from/.", chunk_size=1 << 20)

        def counted() -> Iterator[bytes]:
            nonlocal size
            for chunk in stream:
                size += len(chunk)
                yield chunk

        # put_archive has no copyUIDGID: the same request through the client's public requests
        # session (ownership kept: PostgreSQL refuses a data directory of another owner).
        url = f"{api.base_url}/v{api.api_version}/containers/{writer.id}/archive"
        response = api.put(url, params={"path": "/to", "copyUIDGID": "1"}, data=counted())
        if response.status_code >= 400:
            raise EngineError(
                f"streaming into volume {target} failed: {response.status_code} {response.text[:300]}"
            )
    except APIError as exc:
        raise EngineError(f"streaming into volume {target} failed: {explain(exc)}") from None
    finally:
        _remove_quietly(writer)
    return size


def _empty_via_api(eng: Engine, cid: str) -> None:
    """An image with no tool cannot `rm`: a target that holds files is refused (only a restore
    copies into a full volume, and it uses the session's own image, which has a shell)."""
    import tarfile

    stream, _ = client(eng).api.get_archive(cid, "/to/.")
    # Read as a stream and stop at the first member past the folder itself: a multi-GB volume is
    # never held in memory just to learn that it is not empty.
    with tarfile.open(fileobj=cast(IO[bytes], _ChunkReader(stream)), mode="r|") as tar:
        holds_files = any(m.name not in (".", "./") for m in tar)
    if holds_files:
        raise EngineError("the copy helper's image has no shell to empty the target volume with")


class _ChunkReader:
    """A file-like `read` over an iterator of byte chunks (tarfile's stream mode needs one)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buffer = iter(chunks), b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        found, self._buffer = self._buffer[:size], self._buffer[size:]
        return found
