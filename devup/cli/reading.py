"""Commands that read a session: ls, status, env, logs, url, path, exec (`path` and `exec` are
answered by fastpath.py first when they can be)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from devup.cli.app import (
    EnvFormat,
    JsonOpt,
    app,
    existing,
    guard,
    open_session,
    reporter_for,
    workspace,
)


@app.command("ls")
def ls_(as_json: JsonOpt = False) -> None:
    """Every session of this repository."""
    from devup import inspect, output

    listing = guard(lambda: inspect.ls(workspace()), as_json=as_json)
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

    found = guard(
        lambda: inspect.status(workspace(), name, reporter_for(False)), as_json=as_json, session=name
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
        _, record = open_session(name)
        return dict(record.env)

    values = guard(read, session=name)
    render = {"dotenv": envvars.dotenv, "shell": envvars.shell, "json": envvars.as_json}[fmt.value]
    sys.stdout.write(render(values) + ("\n" if fmt is EnvFormat.json else ""))


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
        ws, record = open_session(name)
        logs_mod.show(ws, record, target, follow=follow, lines=lines, emit=output.log_line)

    def stop_following(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: Python makes it a KeyboardInterrupt only when it was not ignored at start, and a
    # process started from a background job (`cmd &` in a script, some CI runners) inherits it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop_following)  # ends like Ctrl-C: followers are terminated
    try:
        guard(run, session=name)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


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
        return str(inspect.url_of(open_session(name)[1], target))

    sys.stdout.write(guard(read, session=name) + "\n")


@app.command("path")
def path_(name: str) -> None:
    """Print the session's worktree path and nothing else (for `cd "$(devup path NAME)"`)."""
    record = guard(lambda: existing(name), session=name)
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
        record = existing(name)
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

    guard(run, session=name)
