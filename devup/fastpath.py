"""`devup path NAME` and `devup exec NAME -- CMD`, answered before typer is even imported.

Agent tools call these in loops (`cd "$(devup path x)"`, `devup exec x -- npm test`), so their
start-up is most of their cost: typer's import and its command building are ~60 ms of a ~100 ms
run. The common case (a plain command line, an existing session, no interrupted run to finish)
is handled here on pure file reads; anything else (help, options, errors, a journal to recover)
returns None and goes to the full CLI, which renders it as every other command does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from devup.errors import DevupError
from devup.paths import NAME_RE


def run(argv: list[str]) -> int | None:
    """The exit code when `argv` was handled here; None when the full CLI must parse it."""
    if len(argv) == 2 and argv[0] == "path":
        name, command = argv[1], None
    elif len(argv) >= 3 and argv[0] == "exec":
        name, command = argv[1], argv[3:] if argv[2] == "--" else argv[2:]
        if not command or command[0].startswith("-"):
            return None
    else:
        return None
    if not NAME_RE.match(name):
        return None
    try:
        from devup.workspace import open_workspace

        ws = open_workspace(Path.cwd())
        if ws.repo.journal(name).exists():
            return None  # an interrupted run to finish first: the CLI does that, with a reporter
        record = ws.record(name)
    except DevupError:
        return None
    if record is None or not Path(record.worktree).is_dir():
        return None
    from devup import usage

    usage.touch(ws.repo, name)  # a use (SPEC §5.13), as the CLI's path and exec
    if command is None:
        sys.stdout.write(record.worktree + "\n")
        sys.stdout.flush()
        return 0
    from devup import remote, runner

    try:
        env = remote.engine_of(record).environ({**os.environ, **record.env})  # as the CLI's exec
        runner.replace_process(command, cwd=Path(record.worktree), env=env)
    except DevupError as exc:
        sys.stderr.write(f"error: {exc.message}\n" + (f"hint: {exc.hint}\n" if exc.hint else ""))
        return exc.exit_code
