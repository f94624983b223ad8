"""`devup snapshot`: create, ls, rm, restore (SPEC §7)."""

from __future__ import annotations

from typing import Annotated

import typer

from devup.cli.app import (
    JsonOpt,
    app,
    guard,
    reporter_for,
    workspace,
)

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

    reporter = reporter_for(as_json)
    try:
        snap = guard(lambda: data.create(workspace(), name, as_, reporter), as_json=as_json, session=name)
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

    found = guard(lambda: data.listing(workspace()), as_json=as_json)
    docs = [s.to_json() for s in found]
    output.emit_json(docs) if as_json else output.snapshots_table(docs)


@snapshot_app.command("rm")
def snapshot_rm(snaps: Annotated[list[str], typer.Argument(help="Snapshot names.")]) -> None:
    """Delete snapshots; one that does not exist is noted (exit 0)."""
    from devup import data, output

    for snap, removed in guard(lambda: data.remove(workspace(), snaps, reporter_for(False))):
        output.plain(f"snapshot {snap} removed" if removed else f"no snapshot named {snap}: nothing to do")


@snapshot_app.command("restore")
def snapshot_restore(name: str, snap: str, as_json: JsonOpt = False) -> None:
    """Replace the session's data with SNAP's; the data it had is kept as a snapshot first."""
    from devup import data, output

    reporter = reporter_for(as_json)
    try:
        done = guard(lambda: data.restore(workspace(), name, snap, reporter), as_json=as_json, session=name)
    finally:
        reporter.close()
    if as_json:
        output.emit_json(done.to_json())
    else:
        output.plain(
            f"session {name} restored from {snap}; its previous data is kept as snapshot {done.kept.name}"
        )
