"""The one error root: every failure devup reports is a DevupError with a message and a hint."""

from __future__ import annotations

from typing import Any, ClassVar


class DevupError(Exception):
    """A failure devup explains to the user; `exit_code` is SPEC §2's."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, step: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.step = step


class UsageError(DevupError):
    """Bad command-line input, found before anything changed."""

    exit_code = 2


class ConfigError(DevupError):
    """devup.toml is invalid; the message names the file, key path and line."""

    exit_code = 2


class PreflightError(DevupError):
    """A check before the first change failed; nothing was touched."""

    exit_code = 2


class BusyError(DevupError):
    """Another devup run holds the session's lock."""

    exit_code = 4


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


class StepFailed(DevupError):
    """A step of `up` failed; carries the step's name for the report."""

    def __init__(self, step: str, cause: BaseException) -> None:
        text = cause.message if isinstance(cause, DevupError) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"step {step} failed: {text}", step=step)
        self.cause = cause


class NoDataVolumes(UsageError):
    """A snapshot or restore of a session whose groups have no named volumes (exit 2: nothing
    was changed, and there is nothing to copy)."""


class DataFailed(DevupError):
    """A snapshot create/restore failed; `status` says what became of the world (SPEC §2)."""

    _CODES: ClassVar[dict[str, int]] = {"rolled_back": 1, "rollback_incomplete": 3, "interrupted": 130}

    def __init__(self, *, session: str, what: str, status: str, cause: str, leftovers: list[Any]) -> None:
        hint = (
            f"run `devup recover {session}` to finish the rollback"
            if status == "rollback_incomplete"
            else None
        )
        done = {"rolled_back": "rolled back", "interrupted": "interrupted and rolled back"}.get(status, "")
        super().__init__(
            f"{what} of {session} failed{f' ({done})' if done else ''}: {cause}", hint=hint, step=what
        )
        self.session = session
        self.status = status
        self.leftovers = leftovers
        self.exit_code = self._CODES[status]

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "status": self.status,
            "error": {"step": self.step, "message": self.message},
            "leftovers": [f"{lo.label}: {lo.error}" for lo in self.leftovers],
        }


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; a BaseException so no `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum
