"""The runner's interrupt handling with worker threads: real children, no engine."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devup import remote, runner, undo
from devup.journal import Journal

LOCAL = remote.Engine(None, "unix:///var/run/docker.sock")


@pytest.fixture(autouse=True)
def _not_stopping() -> Iterator[None]:
    runner._stopping.clear()
    yield
    runner.terminate_all()  # whatever a failed test left running
    runner._stopping.clear()


def test_a_child_a_worker_starts_while_terminate_all_runs_is_still_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """terminate_all() runs between a worker thread's Popen and its registration (the main
    thread's signal deferral does not cover workers): the child must be stopped all the same."""
    real_popen = subprocess.Popen

    class InterruptedPopen(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            runner.terminate_all()  # the main thread's Ctrl-C, before `_start` registers us

    monkeypatch.setattr(subprocess, "Popen", InterruptedPopen)
    results: list[runner.Result] = []
    worker = threading.Thread(target=lambda: results.append(runner.run(["sleep", "30"], timeout=8)))
    t0 = time.monotonic()
    worker.start()
    worker.join(timeout=20)
    (result,) = results
    assert result.returncode == -signal.SIGTERM  # not None: not left to run into its timeout
    assert time.monotonic() - t0 < 5


def test_a_child_a_worker_starts_after_terminate_all_is_stopped_at_once() -> None:
    runner.terminate_all()
    results: list[runner.Result] = []
    worker = threading.Thread(target=lambda: results.append(runner.run(["sleep", "30"], timeout=8)))
    worker.start()
    worker.join(timeout=20)
    assert results[0].returncode == -signal.SIGTERM


def test_the_rollback_after_an_interrupt_still_runs_its_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[int | None] = []

    def inverse(args: dict[str, Any], engine: remote.Engine) -> None:
        ran.append(runner.run(["sh", "-c", "sleep 0.2; exit 0"], timeout=10, check=True).returncode)

    monkeypatch.setitem(undo._REGISTRY, "test_command", inverse)
    runner.terminate_all()  # the Ctrl-C that started the rollback
    records = [(i, undo.UndoRecord("test_command", {}, f"command {i}")) for i in range(2)]
    leftovers = undo.unwind_records(Journal(tmp_path / "j.jsonl"), records, LOCAL)
    assert leftovers == [] and ran == [0, 0]
