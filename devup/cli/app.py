"""The typer app and what its commands share: the options, the workspace, the error guard."""

from __future__ import annotations

import signal
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from devup import __version__
from devup.errors import DevupError

app = typer.Typer(
    name="devup",
    help="One isolated, running dev environment per branch, removed without leftovers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # typer's rich help pulls in markdown-it and rich.pretty: +0.15 s per start
    context_settings={"help_option_names": ["-h", "--help"]},
)
T = TypeVar("T")
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout; progress goes to stderr.")
]


class ModeOpt(str, Enum):
    container = "container"
    hybrid = "hybrid"
    host = "host"


class OnFailure(str, Enum):
    rollback = "rollback"
    keep = "keep"


class EnvFormat(str, Enum):
    dotenv = "dotenv"
    shell = "shell"
    json = "json"


def _version(value: bool) -> None:
    if value:
        print(f"devup {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """devup: one isolated, running dev environment per branch."""


def workspace() -> Any:
    from devup.workspace import open_workspace

    return open_workspace(Path.cwd())


def fail(exc: DevupError, *, as_json: bool, session: str | None = None, status: str = "error") -> NoReturn:
    from devup import output

    if as_json:
        output.emit_json(exc.to_json(session=session, status=status))
    output.error(exc.message, exc.hint)
    if exc.leftovers:
        output.err.print("left over (run `devup recover` to finish):")
        for lo in exc.leftovers:
            output.err.print(f"  - {lo.label}: {lo.error}", markup=False)
    raise typer.Exit(exc.exit_code)


def guard(
    fn: Callable[[], T], *, as_json: bool = False, session: str | None = None, status: str = "error"
) -> T:
    """Map errors to messages and exit codes; an unexpected one gets a crash log.

    `status` is the JSON status of a failure that changed nothing (SPEC's vocabulary for `up`).
    """
    from devup.errors import Cancelled, Interrupted

    try:
        return fn()
    except DevupError as exc:
        fail(exc, as_json=as_json, session=session, status=status)
    except Interrupted as exc:
        # Before a run's first step (preflight, a read): nothing to roll back; else the raiser
        # says what became of the world (a teardown part way, the rest of a recovery).
        said = exc.context or "nothing was changed"
        cancelled = Cancelled(f"interrupted by {signal.Signals(exc.signum).name}; {said}")
        fail(cancelled, as_json=as_json, session=session, status="interrupted")
    except typer.Exit:
        raise
    except Exception as exc:
        from devup import crashlog, output

        output.error(*crashlog.describe(exc))
        raise typer.Exit(1) from None


def open_session(name: str) -> tuple[Any, Any]:
    """The workspace and the record of session `name`, an interrupted run of it finished first."""
    from devup import recovery
    from devup.paths import check_session_name

    check_session_name(name)  # a bad name is exit 2 wherever devup runs, before the repository is looked for
    ws = workspace()
    return ws, recovery.open_session(ws, name, reporter_for(False))


def reporter_for(as_json: bool) -> Any:
    from devup.output import ConsoleReporter

    return ConsoleReporter()


def existing(name: str) -> Any:
    """The record of session `name` for `path`/`exec`: a missing one is exit 2 (SPEC §2)."""
    return open_session(name)[1]
