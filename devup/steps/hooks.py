"""Lifecycle hooks: shell commands with the session's environment and an optional undo."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devup import processes, runner
from devup.errors import CommandFailed, NotUndoable
from devup.hookspec import Hook
from devup.model import Identity
from devup.undo import UndoRecord, UndoStack, inverse

if TYPE_CHECKING:
    from devup.remote import Engine

DEFAULT_TIMEOUT = 600.0


def run(*, stack: UndoStack, ident: Identity, hook: Hook, cwd: Path, env: Mapping[str, str]) -> None:
    """A hook as a step of `up`: its commands in order, the first non-zero exit failing the step
    at once, with what it leaves running and its `undo` on the stack."""
    # Write-ahead: if devup is killed mid-hook, recovery stops what the hook left running.
    # The guard stays on the stack after the hook succeeds: a background process it
    # started is something this run created, which a later rollback must stop (§5.1).
    stack.push(
        UndoRecord(
            "processes_kill",
            {"repo_id": ident.repo.repo_id, "session": ident.session, "unit": f"hook:{hook.name}"},
            f"processes of hook {hook.name}",
        )
    )
    run_commands(ident=ident, hook=hook, cwd=cwd, env=env)
    if hook.undo:
        stack.push(
            UndoRecord(
                "hook_undo",
                {
                    "name": hook.name,
                    "command": hook.undo,
                    "cwd": str(cwd),
                    # The whole environment the hook ran with: `recover` may run from another
                    # shell (or a cron job) that lacks what the undo needs. The journal is 0600
                    # and removed when the run ends.
                    "env": {**env, **ident.tags(f"hook:{hook.name}:undo")},
                    "timeout": hook.timeout,
                },
                f"undo of hook {hook.name} (`{hook.undo}`)",
            )
        )


def run_commands(*, ident: Identity, hook: Hook, cwd: Path, env: Mapping[str, str]) -> None:
    """The hook's commands in order, tagged as the session's, with nothing journaled: for the
    hooks of a teardown (pre_down, post_down), which nothing undoes."""
    for command in hook.commands:
        execute(
            command=command,
            name=hook.name,
            cwd=cwd,
            env={**env, **ident.tags(f"hook:{hook.name}")},
            timeout=hook.timeout,
        )


def execute(*, command: str, name: str, cwd: Path, env: Mapping[str, str], timeout: float | None) -> None:
    result = runner.run_bounded(["sh", "-c", command], cwd=cwd, env=env, timeout=timeout or DEFAULT_TIMEOUT)
    if not result.ok:
        raise CommandFailed(
            command=command,
            returncode=result.returncode,
            output_tail=result.tail(),
            what=f"hook {name}",
        )


@inverse("hook_undo")
def undo(args: dict[str, Any], _engine: Engine) -> None:
    """Run a hook's `undo` command in the hook's own folder; it runs even if the hook's work is
    already gone. When the folder is gone, it never runs elsewhere (SPEC §5.14): an undo is
    typically relative (`rm -rf tmp/seed`, `make unseed`), and in `/` or the main checkout it
    would act on what the session never made (hostile-input new-M2). It is a leftover instead."""
    cwd = Path(args["cwd"])
    if not cwd.is_dir():
        raise NotUndoable(
            f"not run: its folder {cwd} is gone, and devup runs an undo only in its own folder; "
            f"unless it ran before the folder went, run `{args['command']}` yourself where it belongs"
        )
    execute(
        command=args["command"],
        name=f"{args['name']} undo",
        cwd=cwd,
        env={**os.environ, **args["env"]},
        timeout=args.get("timeout"),
    )


@inverse("processes_kill")
def undo_processes(args: dict[str, Any], _engine: Engine) -> None:
    """Stop every process that carries this session's and unit's tags; none left is success."""
    processes.kill_tagged(repo_id=args["repo_id"], session=args["session"], unit=args["unit"])
