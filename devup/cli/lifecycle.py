"""Commands that change a session: up (and --dry-run), stop, down, recover."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from devup.cli.app import (
    JsonOpt,
    ModeOpt,
    OnFailure,
    app,
    guard,
    reporter_for,
    workspace,
)


@app.command()
def up(
    name: Annotated[
        str | None,
        typer.Argument(help="Session name (with --here/--worktree: default the branch, slugified)."),
    ] = None,
    branch: Annotated[str | None, typer.Option(help="Branch to check out (default: NAME).")] = None,
    base: Annotated[str | None, typer.Option(help="Start point of a new branch.")] = None,
    mode: Annotated[ModeOpt | None, typer.Option(help="container | hybrid | host.")] = None,
    on_failure: Annotated[
        OnFailure, typer.Option("--on-failure", help="rollback (default) or keep for debugging.")
    ] = OnFailure.rollback,
    no_hooks: Annotated[bool, typer.Option("--no-hooks", help="Skip lifecycle hooks.")] = False,
    here: Annotated[
        bool,
        typer.Option(
            "--here", help="Attach to the worktree of the current directory (made by another tool)."
        ),
    ] = False,
    worktree_path: Annotated[
        Path | None, typer.Option("--worktree", help="Attach to this existing worktree of the repository.")
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context", help="Docker context to run a new session's groups on (another machine's engine)."
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from", help="A new session whose data volumes start as copies of this session's or snapshot's."
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print what up would do (create, recreate, restart...); change nothing."
        ),
    ] = False,
    ttl: Annotated[
        str | None,
        typer.Option(
            "--ttl", help="Expire DURATION after the last use (30m, 4h, 7d); default [limits].expire."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create or resume session NAME; exit 0 means everything is up and ready."""
    from devup import output, session

    reporter = reporter_for(as_json)

    def run() -> Any:
        from devup import attach, usage
        from devup.errors import UsageError

        try:
            seconds = None if ttl is None else usage.parse_duration(ttl)
        except ValueError as exc:
            raise UsageError(f"--ttl: {exc}") from None
        ws = attach.workspace_for(Path.cwd(), worktree_path)
        attach_to, chosen = attach.choose(
            ws, name=name, here=here, path=worktree_path, branch=branch, base=base, reporter=reporter
        )
        req = session.UpRequest(
            name=chosen,
            branch=branch if attach_to is None else attach_to.branch,
            base=base,
            mode=mode.value if mode else None,
            on_failure=on_failure.value,
            hooks=not no_hooks,
            attach=attach_to.path if attach_to is not None else None,
            context=context,
            source=source,
            ttl=seconds,
            dry_run=dry_run,
        )
        return session.dry_run(ws, req) if dry_run else session.up(ws, req, reporter)

    try:
        # A failure before any change (exit 2, 4) left nothing behind: "rolled_back" in SPEC's terms.
        result = guard(run, as_json=as_json, session=name, status="rolled_back")
    finally:
        reporter.close()
    doc = result.to_json()
    for text in result.notes if isinstance(result, session.DryRun) else ():
        output.note(text)
    if as_json:
        output.emit_json(doc)
    elif isinstance(result, session.DryRun):
        output.changes_table(doc)
    else:
        output.up_summary(doc, result.record, result.noop)


@app.command()
def stop(name: str, as_json: JsonOpt = False) -> None:
    """Stop the session's containers and processes; keep worktree, volumes and ports."""
    from devup import output, teardown

    reporter = reporter_for(as_json)
    outcome = guard(lambda: teardown.stop(workspace(), name, reporter), as_json=as_json, session=name)
    output.emit_json(outcome.to_json()) if as_json else output.plain(outcome.message)


@app.command()
def down(
    name: Annotated[
        str | None, typer.Argument(help="Session name (with --here: the current worktree's).")
    ] = None,
    keep_worktree: Annotated[
        bool, typer.Option("--keep-worktree", help="Leave the worktree in place.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Remove the worktree even with uncommitted changes.")
    ] = False,
    here: Annotated[bool, typer.Option("--here", help="The session of the current worktree.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove the session: processes, containers, networks, volumes, leases, record, worktree."""
    from devup import output, teardown

    reporter = reporter_for(as_json)

    def run() -> Any:
        from devup import attach

        ws = workspace()
        chosen = attach.here_session(ws, Path.cwd(), name) if here else name
        if chosen is None:
            return teardown.Outcome(name or "", "absent", f"no session uses {Path.cwd()}: nothing to do")
        return teardown.down(ws, chosen, reporter, keep_worktree=keep_worktree, force=force)

    outcome = guard(run, as_json=as_json, session=name)
    output.emit_json(outcome.to_json()) if as_json else output.plain(outcome.message)


@app.command()
def recover(
    name: Annotated[str | None, typer.Argument(help="Session (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Finish rolling back interrupted runs."""
    from devup import output, teardown

    reporter = reporter_for(as_json)
    outcomes = guard(lambda: teardown.recover(workspace(), name, reporter), as_json=as_json, session=name)
    if as_json:
        output.emit_json([o.to_json() for o in outcomes])
    else:
        for o in outcomes or []:
            output.plain(o.message)
        if not outcomes:
            output.plain("nothing to recover")
    if any(o.status in ("rollback_incomplete", "error") for o in outcomes):
        from devup.errors import RecoverIncomplete

        raise typer.Exit(RecoverIncomplete.exit_code)
