"""Lock probes and non-blocking locks across processes: no engine, real flock."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from devup import locks
from devup.errors import BusyError

# A second process that probes the lock file in a loop until it is killed.
_PROBE_WITH_IS_LOCKED = """
from pathlib import Path
from devup import locks
path = Path(sys.argv[1])
print("ready", flush=True)
while True:
    locks.is_locked(path)
"""
# What devup's is_locked did before it read /proc/locks (an older devup on the same machine).
_PROBE_BY_TAKING_THE_LOCK = """
import fcntl
path = sys.argv[1]
print("ready", flush=True)
while True:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass
    finally:
        os.close(fd)
"""


@contextmanager
def _prober(script: str, path: Path) -> Iterator[None]:
    code = "import os, sys\n" + textwrap.dedent(script)
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield
        assert proc.poll() is None, "the prober died: it probed nothing"
    finally:
        proc.kill()
        proc.wait()


def _busy_count(path: Path, rounds: int) -> int:
    busy = 0
    for _ in range(rounds):
        try:
            with locks.file_lock(path, blocking=False):
                pass
        except BusyError:
            busy += 1
    return busy


def test_is_locked_never_makes_a_concurrent_non_blocking_lock_busy(tmp_path: Path) -> None:
    path = tmp_path / "s.lock"
    path.touch()
    with _prober(_PROBE_WITH_IS_LOCKED, path):
        assert _busy_count(path, 3000) == 0


def test_a_non_blocking_lock_rides_out_an_older_devups_brief_probe(tmp_path: Path) -> None:
    path = tmp_path / "s.lock"
    path.touch()
    with _prober(_PROBE_BY_TAKING_THE_LOCK, path):
        busy = _busy_count(path, 2000)
    # One try alone met the probe's moment about once in six here. The retries leave only a
    # prober that is descheduled for 100 ms while it holds the lock (a loaded machine).
    assert busy <= 2


def test_is_locked_sees_a_lock_held_by_another_process_and_by_this_one(tmp_path: Path) -> None:
    path = tmp_path / "s.lock"
    assert not locks.is_locked(path)  # no file: no lock
    path.touch()
    assert not locks.is_locked(path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
            "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert locks.is_locked(path)
        with pytest.raises(BusyError), locks.file_lock(path, blocking=False):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert not locks.is_locked(path)
    with locks.file_lock(path, shared=True):
        assert locks.is_locked(path)  # a shared holder keeps an exclusive taker out too
    assert not locks.is_locked(path)


def test_proc_locks_lines_are_matched_on_device_and_inode(tmp_path: Path) -> None:
    path = tmp_path / "s.lock"
    path.touch()
    st = path.stat()
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    other = f"{os.major(st.st_dev) + 1:02x}:{os.minor(st.st_dev):02x}"
    line = "1: FLOCK  ADVISORY  WRITE 1234 {} 0 EOF\n"
    assert locks._flocked(st, line.format(f"{dev}:{st.st_ino}")) is True
    assert locks._flocked(st, line.format(f"{dev}:{st.st_ino + 1}")) is False
    # A waiter is no holder; a POSIX lock does not conflict with flock.
    assert locks._flocked(st, f"1: -> FLOCK  ADVISORY  WRITE 1 {dev}:{st.st_ino} 0 EOF\n") is False
    assert locks._flocked(st, f"1: POSIX  ADVISORY  WRITE 1 {dev}:{st.st_ino} 0 EOF\n") is False
    # The same inode on another device number: a filesystem (btrfs, overlayfs) whose /proc/locks
    # device is not stat's. Cannot tell: the caller falls back to probing.
    assert locks._flocked(st, line.format(f"{other}:{st.st_ino}")) is None
    assert locks._flocked(st, "") is False
    with locks.file_lock(path):
        assert locks._flocked(st, Path("/proc/locks").read_text()) is True
