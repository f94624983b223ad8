"""dag.run: dependency order, parallelism, and no unit ever dropped (pure logic, no engine)."""

from __future__ import annotations

import threading
import time

import pytest

from devup import dag


def test_units_run_after_their_dependencies():
    order: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        time.sleep(0.01)
        with lock:
            order.append(name)

    dag.run({"app": ["db", "cache"], "db": [], "cache": [], "worker": ["app"]}, work)
    assert set(order) == {"app", "db", "cache", "worker"}
    assert order.index("app") > max(order.index("db"), order.index("cache"))
    assert order.index("worker") > order.index("app")


def test_a_cycle_in_stale_records_still_runs_every_unit():
    # Config validation rejects cycles, but `down` reads records an older config wrote.
    done: list[str] = []
    dag.run({"api": ["db"], "db": ["api"], "web": ["infra"]}, done.append)
    assert sorted(done) == ["api", "db", "web"]


def test_a_failure_stops_new_units_and_is_raised():
    done: list[str] = []

    def work(name: str) -> None:
        if name == "db":
            raise RuntimeError("db broke")
        done.append(name)

    with pytest.raises(RuntimeError, match="db broke"):
        dag.run({"db": [], "app": ["db"]}, work)
    assert done == []
