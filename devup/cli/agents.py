"""`devup hook` and `devup integrate`: what other tools (Claude Code) call."""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Annotated

import typer

from devup.cli.app import (
    app,
    guard,
    reporter_for,
    workspace,
)

hook_app = typer.Typer(help="Handlers that other tools call as their hooks.", no_args_is_help=True)
integrate_app = typer.Typer(help="Register devup as another tool's setup and teardown.", no_args_is_help=True)
app.add_typer(hook_app, name="hook")
app.add_typer(integrate_app, name="integrate")


class ClaudeEvent(str, Enum):
    worktree_create = "worktree-create"
    worktree_remove = "worktree-remove"


@hook_app.command("claude-code")
def hook_claude_code(
    event: Annotated[ClaudeEvent, typer.Argument(help="worktree-create | worktree-remove.")],
) -> None:
    """Claude Code's WorktreeCreate/WorktreeRemove hook: payload on stdin; create prints the path."""
    from devup import claude_code

    reporter = reporter_for(False)
    if event is ClaudeEvent.worktree_remove:
        message = guard(lambda: claude_code.worktree_remove(claude_code.read_payload(), reporter))
        sys.stderr.write(message + "\n")
        return
    # Claude Code reads the worktree path from stdout: everything else devup or its children
    # print (hooks, compose, git) goes to stderr, the descriptor itself redirected.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        path = guard(lambda: claude_code.worktree_create(claude_code.read_payload(), reporter))
    finally:
        reporter.close()
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    sys.stdout.write(f"{path}\n")
    sys.stdout.flush()


@integrate_app.command("claude-code")
def integrate_claude_code(
    remove: Annotated[bool, typer.Option("--remove", help="Take devup's hooks out again.")] = False,
) -> None:
    """Add devup as the WorktreeCreate/WorktreeRemove hooks in .claude/settings.json."""
    from devup import claude_code, output

    message = guard(lambda: claude_code.integrate(workspace().repo.root, reporter_for(False), remove=remove))
    output.plain(message)
