"""Commands about the machine and the repository: trust, doctor, gc, init."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Any

import typer

from devup.cli.app import (
    JsonOpt,
    app,
    guard,
    reporter_for,
    workspace,
)


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
            routes = workspace().config.routes
            ports = (routes.http_port, routes.https_port)
        return trust_mod.run(remove=remove, ports=ports)

    done = guard(run, as_json=as_json)
    if as_json:
        output.emit_json(done.to_json())
        return
    output.plain(f"local authority root: {done.root}")
    if done.pem and not remove:
        sys.stdout.write(done.pem if done.pem.endswith("\n") else done.pem + "\n")
    for line in done.done:
        output.plain(line)


@app.command()
def doctor(as_json: JsonOpt = False) -> None:
    """Check git, the Docker engine and Compose v2; say how to fix what is missing."""
    from devup import doctor as doc_mod
    from devup import output

    checks = doc_mod.run()
    ok = all(c["ok"] for c in checks.values())
    contexts = guard(doc_mod.contexts, as_json=as_json)
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

    reporter = reporter_for(as_json)

    def run() -> tuple[list[Any], list[Any]]:
        ws = workspace()
        # Orphaned, expired and idle sessions first (SPEC §5.13): what they free is then no orphan.
        reaped = fleet.would_reap(ws) if dry_run else fleet.reap(ws, reporter)
        return reaped, gc_mod.run(ws, reporter, dry_run=dry_run, force=force)

    reaped, orphans = guard(run, as_json=as_json)
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
    root = guard(lambda: workspace().repo.root)
    written = guard(lambda: init_mod.init(root, names))
    for path in written:
        output.plain(f"wrote {path}")
    # devup reads config and compose files from the session's branch: say so before `up` refuses.
    shown = " ".join(str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in written)
    output.plain(
        f"next: review them, then commit them (`git add {shown} && git commit -m 'devup'`), "
        "then `devup up NAME`"
    )
