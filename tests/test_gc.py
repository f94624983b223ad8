"""gc's orphan processes: identity kept from the find to the kill. Real git, real processes."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from pathlib import Path

import psutil

from devup import gc, processes
from devup.workspace import open_workspace
from tests.conftest import isolated, make_repo


def test_gc_never_signals_a_process_that_took_over_an_orphans_pid(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, isolated("host"))
    ws = open_workspace(repo.path)
    tags = {processes.TAG_REPO_ID: ws.repo.repo_id, processes.TAG_SESSION: "gone"}
    child = subprocess.Popen(["sleep", "60"], env={**os.environ, **tags})
    try:
        (orphan,) = [o for o in gc.find(ws, on=[]) if o.kind == "process"]
        assert orphan.name == str(child.pid)
        assert orphan.started == psutil.Process(child.pid).create_time()
        # Between find and remove, the orphan exits and its pid goes to another process: the
        # process now at that pid started at another time.
        recycled = dataclasses.replace(orphan, started=orphan.started - 30)
        gc._remove(ws, recycled, force=False, copied=())
        assert child.poll() is None  # not signalled
        # The very process found is removed.
        assert gc._remove(ws, orphan, force=False, copied=()).removed
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()
