"""The command line: the typer app (app.py), its commands by what they do (lifecycle.py, reading.py,
data.py, agents.py, upkeep.py), and `main`, the only error boundary."""

from __future__ import annotations

import contextlib
import os
import sys

# Each module registers its commands on the app as it is imported: `--help` lists the commands
# in that order (lifecycle, reading, upkeep), then the command groups (hook, integrate, snapshot).
from devup.cli import agents, data, lifecycle, reading, upkeep  # noqa: F401
from devup.cli.app import app


def main() -> None:
    """The one boundary around every command: SIGINT/SIGTERM anywhere is Interrupted (children
    stopped first), and whatever escapes a command's own handling is exit 130 for an interrupt
    and exit 1 with a crash log for anything else: never a traceback (SPEC §2)."""
    from devup import runner
    from devup.errors import Interrupted
    from devup.output import make_streams_tolerant

    make_streams_tolerant()
    os.environ.setdefault("COMPOSE_STATUS_STDOUT", "0")
    try:
        with runner.interruptible():
            app()
    except (Interrupted, KeyboardInterrupt):
        _last_words("devup: interrupted\n")
        sys.exit(130)
    except Exception as exc:  # typer.Exit and SystemExit are no Exception of this kind
        from devup import crashlog

        message, hint = crashlog.describe(exc)
        _last_words(f"devup: {message}; {hint}\n")
        sys.exit(1)


def _last_words(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text)
        sys.stderr.flush()
