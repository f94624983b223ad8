"""Preflight: every check `up` makes before its first change; a failure here is exit 2."""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devup import compose, envvars, git, mounts, remote, state
from devup.config import Config, GroupCfg, Mode, ServiceCfg
from devup.errors import DevupError, PreflightError, UsageError
from devup.model import Identity
from devup.steps import files, worktree
from devup.workspace import Workspace


@dataclass
class Plan:
    """Everything preflight decided, before the first change."""

    ident: Identity
    branch: str
    mode: Mode
    resumed: bool
    wt: worktree.WorktreePlan
    groups: dict[str, GroupCfg]
    services: dict[str, ServiceCfg]
    models: dict[str, compose.GroupModel]
    lease_keys: list[str]  # one lease each
    aliases: dict[str, str]  # SERVICE -> SERVICE_TARGET of its first published port
    previous: state.SessionRecord | None


def plan(
    ws: Workspace,
    cfg: Config,
    *,
    name: str,
    branch: str | None,
    base: str | None,
    mode: Mode | None,
    previous: state.SessionRecord | None,
    engine: remote.Engine | None = None,
) -> Plan:
    """Decide everything `up` will do, checking it all before the first change (exit 2)."""
    if previous is not None:
        if branch not in (None, previous.branch):
            raise UsageError(f"session {name} is on branch {previous.branch}, not {branch}")
        if mode not in (None, previous.mode):
            raise UsageError(
                f"session {name} runs in {previous.mode} mode",
                hint=f"`devup down {name}` first to change its mode",
            )
    branch = previous.branch if previous else (branch or name)
    mode = previous.mode if previous else (mode or cfg.project.mode)  # type: ignore[assignment]
    assert mode is not None
    ident = Identity(repo=ws.repo, session=name, project=ws.project)
    groups, services = cfg.groups_for(mode), cfg.services_for(mode)
    if groups:
        compose.compose_command()
        _engine_answers(engine)
    path = Path(previous.worktree) if previous else ws.worktrees_dir / name
    start = base or cfg.project.base or "HEAD"
    wt = worktree.plan(root=ws.repo.root, path=path, branch=branch, base=start)
    engine = engine or remote.Engine(None, remote.DEFAULT_HOST)
    models = compose_models(ws, cfg, ident, groups, wt, mode, engine=engine) if groups else {}
    lease_keys, aliases = port_keys(models, services)
    return Plan(
        ident,
        branch,
        mode,
        previous is not None,
        wt,
        groups,
        services,
        models,
        lease_keys,
        aliases,
        previous,
    )


def _engine_answers(engine: remote.Engine | None) -> None:
    """The engine answers; a remote one that does not is named, with how to check it."""
    try:
        compose.engine_version()
    except compose.EngineUnavailable as exc:
        if engine is None or not engine.remote:
            raise
        check = (
            f"docker --context {engine.context} info" if engine.context else f"docker -H {engine.host} info"
        )
        from devup import sshproxy

        said = sshproxy.errors(engine.host)
        raise compose.EngineUnavailable(
            f"the remote Docker engine {engine.label} does not answer: "
            + exc.message.removeprefix("the Docker engine does not answer: ")
            + (f"\nssh said:\n{said}" if said else ""),
            hint=f"check that the machine is up and reachable (`{check}`); `devup doctor` lists every context",
        ) from None


def compose_models(
    ws: Workspace,
    cfg: Config,
    ident: Identity,
    groups: dict[str, GroupCfg],
    wt: worktree.WorktreePlan,
    mode: Mode,
    *,
    engine: remote.Engine,
) -> dict[str, compose.GroupModel]:
    """Validate every group's files with `docker compose config`, from the branch's own files."""
    env = {
        **os.environ,
        **envvars.session_vars(
            session=ident.session,
            project=ident.project,
            branch=wt.branch,
            worktree=str(wt.path),
            repo=str(ws.repo.root),
            mode=mode,
            resumed=wt.exists,
            ports={},
            extra=cfg.env,
            host=engine.address,
        ),
    }
    with contextlib.ExitStack() as cleanup:
        if wt.exists:
            where = wt.path
        else:
            # The worktree does not exist yet: read the files as they are on the branch.
            where = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="devup-preflight-")))
            commit = wt.new_from or git.rev(ws.repo.root, f"refs/heads/{wt.branch}") or "HEAD"
            dirs = sorted(
                {
                    str(Path(f).parent) if str(Path(f).parent) != "." else f
                    for g in groups.values()
                    for f in g.files
                }
            )
            try:
                git.extract(ws.repo.root, commit, dirs, where)
            except DevupError:
                raise PreflightError(
                    f"the compose files of {', '.join(groups)} ({', '.join(dirs)}) are not on branch {wt.branch}",
                    hint="devup reads compose files from the session's branch, never from the main "
                    "checkout's working tree: commit them first",
                ) from None
            files.copy_into(source_root=ws.repo.root, worktree=where, patterns=cfg.worktree.copy_)
        models: dict[str, compose.GroupModel] = {}
        for gname, gcfg in groups.items():
            missing = [f for f in gcfg.files if not (where / f).is_file()]
            if missing:
                raise PreflightError(
                    f"group {gname}: compose file {missing[0]} not found on branch {wt.branch}"
                )
            try:
                model = compose.load_model(
                    project=ident.compose_project(gname),
                    files=[where / f for f in gcfg.files],
                    cwd=where,
                    env=env,
                )
            except DevupError as exc:
                raise PreflightError(f"group {gname}: invalid compose files: {exc.message}") from None
            for svc, cname in model.container_names.items():
                raise PreflightError(
                    f"group {gname}: service {svc} sets container_name {cname!r}",
                    hint="remove container_name: a fixed name cannot exist once per session",
                )
            project = ident.compose_project(gname)
            foreign = compose.foreign_objects(
                project=project,
                volume_names=[f"{project}_{v}" for v in model.volumes],
                session=ident.session,
                repo_id=ident.repo.repo_id,
            )
            if foreign:
                raise PreflightError(
                    f"group {gname}: compose project {project} already has {', '.join(foreign)}, "
                    "which devup did not create for this session; devup will not touch them",
                    hint=f"remove them yourself (e.g. `docker compose -p {project} down`) or pick another session name",
                )
            models[gname] = model
        if engine.remote:
            mounts.refuse_local_binds(
                models=models,
                read_from=where,
                project_dirs={g: where / Path(c.files[0]).parent for g, c in groups.items()},
                local_roots=[wt.path, ws.repo.root, Path.home()],
                engine_label=engine.label,
            )
        return models


def port_keys(
    models: dict[str, compose.GroupModel], services: dict[str, ServiceCfg]
) -> tuple[list[str], dict[str, str]]:
    lease: list[str] = []
    aliases: dict[str, str] = {}
    owner: dict[str, str] = {}

    def claim(key: str, who: str) -> None:
        if key in owner and owner[key] != who:
            raise PreflightError(
                f"port variable DEVUP_PORT_{key} would belong to both {owner[key]} and {who}"
            )
        owner[key] = who

    for gname, model in models.items():
        for svc, specs in model.services.items():
            for key, target in compose.port_keys(svc, specs):
                full = f"{svc.upper().replace('-', '_')}_{target}"
                claim(key, f"{gname}/{svc}")
                if key == full:
                    if key not in lease:
                        lease.append(key)
                else:
                    aliases[key] = full
    for sname, scfg in services.items():
        if scfg.port:
            key = sname.upper().replace("-", "_")
            claim(key, f"service {sname}")
            lease.append(key)
    return lease, aliases
