"""The typer app: parses arguments, calls the core, renders; the only error boundary."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
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


def _workspace() -> Any:
    from devup.workspace import open_workspace

    return open_workspace(Path.cwd())


def _fail(exc: DevupError, *, as_json: bool, session: str | None = None, status: str = "error") -> NoReturn:
    from devup import output

    if as_json:
        output.emit_json(exc.to_json(session=session, status=status))
    output.error(exc.message, exc.hint)
    if exc.leftovers:
        output.err.print("left over (run `devup recover` to finish):")
        for lo in exc.leftovers:
            output.err.print(f"  - {lo.label}: {lo.error}", markup=False)
    raise typer.Exit(exc.exit_code)


def _guard(
    fn: Callable[[], T], *, as_json: bool = False, session: str | None = None, status: str = "error"
) -> T:
    """Map errors to messages and exit codes; an unexpected one gets a crash log.

    `status` is the JSON status of a failure that changed nothing (SPEC's vocabulary for `up`).
    """
    from devup.errors import Cancelled, Interrupted

    try:
        return fn()
    except DevupError as exc:
        _fail(exc, as_json=as_json, session=session, status=status)
    except Interrupted as exc:
        # Before a run's first step (preflight, a read): nothing to roll back; else the raiser
        # says what became of the world (a teardown part way, the rest of a recovery).
        said = exc.context or "nothing was changed"
        cancelled = Cancelled(f"interrupted by {signal.Signals(exc.signum).name}; {said}")
        _fail(cancelled, as_json=as_json, session=session, status="interrupted")
    except typer.Exit:
        raise
    except Exception as exc:
        from devup import crashlog, output

        output.error(*crashlog.describe(exc))
        raise typer.Exit(1) from None


def _session(name: str) -> tuple[Any, Any]:
    """The workspace and the record of session `name`, an interrupted run of it finished first."""
    from devup import recovery
    from devup.paths import check_session_name

    check_session_name(name)  # a bad name is exit 2 wherever devup runs, before the repository is looked for
    ws = _workspace()
    return ws, recovery.open_session(ws, name, _reporter(False))


def _reporter(as_json: bool) -> Any:
    from devup.output import ConsoleReporter

    return ConsoleReporter()


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

    reporter = _reporter(as_json)

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
        result = _guard(run, as_json=as_json, session=name, status="rolled_back")
    finally:
        reporter.close()
    doc = result.to_json()
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

    reporter = _reporter(as_json)
    outcome = _guard(lambda: teardown.stop(_workspace(), name, reporter), as_json=as_json, session=name)
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

    reporter = _reporter(as_json)

    def run() -> Any:
        from devup import attach

        ws = _workspace()
        chosen = attach.here_session(ws, Path.cwd(), name) if here else name
        if chosen is None:
            return teardown.Outcome(name or "", "absent", f"no session uses {Path.cwd()}: nothing to do")
        return teardown.down(ws, chosen, reporter, keep_worktree=keep_worktree, force=force)

    outcome = _guard(run, as_json=as_json, session=name)
    output.emit_json(outcome.to_json()) if as_json else output.plain(outcome.message)


def _existing(name: str) -> Any:
    """The record of session `name` for `path`/`exec`: a missing one is exit 2 (SPEC §2)."""
    return _session(name)[1]


@app.command()
def url(
    name: str,
    target: Annotated[
        str | None,
        typer.Argument(help="A compose service or native service (default: the first with a port)."),
    ] = None,
) -> None:
    """Print the session's hostname URL of TARGET, and nothing else."""
    from devup import inspect

    def read() -> str:
        return str(inspect.url_of(_session(name)[1], target))

    sys.stdout.write(_guard(read, session=name) + "\n")


@app.command()
def trust(
    remove: Annotated[
        bool, typer.Option("--remove", help="Take the authority out of the trust stores.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print the local authority's root and install it in this machine's trust stores."""
    from devup import output
    from devup import trust as trust_mod

    def run() -> Any:
        from devup.errors import DevupError

        ports = (20080, 20443)
        with contextlib.suppress(DevupError):  # outside a repository, or a config that does not validate
            routes = _workspace().config.routes
            ports = (routes.http_port, routes.https_port)
        return trust_mod.run(remove=remove, ports=ports)

    done = _guard(run, as_json=as_json)
    if as_json:
        output.emit_json(done.to_json())
        return
    output.plain(f"local authority root: {done.root}")
    if done.pem and not remove:
        sys.stdout.write(done.pem if done.pem.endswith("\n") else done.pem + "\n")
    for line in done.done:
        output.plain(line)


@app.command("path")
def path_(name: str) -> None:
    """Print the session's worktree path and nothing else (for `cd "$(devup path NAME)"`)."""
    record = _guard(lambda: _existing(name), session=name)
    sys.stdout.write(record.worktree + "\n")


@app.command(
    "exec",
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def exec_(
    name: str,
    command: Annotated[list[str], typer.Argument(help="CMD [ARGS...], after `--`.")],
) -> None:
    """Run CMD in the session's worktree with the session's variables; exit with CMD's code."""
    from devup import remote, runner

    def run() -> None:
        record = _existing(name)
        wt = Path(record.worktree)
        if not wt.is_dir():
            from devup.errors import UsageError

            raise UsageError(f"the worktree of session {name} ({wt}) no longer exists")
        # click keeps the `--` when options after NAME are passed through untouched.
        argv = command[1:] if command[:1] == ["--"] else command
        if not argv:
            from devup.errors import UsageError

            raise UsageError("missing CMD", hint=f"`devup exec {name} -- CMD [ARGS...]`")
        # CMD talks to the session's engine, as its hooks and services do (and as fastpath's exec).
        env = remote.engine_of(record).environ({**os.environ, **record.env})
        runner.replace_process(argv, cwd=wt, env=env)

    _guard(run, session=name)


snapshot_app = typer.Typer(help="Snapshots of sessions' data volumes (SPEC §7).", no_args_is_help=True)
app.add_typer(snapshot_app, name="snapshot")


@snapshot_app.command("create")
def snapshot_create(
    name: str,
    as_: Annotated[
        str | None, typer.Option("--as", help="Snapshot name (default NAME-<UTC yyyymmdd-hhmmss>).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy the session's data volumes into a snapshot (its containers paused for the copy)."""
    from devup import data, output

    reporter = _reporter(as_json)
    try:
        snap = _guard(lambda: data.create(_workspace(), name, as_, reporter), as_json=as_json, session=name)
    finally:
        reporter.close()
    if as_json:
        output.emit_json(snap.to_json())
    else:
        output.plain(f"snapshot {snap.name} of {name}: {len(snap.volumes)} volumes, {output.size(snap.size)}")


@snapshot_app.command("ls")
def snapshot_ls(as_json: JsonOpt = False) -> None:
    """This repository's snapshots: name, source session, created at, size, volumes."""
    from devup import data, output

    found = _guard(lambda: data.listing(_workspace()), as_json=as_json)
    docs = [s.to_json() for s in found]
    output.emit_json(docs) if as_json else output.snapshots_table(docs)


@snapshot_app.command("rm")
def snapshot_rm(snaps: Annotated[list[str], typer.Argument(help="Snapshot names.")]) -> None:
    """Delete snapshots; one that does not exist is noted (exit 0)."""
    from devup import data, output

    for snap, removed in _guard(lambda: data.remove(_workspace(), snaps, _reporter(False))):
        output.plain(f"snapshot {snap} removed" if removed else f"no snapshot named {snap}: nothing to do")


@snapshot_app.command("restore")
def snapshot_restore(name: str, snap: str, as_json: JsonOpt = False) -> None:
    """Replace the session's data with SNAP's; the data it had is kept as a snapshot first."""
    from devup import data, output

    reporter = _reporter(as_json)
    try:
        done = _guard(lambda: data.restore(_workspace(), name, snap, reporter), as_json=as_json, session=name)
    finally:
        reporter.close()
    if as_json:
        output.emit_json(done.to_json())
    else:
        output.plain(
            f"session {name} restored from {snap}; its previous data is kept as snapshot {done.kept.name}"
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

    reporter = _reporter(False)
    if event is ClaudeEvent.worktree_remove:
        message = _guard(lambda: claude_code.worktree_remove(claude_code.read_payload(), reporter))
        sys.stderr.write(message + "\n")
        return
    # Claude Code reads the worktree path from stdout: everything else devup or its children
    # print (hooks, compose, git) goes to stderr, the descriptor itself redirected.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        path = _guard(lambda: claude_code.worktree_create(claude_code.read_payload(), reporter))
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

    message = _guard(lambda: claude_code.integrate(_workspace().repo.root, _reporter(False), remove=remove))
    output.plain(message)


@app.command("ls")
def ls_(as_json: JsonOpt = False) -> None:
    """Every session of this repository."""
    from devup import inspect, output

    listing = _guard(lambda: inspect.ls(_workspace()), as_json=as_json)
    rows = [v.to_json() for v in listing.sessions]
    for problem in listing.problems:
        output.err.print(f"[yellow]warning:[/] {problem}")
    if as_json:
        output.emit_json(rows)  # SPEC §2's fields exactly; the engine is in the table and `status`
    else:
        engines = [inspect.engine_json(v.record) for v in listing.sessions]
        sources = [v.record.source for v in listing.sessions]
        output.sessions_table(
            [{**r, "engine": e, "source": src} for r, e, src in zip(rows, engines, sources, strict=True)]
        )


@app.command()
def status(name: str, as_json: JsonOpt = False) -> None:
    """Per group/service health; exit 0 when all healthy, 1 otherwise."""
    from devup import inspect, output

    found = _guard(
        lambda: inspect.status(_workspace(), name, _reporter(False)), as_json=as_json, session=name
    )
    units = [
        {"name": u.name, "kind": u.kind, "state": u.state, "healthy": u.healthy, "url": u.url}
        for u in found.units
    ]
    engine = inspect.engine_json(found.record)
    source = found.record.source or None
    if as_json:
        output.emit_json({**found.to_json(), "engine": engine, "source": source, "units": units})
    else:
        output.status_table(name, found.status, units, engine=engine, source=source)
    if found.changed:
        output.note(f"the config changed since session {name} came up: `devup up {name}` applies it")
    raise typer.Exit(0 if found.status == "up" else 1)


@app.command()
def env(
    name: str,
    fmt: Annotated[EnvFormat, typer.Option("--format", help="dotenv | shell | json.")] = EnvFormat.dotenv,
) -> None:
    """The session's variables: dotenv lines, `export` lines for eval, or one JSON object."""
    from devup import envvars

    def read() -> dict[str, str]:
        _, record = _session(name)
        return dict(record.env)

    values = _guard(read, session=name)
    render = {"dotenv": envvars.dotenv, "shell": envvars.shell, "json": envvars.as_json}[fmt.value]
    sys.stdout.write(render(values) + ("\n" if fmt is EnvFormat.json else ""))


@app.command()
def recover(
    name: Annotated[str | None, typer.Argument(help="Session (default: all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Finish rolling back interrupted runs."""
    from devup import output, teardown

    reporter = _reporter(as_json)
    outcomes = _guard(lambda: teardown.recover(_workspace(), name, reporter), as_json=as_json, session=name)
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


@app.command()
def doctor(as_json: JsonOpt = False) -> None:
    """Check git, the Docker engine and Compose v2; say how to fix what is missing."""
    from devup import doctor as doc_mod
    from devup import output

    checks = doc_mod.run()
    ok = all(c["ok"] for c in checks.values())
    contexts = _guard(doc_mod.contexts, as_json=as_json)
    if as_json:
        output.emit_json({"ok": ok, "checks": checks, "contexts": contexts})
    else:
        for name, c in checks.items():
            mark = "[green]✓[/]" if c["ok"] else "[red]✗[/]"
            output.out.print(f"{mark} {name:<8} {c['version'] or c['error']}")
            if not c["ok"]:
                output.out.print(f"   fix: {c['fix']}")
            for lack in c.get("lacks") or []:
                output.out.print(f"   [yellow]![/] {lack['what']}\n     fix: {lack['fix']}")
        output.contexts_table(contexts)
    raise typer.Exit(0 if ok else 1)


@app.command()
def logs(
    name: str,
    target: Annotated[str | None, typer.Argument(help="A group, group/service, or native service.")] = None,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines until Ctrl-C.")
    ] = False,
    lines: Annotated[
        int | None, typer.Option("-n", "--lines", help="Only the last N lines of each source.")
    ] = None,
) -> None:
    """Logs of compose services and native services, each line prefixed by its source."""
    from devup import logs as logs_mod
    from devup import output

    def run() -> None:
        ws, record = _session(name)
        logs_mod.show(ws, record, target, follow=follow, lines=lines, emit=output.log_line)

    def stop_following(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: Python makes it a KeyboardInterrupt only when it was not ignored at start, and a
    # process started from a background job (`cmd &` in a script, some CI runners) inherits it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop_following)  # ends like Ctrl-C: followers are terminated
    try:
        _guard(run, session=name)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command()
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Also remove orphan worktrees that hold uncommitted, untracked or ignored files."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove what devup created but no session owns."""
    from devup import fleet, output
    from devup import gc as gc_mod

    reporter = _reporter(as_json)

    def run() -> tuple[list[Any], list[Any]]:
        ws = _workspace()
        # Orphaned, expired and idle sessions first (SPEC §5.13): what they free is then no orphan.
        reaped = fleet.would_reap(ws) if dry_run else fleet.reap(ws, reporter)
        return reaped, gc_mod.run(ws, reporter, dry_run=dry_run, force=force)

    reaped, orphans = _guard(run, as_json=as_json)
    if as_json:
        output.emit_json(
            {
                "dry_run": dry_run,
                "reaped": [r.to_json() for r in reaped],
                "orphans": [o.to_json() for o in orphans],
            }
        )
    else:
        for r in reaped:
            output.plain(r.message)
        output.orphans(orphans, dry_run=dry_run)
    if any(o.error for o in orphans) or any(r.done == "failed" for r in reaped):
        raise typer.Exit(1)


@app.command()
def init(
    with_: Annotated[
        list[str] | None, typer.Option("--with", help="Templates: postgres,redis,mysql,mailpit,minio.")
    ] = None,
) -> None:
    """Write a starter devup.toml (and compose files from the bundled compose-templates)."""
    from devup import init as init_mod
    from devup import output

    names = [t.strip() for item in (with_ or []) for t in item.split(",") if t.strip()]
    root = _guard(lambda: _workspace().repo.root)
    written = _guard(lambda: init_mod.init(root, names))
    for path in written:
        output.plain(f"wrote {path}")
    # devup reads config and compose files from the session's branch: say so before `up` refuses.
    shown = " ".join(str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in written)
    output.plain(
        f"next: review them, then commit them (`git add {shown} && git commit -m 'devup'`), "
        "then `devup up NAME`"
    )


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
