"""The journal and the undo stack as data: torn lines, corruption, LIFO, keep going past failures."""

from __future__ import annotations

import json

import pytest

from devup import journal, remote, undo
from devup.errors import CorruptState

LOCAL = remote.Engine(None, remote.DEFAULT_HOST)


def test_replay_tolerates_a_torn_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    jr = journal.Journal(path)
    jr.append({"op": "begin", "session": "a"})
    jr.append({"op": "push", "id": 0, "undo": {"kind": "k", "args": {}, "label": "zero"}})
    jr.append({"op": "push", "id": 1, "undo": {"kind": "k", "args": {}, "label": "one"}})
    jr.append({"op": "undone", "id": 1})
    with open(path, "ab") as f:
        f.write(b'{"op": "push", "id": 2, "undo": {"ki')  # a crash mid-write
    found = journal.replay(path)
    assert found is not None and found.outcome is None
    assert [r["label"] for _, r in found.pending] == ["zero"]


def test_replay_reports_corruption_in_the_middle(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"op": "begin"}\nnot json\n{"op": "end", "outcome": "committed"}\n')
    with pytest.raises(CorruptState):
        journal.replay(path)


def test_unwind_is_lifo_and_keeps_going_past_a_failure(tmp_path):
    calls: list[str] = []

    @undo.inverse("test_record")
    def _undo(args, _engine):
        calls.append(args["name"])
        if args["name"] == "middle":
            raise RuntimeError("cannot")

    jr = journal.Journal(tmp_path / "j.jsonl")
    stack = undo.UndoStack(jr, LOCAL)
    for name in ("first", "middle", "last"):
        stack.push(undo.UndoRecord("test_record", {"name": name}, name))
    leftovers = stack.unwind()
    assert calls == ["last", "middle", "first"]
    assert [lo.label for lo in leftovers] == ["middle"]
    lines = [json.loads(line) for line in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert [e["op"] for e in lines].count("undone") == 2 and lines[-1]["op"] != "end"
    # What is left to undo is exactly the failed record.
    assert [r["label"] for _, r in journal.replay(tmp_path / "j.jsonl").pending] == ["middle"]


def test_disarm_commits(tmp_path):
    stack = undo.UndoStack(journal.Journal(tmp_path / "j.jsonl"), LOCAL)
    stack.push(undo.UndoRecord("test_record", {"name": "x"}, "x"))
    stack.disarm()
    found = journal.replay(tmp_path / "j.jsonl")
    assert found is not None and found.outcome == "committed"
