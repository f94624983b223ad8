"""The one journaled run that every command changing a session goes through (STYLE 7).

`held` is its prologue: the session's lock, signals, a run kept for debugging refused, an
interrupted run finished. `Run` is the run itself: the journal's begin entry, the undo stack
written ahead, each step timed and reported under its name, and the one failure policy that
decides what became of the world (`RunFailed`: its status, leftovers and exit code). `up`,
`snapshot create`/`restore` and `up --from` supply their steps; `stop`, `down`, `recover`
and `gc` use the prologue.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from devup import faults, journal, recovery, remote, runner, steps
from devup.errors import DevupError, Interrupted, RunFailed, StepFailed, UnexpectedError, UsageError
from devup.journal import Journal
from devup.report import Reporter
from devup.undo import UndoStack
from devup.workspace import Workspace


@contextlib.contextmanager
def held(
    ws: Workspace,
    name: str,
    reporter: Reporter,
    *,
    kept: Literal["refuse", "leave", "undo"] = "refuse",
    check: Callable[[], None] | None = None,
    hint: str | None = None,
    partly: str | None = None,
) -> Iterator[recovery.Recovery]:
    """Hold session `name` for a run: its lock (busy: exit 4), SIGINT/SIGTERM as Interrupted,
    `check` (a refusal that must come before anything changes: `down`'s dirty worktree), and
    its interrupted run finished first (leftovers: exit 3 with `hint`, the journal kept for
    them; an interrupt while finishing it: exit 130, the rest kept for the next command). A run
    kept for debugging is refused (exit 2: a new run would overwrite its journal), left as it
    is (`stop`, `recover`), or undone (`down` removes what it made). `partly` says what an
    interrupt in a command without a journal of its own (`stop`, `down`) leaves: exit 130 all
    the same."""
    with ws.locked(name), runner.interruptible():
        if check is not None:
            check()
        found = journal.replay(ws.repo.journal(name))
        if found is not None and found.outcome == "kept" and kept == "refuse":
            # Its journal lists what that failed run made; a new run must not overwrite it.
            raise UsageError(
                f"session {name} was kept after a failed run (--on-failure keep)",
                hint=f"`devup down {name}` removes what that run made; then run this again",
            )
        earlier = recovery.finish(ws, name, reporter, include_kept=kept == "undo")
        earlier.check(hint=hint)
        with saying(partly):
            yield earlier


@contextlib.contextmanager
def saying(partly: str | None) -> Iterator[None]:
    """An interrupt in the body of a command that is no journaled run (`stop`, `down`, `gc`)
    leaves `partly` (what to run again): its exit 130 says so, not "nothing was changed"."""
    try:
        yield
    except Interrupted as exc:
        if partly is None or exc.context is not None:
            raise
        raise Interrupted(exc.signum, context=partly) from None


def finish(ws: Workspace, name: str, reporter: Reporter) -> recovery.Recovery:
    """`devup recover NAME`, and `gc` for each interrupted run: the prologue alone."""
    with held(ws, name, reporter, kept="leave") as earlier:
        return earlier


class Run:
    """One journaled run on session `name`, on engine `engine`; the caller holds the session."""

    def __init__(
        self,
        ws: Workspace,
        name: str,
        *,
        kind: str,
        engine: remote.Engine,
        reporter: Reporter,
        resumed: bool,
        restores: bool = False,
        begin: dict[str, Any] | None = None,
    ) -> None:
        self.ws, self.name, self.kind, self.reporter = ws, name, kind, reporter
        # A rolled-back resume marks the session failed; one whose inverses put the session back
        # as it ran (a reconcile, SPEC §5.12) leaves it as it was.
        self.resumed = resumed and not restores
        self.journal = Journal(ws.repo.journal(name))
        self.journal.remove()
        remote.remember(ws.repo.state, engine)  # gc looks for leftovers on every engine used
        self.journal.append(
            {
                "op": "begin",
                "session": name,
                "kind": kind,
                "resumed": self.resumed,  # a rolled-back resume marks the session failed, never removes it
                "pid": os.getpid(),
                "at": time.time(),
                "engine": engine.to_json(),  # undone on this engine, whatever the shell says then
                **(begin or {}),
            }
        )
        self.stack = UndoStack(self.journal, engine)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """One step, timed and reported; its failure is StepFailed naming it (a bug is said to
        be one, with its traceback in the crash log)."""
        self.reporter.step_started(name)
        t0 = time.monotonic()
        try:
            faults.hit(f"before:{name}")
            yield
            faults.hit(f"after:{name}")
        except (Exception, Interrupted) as exc:
            if isinstance(exc, Exception) and not isinstance(exc, DevupError):
                exc = _unexpected(exc)
            message = exc.message if isinstance(exc, DevupError) else str(exc)
            self.reporter.step_failed(name, time.monotonic() - t0, message)
            if isinstance(exc, Exception) and not isinstance(exc, StepFailed):
                raise StepFailed(name, exc) from exc
            raise
        self.reporter.step_done(name, time.monotonic() - t0)

    def commit(self, *, last: bool = True) -> None:
        """Success: disarm the stack and drop the journal. The command's `last` run: from here a
        signal cannot undo it (a run within another, a clone's pause of its source, is not)."""
        if last:
            runner.committed()  # before the disarm: an interrupt now would roll back a finished run
        self.stack.disarm()
        self.journal.remove()

    def rollback(self) -> list[Any]:
        """Unwind what this run made; the journal goes only when nothing is left over."""
        steps.load_all()
        leftovers = self.stack.unwind(on_undo=self.reporter.undone)
        if not leftovers:
            leftovers = recovery.finish_rollback(
                self.ws, self.name, resumed=self.resumed, reporter=self.reporter
            )
        return leftovers

    def fail(self, exc: BaseException, *, keep: bool = False, what: str | None = None) -> RunFailed:
        """The failure policy: keep everything for debugging when asked (never on an interrupt),
        else unwind what this run made; the error says which became of the world."""
        interrupted = isinstance(exc, Interrupted)
        step, message = what_failed(exc)
        if keep and not interrupted:
            self.stack.keep()
            return RunFailed(session=self.name, status="kept", step=step, cause=message, leftovers=[])
        self.reporter.note("rolling back what this run created")
        leftovers = self.rollback()
        status = "rollback_incomplete" if leftovers else ("interrupted" if interrupted else "rolled_back")
        return RunFailed(
            session=self.name, status=status, step=what or step, cause=message, leftovers=leftovers, what=what
        )


def what_failed(exc: BaseException) -> tuple[str, str]:
    """(step, message) of the report: the step that failed, in the words of its own error."""
    if isinstance(exc, Interrupted):
        return "interrupt", f"interrupted by {signal.Signals(exc.signum).name}"
    if isinstance(exc, Exception) and not isinstance(exc, DevupError):
        exc = _unexpected(exc)
    step = exc.step if isinstance(exc, DevupError) and exc.step else "up"
    if isinstance(exc, StepFailed) and isinstance(exc.cause, DevupError):
        return step, exc.cause.message
    return step, exc.message if isinstance(exc, DevupError) else str(exc)


def _unexpected(exc: Exception) -> UnexpectedError:
    """A bug, not a failure devup knows how to explain: still rolled back, but said so, with the
    traceback in the crash log for a report."""
    from devup import crashlog

    message, hint = crashlog.describe(exc)
    return UnexpectedError(f"{message}; {hint}")
