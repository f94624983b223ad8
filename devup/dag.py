"""Run units in dependency order, independent ones in parallel; the first failure stops new work."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from devup import runner


def run(deps: Mapping[str, list[str]], work: Callable[[str], None], *, workers: int = 4) -> None:
    """Call `work(name)` once a unit's dependencies (within `deps`) are done.

    On a failure no new unit starts, running ones finish, and the first error is raised.
    On an interrupt in the waiting thread, running commands are terminated before unwinding.
    """
    pending = {name: [d for d in ds if d in deps] for name, ds in deps.items()}
    done: set[str] = set()
    running: dict[Future[None], str] = {}
    error: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="devup")
    try:
        while pending or running:
            if error is None:
                ready = [n for n, ds in pending.items() if all(d in done for d in ds)]
                if not ready and not running:
                    # A cycle: config validation rejects them, but a record written by another
                    # version or config can hold one. Never drop a unit: run the rest anyway.
                    ready = list(pending)
                for name in ready:
                    del pending[name]
                    running[pool.submit(work, name)] = name
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                exc = future.exception()
                if exc is not None:
                    error = error or exc
                else:
                    done.add(name)
            if error is not None:
                pending.clear()
    except BaseException:
        runner.terminate_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if error is not None:
        raise error
