"""The compose group step's port handling, with compose and the engine faked at the adapter's
edge (the real runs are in test_compose_real.py and test_transient.py)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from devup import compose, remote, runner
from devup.engine import queries, volumes
from devup.journal import Journal
from devup.steps import group
from devup.undo import UndoStack


class _Guarded(dict[str, int]):
    """The session's ports: every change must be made under `lock` (Leases.relet's)."""

    def __init__(self, lock: threading.Lock, data: dict[str, int]) -> None:
        super().__init__(data)
        self.lock = lock

    def update(self, *args: Any, **kwargs: Any) -> None:
        assert self.lock.locked(), "the shared ports changed outside the leases' lock"
        super().update(*args, **kwargs)

    def __setitem__(self, key: str, value: int) -> None:
        assert self.lock.locked(), "the shared ports changed outside the leases' lock"
        super().__setitem__(key, value)


def test_a_moved_port_changes_the_shared_ports_only_under_the_leases_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = threading.Lock()
    ports = _Guarded(lock, {"WEB": 20001, "WEB_80": 20001, "DB": 20002})
    written: list[Mapping[str, int]] = []
    outputs = iter(["Bind for 0.0.0.0:20001 failed: port is already allocated", ""])

    def write_override(path: Path, *, ports: Mapping[str, int], **_: Any) -> None:
        written.append(ports)

    def up(*_: Any, **__: Any) -> runner.Result:
        output = next(outputs)
        return runner.Result(("compose", "up"), 1 if output else 0, output)

    def relet(keys: list[str], avoid: int) -> dict[str, int]:
        with lock:  # as Leases.relet: it moves the keys in the session's ports itself
            moved = {k: 20003 for k in keys}
            ports.update(moved)
            return moved

    monkeypatch.setattr(volumes, "project_volumes", lambda *_, **__: set())
    monkeypatch.setattr(queries, "restarts", lambda *_, **__: {})
    monkeypatch.setattr(compose, "write_override", write_override)
    monkeypatch.setattr(compose, "up", up)
    monkeypatch.setattr(group, "_check_settled", lambda *_, **__: None)
    monkeypatch.setattr(group, "_check_uptime", lambda *_, **__: None)
    monkeypatch.setattr(compose, "resolved", lambda *_, **__: "services: {}\n")
    ident = SimpleNamespace(
        session="s", repo=SimpleNamespace(repo_id="r"), labels=lambda name: {}, tags=lambda unit: {}
    )
    record = group.up(
        stack=UndoStack(Journal(tmp_path / "j.jsonl"), remote.Engine(None, "unix:///var/run/docker.sock")),
        ident=ident,  # type: ignore[arg-type]
        name="app",
        project="p-app",
        cfg=SimpleNamespace(files=["c.yaml"], wait_timeout=10, depends_on=[], min_uptime=0),  # type: ignore[arg-type]
        model=SimpleNamespace(services={"web": []}, volume_names={}),  # type: ignore[arg-type]
        worktree=tmp_path,
        env={},
        ports=ports,
        override=tmp_path / "app.override.yaml",
        relet=relet,
    )
    assert record.services == ["web"]
    assert dict(ports) == {"WEB": 20003, "WEB_80": 20003, "DB": 20002}
    # Each attempt wrote its override from a copy, never from the dict other threads change.
    assert all(w is not ports for w in written)
    assert [dict(w) for w in written] == [
        {"WEB": 20001, "WEB_80": 20001, "DB": 20002},
        {"WEB": 20003, "WEB_80": 20003, "DB": 20002},
    ]
