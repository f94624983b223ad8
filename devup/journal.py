"""Append-only, fsync'd write-ahead log of one run's undo stack; replay() says what is left."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devup.state import CorruptState


class Journal:
    """One file per session run: begin, push/update/undone per undo record, end."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
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
    """Read a journal; a torn last line (a write cut short by a crash) is ignored."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    lines = raw.split(b"\n")
    result = Replay()
    records: dict[int, dict[str, Any]] = {}
    order: list[int] = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if index >= len(lines) - 2:  # the last non-empty line: torn by a crash mid-write
                break
            raise CorruptState(
                f"journal {path} is corrupt at line {index + 1}",
                hint=f"inspect it, undo by hand what it lists, then delete it: {path}",
            ) from None
        op = entry.get("op")
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
    return result
