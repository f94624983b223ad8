"""Preflight's refusal of local bind mounts on a remote engine (SPEC §6).

A bind mount's source is a path on the machine the engine runs on. For a local engine that is
this machine; for a remote one, a path of this machine (the worktree, the checkout, the home
folder) names an empty or unrelated folder there, which the engine would create and mount
silently. Absolute paths elsewhere (say /var/run/docker.sock) name the engine machine's own
files and are let through.
"""

from __future__ import annotations

from pathlib import Path

from devup.compose import GroupModel
from devup.errors import PreflightError


def refuse_local_binds(
    *,
    models: dict[str, GroupModel],
    read_from: Path,
    project_dirs: dict[str, Path],
    local_roots: list[Path],
    engine_label: str,
) -> None:
    """Exit 2 naming group, service and path for the first bind of a local path.

    `read_from` is where compose read the files (the worktree, or preflight's copy of the
    branch) and `project_dirs` each group's compose project directory, against which compose
    resolved relative sources: they are shown relative to it again, as written.
    """
    base = read_from.resolve()
    roots = [base, *(r.resolve() for r in local_roots)]
    for group, model in models.items():
        for service, sources in model.binds.items():
            for source in sources:
                path = Path(source)
                if not any(path == r or r in path.parents for r in roots):
                    continue
                shown = source
                if path == base or base in path.parents:
                    shown = f"./{path.relative_to(base)} in the worktree"
                    project = project_dirs.get(group, read_from).resolve()
                    if path == project or project in path.parents:
                        shown = f"./{path.relative_to(project)} ({shown})".replace("/. ", " ")
                raise PreflightError(
                    f"group {group}: service {service} bind-mounts the local path {shown} into a "
                    f"container on the remote engine {engine_label}: there it would mount an empty "
                    "folder of that machine",
                    hint="use a named volume (copy data in with `docker cp` or an init container), "
                    "or bake the files into the image; or run this session on a local engine",
                )


def refuse_host_volumes(*, models: dict[str, GroupModel], engine_label: str) -> None:
    """Exit 2 naming group, service, volume and path for the first named volume a service
    mounts whose `driver_opts` bind a host path (hostile-input new-M6): on a remote engine that
    path is one of the engine's machine, which devup can neither check nor make per session."""
    for group, model in models.items():
        for service, keys in model.volume_mounts.items():
            for key in keys:
                path = model.host_volumes.get(key)
                if path is None:
                    continue
                raise PreflightError(
                    f"group {group}: service {service} mounts volume {key}, whose driver_opts bind "
                    f"the host path {path}: on the remote engine {engine_label} that is a folder of "
                    "that machine, shared by every session",
                    hint="use a plain named volume, or declare it `external: true` and create it on "
                    "that engine yourself (sessions then share it); or run this session on a local engine",
                )
