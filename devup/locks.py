"""File locks the kernel releases when the process dies, and atomic writes of state files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from devup import paths
from devup.errors import BusyError


@contextlib.contextmanager
def file_lock(
    path: Path, *, blocking: bool = True, busy_message: str = "", shared: bool = False
) -> Iterator[None]:
    """flock: the kernel releases it when the process dies, so a killed run never wedges us.
    `shared`: one of many readers, which only an exclusive holder keeps out."""
    paths.ensure_dir(path.parent)
    # Read-only is enough for flock, and keeps no file of the state folder open for writing (a
    # remount read-only, or a full disk, then meets no writer of ours).
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK, 0o600)  # a FIFO: no hang (new-L1)
    try:
        kind = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if blocking:
            fcntl.flock(fd, kind)
        elif not _try_lock(fd, kind):
            raise BusyError(busy_message or f"{path.name} is locked by another devup")
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


# Tries of a non-blocking lock: now, then after each pause (~100 ms in all). A devup before
# is_locked read /proc/locks probed by taking the lock for a moment; one try alone met that
# moment as "busy" (exit 4): 912 times in 20,000 against a probing loop.
_RETRY_PAUSES = (0.01, 0.02, 0.03, 0.04)


def _try_lock(fd: int, kind: int) -> bool:
    """Take the lock without waiting on a holder; False when it stays held for ~100 ms."""
    import time

    for pause in (*_RETRY_PAUSES, None):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        if pause is not None:
            time.sleep(pause)
    return False


def is_locked(path: Path) -> bool:
    """Whether some open file holds a flock on `path`. Read from /proc/locks, not by taking the
    lock to see: a probe that holds the lock even for a moment makes another command's
    non-blocking file_lock fail as busy (exit 4)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    try:
        table = Path("/proc/locks").read_text(encoding="utf-8", errors="replace")
    except OSError:
        table = None  # not Linux, or no /proc
    held = _flocked(st, table) if table is not None else None
    return _probe(path) if held is None else held


def _flocked(st: os.stat_result, table: str) -> bool | None:
    """Whether /proc/locks (`table`) lists a flock on the file `st` describes; None when it
    cannot tell: a flock on the same inode number under another device number (btrfs and
    overlayfs may show /proc/locks a device that stat does not).

    A line: "1: FLOCK  ADVISORY  WRITE 1234 08:01:123456 0 EOF", the device as major:minor in
    hex; a waiter's line has "->" before FLOCK and is not a holder. The kernel shows only the
    locks of processes in this PID namespace: a devup in another container that shares the
    state folder is not seen.
    """
    here = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    inode = f":{st.st_ino}"
    unsure = False
    for line in table.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        if fields[5] == here:
            return True
        unsure = unsure or fields[5].endswith(inode)
    return None if unsure else False


def _probe(path: Path) -> bool:
    """Whether the lock is held, by trying to take it (where /proc/locks cannot tell)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO there must not hang `ls`/`gc` (new-L1)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def write_atomic(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Temp file in the same folder, fsync, os.replace: a reader sees the old or the new file."""
    import tempfile

    paths.ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
