"""Append-only, fsync'd write-ahead log of one run's undo stack; replay() says what is left."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devup import paths
from devup.errors import CorruptState


class Journal:
    """One file per session run: begin, push/update/undone per undo record, end."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: dict[str, Any]) -> None:
        paths.ensure_dir(self.path.parent)
        line = json.dumps(entry, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            try:
                data = line.encode()
                if os.write(fd, data) != len(data):
                    raise OSError(28, "short write to the journal")  # ENOSPC
                os.fsync(fd)
            except OSError:
                # Never leave half a line in the middle: a later line after it would make the
                # whole journal unreadable. (A torn last line is fine: replay skips it.)
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Replay:
    """What a journal says: the run's header, its undo records still to undo, how it ended."""

    begin: dict[str, Any] = field(default_factory=dict)
    pending: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # push order
    outcome: str | None = None  # committed | rolled_back | kept | None (interrupted)


def replay(path: Path) -> Replay | None:
    """Read a journal; a torn last line (a write cut short by a crash) is ignored.

    Any other line that is not an entry devup writes (binary bytes, a bare `42`, a push without
    an id) makes the whole journal CorruptState: guessing what to undo from it could run the
    wrong thing. Callers report it for this session alone (SPEC §5.3, §5.11).
    """
    try:
        # O_NONBLOCK: a FIFO put where the journal belongs must not hang every command that
        # looks at this session (new-L1); it is refused below as no regular file.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CorruptState(
            f"journal {path} cannot be read: {exc.strerror}",
            hint=f"inspect it, undo by hand what it lists, then delete it: {path}",
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptState(
                f"journal {path} is not a regular file; devup runs nothing from it",
                hint=f"inspect it, undo by hand what it lists, then delete it: {path}",
            )
        _check_trusted(path, st)
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read()
    finally:
        os.close(fd)
    lines = raw.split(b"\n")
    result = Replay()
    records: dict[int, dict[str, Any]] = {}
    order: list[int] = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            entry = _entry(json.loads(line))
        except (ValueError, TypeError, KeyError):  # JSON, UTF-8 and shape errors alike
            if index >= len(lines) - 2:  # the last non-empty line: torn by a crash mid-write
                break
            raise CorruptState(
                f"journal {path} is corrupt at line {index + 1}",
                hint=f"inspect it, undo by hand what it lists, then delete it: {path}",
            ) from None
        op = entry["op"]
        if op == "begin":
            result.begin = entry
        elif op in ("push", "update"):
            if entry["id"] not in records:
                order.append(entry["id"])
            records[entry["id"]] = entry["undo"]
        elif op == "undone":
            records.pop(entry["id"], None)
        elif op == "end":
            result.outcome = entry["outcome"]
    result.pending = [(i, records[i]) for i in order if i in records]
    if not result.begin and not result.pending and result.outcome is None:
        return None  # a run that never began (its first write failed: a full disk): nothing to undo
    return result


def _entry(data: Any) -> dict[str, Any]:
    """`data` if it is an entry devup writes; else a TypeError/KeyError/ValueError."""
    if not isinstance(data, dict):
        raise TypeError("not an object")
    op = data["op"]
    if op in ("push", "update", "undone") and not (
        isinstance(data["id"], int) and not isinstance(data["id"], bool)
    ):
        raise TypeError("id is not a number")
    if op in ("push", "update"):
        undo = data["undo"]
        if not (isinstance(undo, dict) and isinstance(undo["kind"], str) and isinstance(undo["args"], dict)):
            raise TypeError("not an undo record")
        if not isinstance(undo.get("label", ""), str):
            raise TypeError("label is not text")
    elif op == "end":
        if data["outcome"] not in ("committed", "rolled_back", "kept"):
            raise ValueError("unknown outcome")
    elif op not in ("begin", "undone"):
        raise ValueError(f"unknown op {op!r}")
    return data


def _check_trusted(path: Path, st: os.stat_result) -> None:
    """devup runs the commands a journal lists (a hook's undo): only from a journal this user
    wrote, in a folder no one else can write to (SPEC §5.11)."""
    problem = None
    if st.st_uid != os.getuid():
        problem = f"is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    elif st.st_mode & 0o022:
        problem = f"is writable by others (mode {st.st_mode & 0o777:o})"
    else:
        folder = os.stat(path.parent)
        if folder.st_uid != os.getuid() or folder.st_mode & 0o022:
            problem = f"is in a folder others can write to ({path.parent}, mode {folder.st_mode & 0o777:o})"
    if problem:
        raise CorruptState(
            f"journal {path} {problem}; devup runs nothing from it",
            hint=f"if you trust it, `chown`/`chmod go-w` it (and its folder); otherwise delete it: {path}",
        )
