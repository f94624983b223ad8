"""Every error devup reports, with its exit code (SPEC §2), and the JSON it prints for one.

The CLI has one error boundary (`cli._guard`): a DevupError is expected and becomes its
message, hint, JSON document and exit code; anything else is a bug, reported with a crash log.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing and dataclasses cost ~20 ms: every command imports this module
if TYPE_CHECKING:
    from typing import Any, ClassVar


class Leftover:
    """Something a rollback could not undo: what a person reads in the leftover list."""

    __slots__ = ("error", "label")

    def __init__(self, label: str, error: str) -> None:
        self.label = label
        self.error = error

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Leftover) and (self.label, self.error) == (other.label, other.error)

    def __hash__(self) -> int:
        return hash((self.label, self.error))

    def __repr__(self) -> str:
        return f"Leftover(label={self.label!r}, error={self.error!r})"


class DevupError(Exception):
    """A failure devup explains to the user; `exit_code` is SPEC §2's."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        step: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.step = step
        self.leftovers: list[Leftover] = []
        if exit_code is not None:
            self.exit_code = exit_code

    def to_json(self, *, session: str | None = None, status: str = "error") -> dict[str, Any]:
        """SPEC §2's failure document; `status` is what the caller's command calls a failure
        that changed nothing (`up` says "rolled_back")."""
        return {
            "session": session,
            "status": status,
            "error": {"step": self.step, "message": self.message},
            "leftovers": [f"{lo.label}: {lo.error}" for lo in self.leftovers],
        }


# Exit 2: found before anything changed.


class UsageError(DevupError):
    """Bad command-line input, found before anything changed."""

    exit_code = 2


class NoSuchSession(UsageError):
    """A command names a session that does not exist: exit 2 for every command but `down`,
    for which it is success (SPEC §2)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no session named {name}", hint="`devup ls` lists the sessions")


class LimitReached(DevupError):
    """A limit of `[limits]` refuses the run (SPEC §5.13): exit 6, nothing was changed."""

    exit_code = 6


class Cancelled(DevupError):
    """SIGINT or SIGTERM before a run changed anything (or after it rolled back): exit 130."""

    exit_code = 130


class PayloadError(UsageError):
    """A hook's stdin did not hold one JSON object in time; nothing was changed."""


class ConfigError(DevupError):
    """devup.toml is invalid; the message names the file, key path and line."""

    exit_code = 2


class PreflightError(DevupError):
    """A check before the first change failed; nothing was touched."""

    exit_code = 2


class EngineUnavailable(DevupError):
    """The Docker engine does not answer: exit 1, naming the engine (SPEC §2)."""

    exit_code = 1


class NotUndoable(DevupError):
    """An inverse that no later attempt could carry out either (a hook's `undo` whose folder is
    gone): a leftover reported once, by the unwind that found it, and not retried."""


class EngineError(DevupError):
    """The engine refused a request (a volume, a pause, a copy)."""


class Unrepresentable(PreflightError):
    """A variable that cannot be written at all: a name that is no variable name, or a NUL."""


class CopyRefused(PreflightError):
    """A `[worktree].copy` path that would read or write outside the main checkout or the worktree."""


# Exit 4: someone else's run.


class BusyError(DevupError):
    """Another devup run holds the session's lock."""

    exit_code = 4


# Exit 1: failed, nothing lost.


class CorruptState(DevupError):
    """A state file that cannot be read; reported, never allowed to block other sessions."""


class CommandFailed(DevupError):
    """An outside command exited non-zero (or timed out)."""

    def __init__(
        self, *, command: str, returncode: int | None, output_tail: str, what: str = "command"
    ) -> None:
        code = "timed out" if returncode is None else f"exited {returncode}"
        message = f"{what} `{command}` {code}"
        if output_tail.strip():
            message += f"\n{output_tail.rstrip()}"
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.output_tail = output_tail


class RouterError(DevupError):
    """The router of the hostnames (caddy, SPEC §9) could not start, or refused a change."""


class PortConflict(DevupError):
    """A native service could not bind its port: someone took it between the check and the bind."""


class InjectedFault(DevupError):
    """Raised where DEVUP_FAULT asks for a failure (the fault-injection tests)."""


class StepFailed(DevupError):
    """A step of `up` failed; carries the step's name for the report."""

    def __init__(self, step: str, cause: BaseException) -> None:
        text = cause.message if isinstance(cause, DevupError) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"step {step} failed: {text}", step=step)
        self.cause = cause


class UnexpectedError(DevupError):
    """A programming error inside a step, reported as one (with the crash log), rolled back."""


# Failures that say what became of the world.


class RecoverIncomplete(DevupError):
    """An interrupted run could not be rolled back completely; `leftovers` lists what is left."""

    exit_code = 3

    def __init__(self, session: str, leftovers: list[Leftover], *, hint: str | None = None) -> None:
        # The leftovers themselves are listed under the error (cli._fail) and in the JSON.
        super().__init__(
            f"the rollback of an interrupted run of {session} is incomplete",
            hint=hint or f"`devup recover {session}` once the cause is fixed",
            step="recover",
        )
        self.session = session
        self.leftovers = leftovers

    def to_json(self, *, session: str | None = None, status: str = "error") -> dict[str, Any]:
        return super().to_json(session=self.session, status="rollback_incomplete")


class RunFailed(DevupError):
    """A journaled run (`up`, a snapshot, a restore, a clone) failed; `status` says what became
    of the world (SPEC §2 JSON), and decides the exit code."""

    CODES: ClassVar[dict[str, int]] = {
        "rolled_back": 1,
        "rollback_incomplete": 3,
        "kept": 5,
        "interrupted": 130,
    }

    def __init__(
        self,
        *,
        session: str,
        status: str,
        step: str,
        cause: str,
        leftovers: list[Leftover],
        what: str | None = None,  # "snapshot create": said in the message, as `up` needs not be
    ) -> None:
        hint = None
        if status == "rollback_incomplete":
            hint = f"run `devup recover {session}` to finish the rollback"
        elif status == "kept":
            hint = f"everything is left in place for debugging; `devup down {session}` cleans up"
        if what is not None:
            done = {"rolled_back": "rolled back", "interrupted": "interrupted and rolled back"}.get(
                status, ""
            )
            cause = f"{what} of {session} failed{f' ({done})' if done else ''}: {cause}"
        super().__init__(cause, hint=hint, step=step, exit_code=self.CODES[status])
        self.session = session
        self.status = status
        self.leftovers = leftovers

    def to_json(self, *, session: str | None = None, status: str = "error") -> dict[str, Any]:
        return super().to_json(session=self.session, status=self.status)


class NoDataVolumes(UsageError):
    """A snapshot or restore of a session whose groups have no named volumes (exit 2: nothing
    was changed, and there is nothing to copy)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; a BaseException so no `except Exception` swallows it."""

    def __init__(self, signum: int, *, context: str | None = None) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
        # What became of the world when not "nothing was changed" (a teardown part way, a
        # recovery with the rest of its rollback left on the journal): said by the CLI.
        self.context = context


def leftover_text(session: str, leftovers: list[Leftover]) -> str:
    return f"rollback of {session} is incomplete; left over:\n" + "\n".join(
        f"  - {lo.label}: {lo.error}" for lo in leftovers
    )
