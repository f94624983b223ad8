"""Preflight: every check `up` makes before its first change; a failure here is exit 2."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devup import compose, compose_inputs, envvars, git, mounts, remote
from devup.config import Config, GroupCfg, Mode, ServiceCfg
from devup.engine.http import engine_version, podman_version
from devup.engine.removal import foreign_objects
from devup.envvars import port_key
from devup.errors import DevupError, EngineUnavailable, PreflightError, UsageError
from devup.model import Identity
from devup.records import SessionRecord
from devup.steps import files, worktree
from devup.workspace import Workspace

if TYPE_CHECKING:
    from devup.compose_model import EngineGap, Refusal


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
    previous: SessionRecord | None
    # group -> compose project: a recorded group keeps its recorded project (older devup
    # versions named them differently), a new one gets Identity.compose_project's name.
    projects: dict[str, str] = field(default_factory=dict)

    def variables(
        self,
        *,
        repo: Path,
        ports: Mapping[str, int],
        extra: Mapping[str, str],
        host: str,
        urls: Mapping[str, str] | None,
    ) -> dict[str, str]:
        """The session's variables (SPEC §4), with these ports and hostname URLs."""
        return envvars.session_vars(
            session=self.ident.session,
            project=self.ident.project,
            branch=self.branch,
            worktree=str(self.wt.path),
            repo=str(repo),
            mode=self.mode,
            resumed=self.resumed,
            ports=ports,
            extra=extra,
            host=host,
            urls=urls,
        )


def plan(
    ws: Workspace,
    cfg: Config,
    *,
    name: str,
    branch: str | None,
    base: str | None,
    mode: Mode | None,
    previous: SessionRecord | None,
    attach: Path | None = None,
    engine: remote.Engine,
) -> Plan:
    """Decide everything `up` will do, checking it all before the first change (exit 2)."""
    if attach is not None and previous is not None and Path(previous.worktree).resolve() != attach.resolve():
        raise UsageError(
            f"session {name} already exists with worktree {previous.worktree}, not {attach}",
            hint="pass another NAME, or `devup down` that session first",
        )
    if previous is not None and branch not in (None, previous.branch):
        raise UsageError(f"session {name} is on branch {previous.branch}, not {branch}")
    branch = previous.branch if previous else (branch or name)
    mode = mode or (_mode_now(cfg, previous) if previous else cfg.project.mode)
    ident = Identity(repo=ws.repo, session=name, project=ws.project)
    groups, services = cfg.groups_for(mode), cfg.services_for(mode)
    if groups:
        compose.compose_command()
        _engine_answers(engine)
    path = Path(previous.worktree) if previous else (attach or _worktrees_folder(ws) / name)
    start = base or cfg.project.base or "HEAD"
    wt = worktree.plan(root=ws.repo.root, path=path, branch=branch, base=start)
    _check_env_file(ws, cfg, ident, wt, mode)
    _check_env_file_ignored(ws, wt)
    if attach is not None and previous is None:
        _check_env_file_is_not_theirs(wt.path)
    if not wt.exists and cfg.worktree.copy_:
        commit = wt.new_from or git.rev(ws.repo.root, f"refs/heads/{wt.branch}") or "HEAD"
        files.check_branch_paths(root=ws.repo.root, commit=commit, patterns=cfg.worktree.copy_)
    recorded = {g.name: g.project for g in previous.groups} if previous else {}
    projects = {g: recorded.get(g) or ident.compose_project(g) for g in groups}
    models = compose_models(ws, cfg, ident, groups, wt, mode, projects, engine=engine) if groups else {}
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
        projects,
    )


def _mode_now(cfg: Config, previous: SessionRecord) -> Mode:
    """An existing session's mode when `--mode` is not given: the one it runs in, unless
    devup.toml's own mode changed since it came up (SPEC §5.12: an edit is applied)."""
    was = previous.inputs.get("config_mode")
    return cfg.project.mode if was is not None and was != cfg.project.mode else previous.mode  # type: ignore[return-value]


# Folders the OS and its packages own: session worktrees (and `down` removing them) never go there.
_SYSTEM_FOLDERS = tuple(
    Path(p)
    for p in (
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/proc",
        "/run",
        "/sbin",
        "/sys",
        "/usr",
    )
)


def _worktrees_folder(ws: Workspace) -> Path:
    """[project].worktrees, checked: a folder (or none yet), never a file or the filesystem root."""
    folder = ws.worktrees_dir
    where = f"{ws.repo.root / 'devup.toml'}: project.worktrees"
    if folder == Path(folder.anchor) or folder == ws.repo.root or folder == ws.repo.common_dir:
        raise PreflightError(
            f"{where}: {folder} cannot hold session worktrees",
            hint='point it at a folder of its own, e.g. worktrees = "../myapp-worktrees"',
        )
    system = next((s for s in _SYSTEM_FOLDERS if folder == s or s in folder.parents), None)
    if system is not None and (folder == system or system not in ws.repo.root.parents):
        # A checkout kept in /usr/src may have its worktrees beside it; /etc/x may not.
        raise PreflightError(
            f"{where}: {folder} is {'' if folder == system else f'inside {system}, '}a folder of the operating system",
            hint='point it at a folder of its own, e.g. worktrees = "../myapp-worktrees"',
        )
    if folder.exists() and not folder.is_dir():
        raise PreflightError(
            f"{where}: {folder} is a file, not a folder",
            hint='point it at a folder of its own, e.g. worktrees = "../myapp-worktrees"',
        )
    return folder


def _check_env_file_ignored(ws: Workspace, wt: worktree.WorktreePlan) -> None:
    """The branch's .gitignore must not un-ignore the env file (exit 2): it holds the session's
    variables, and `git add -A` would stage them."""
    from devup.paths import ENV_FILE

    if wt.exists:
        path = wt.path / ".gitignore"
        text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
    else:
        commit = wt.new_from or git.rev(ws.repo.root, f"refs/heads/{wt.branch}") or "HEAD"
        text = git.show(ws.repo.root, commit, ".gitignore")
    rule = git.unignoring_rule(text or "", ENV_FILE)
    if rule is not None:
        raise PreflightError(
            f"the .gitignore of branch {wt.branch} has `{rule}`, which would let `git add -A` stage "
            f"{ENV_FILE} (the session's variables); nothing was changed",
            hint=f"remove that rule from the branch's .gitignore (devup keeps {ENV_FILE} out of git itself)",
        )


def _check_env_file_is_not_theirs(worktree: Path) -> None:
    """An attached worktree's own `.env.devup` (not devup's header) is exit 2: devup would
    overwrite it with the session's variables and `down` would delete it (new-L6, SPEC §5.6)."""
    from devup.paths import ENV_FILE

    path = worktree / ENV_FILE
    if os.path.lexists(path) and not envvars.written_by_devup(path):
        raise PreflightError(
            f"{path} exists and devup did not write it: the session's variables would overwrite it, "
            "and `devup down` would delete it; nothing was changed",
            hint=f"rename or remove it (devup writes {ENV_FILE} itself), then attach again",
        )


def _check_env_file(
    ws: Workspace, cfg: Config, ident: Identity, wt: worktree.WorktreePlan, mode: Mode
) -> None:
    """Every variable can be written to the env file as inert data (SPEC §4), or `up` stops
    here, before the first change (exit 2). Port numbers are digits: leaving them out changes
    nothing about what a value contains."""
    envvars.check_file_safe(
        envvars.session_vars(
            session=ident.session,
            project=ident.project,
            branch=wt.branch,
            worktree=str(wt.path),
            repo=str(ws.repo.root),
            mode=mode,
            resumed=wt.exists,
            ports={},
            extra=cfg.env,
        )
    )


def _engine_answers(engine: remote.Engine) -> None:
    """The engine answers; a remote one that does not is named, with how to check it."""
    try:
        engine_version(engine)
    except EngineUnavailable as exc:
        if not engine.remote:
            raise
        check = (
            f"docker --context {engine.context} info" if engine.context else f"docker -H {engine.host} info"
        )
        from devup import sshproxy

        said = sshproxy.errors(engine.host)
        raise EngineUnavailable(
            f"the remote Docker engine {engine.label} does not answer: "
            + exc.message.split(" does not answer: ", 1)[-1]
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
    projects: dict[str, str],
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
            try:
                compose_inputs.materialize(
                    root=ws.repo.root,
                    commit=commit,
                    groups=[g.files for g in groups.values()],
                    dest=where,
                    worktree=wt.path,
                    env=env,
                    copy=lambda: files.copy_into(
                        source_root=ws.repo.root, worktree=where, patterns=cfg.worktree.copy_
                    ),
                )
            except DevupError as exc:
                raise PreflightError(
                    f"cannot read the compose files of {', '.join(groups)} on branch {wt.branch}: {exc.message}",
                    hint="devup reads compose files from the session's branch, never from the main "
                    "checkout's working tree: commit them first",
                ) from None
        models: dict[str, compose.GroupModel] = {}
        for gname, gcfg in groups.items():
            missing = [f for f in gcfg.files if not (where / f).is_file()]
            if missing:
                raise PreflightError(
                    f"group {gname}: compose file {missing[0]} is not on branch {wt.branch}",
                    hint="devup reads compose files from the session's branch, never from the main "
                    "checkout's working tree: commit them first",
                )

        def load(gname: str) -> compose.GroupModel | DevupError:
            try:
                return compose.load_model(
                    engine,
                    project=projects[gname],
                    files=[where / f for f in groups[gname].files],
                    cwd=where,
                    env=env,
                )
            except DevupError as exc:
                return exc

        # One `compose config` per group, side by side (~0.1 s each); judged in the groups' order.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(4, len(groups)) or 1) as pool:
            loaded = dict(zip(groups, pool.map(load, groups), strict=True))
        for gname in groups:
            model = loaded[gname]
            if isinstance(model, DevupError):
                raise PreflightError(f"group {gname}: invalid compose files: {model.message}") from None
            if not model.services:
                raise _no_service(gname, model.profiles, mode)
            if model.refusals:
                raise _refused(gname, model.refusals)
            if model.gaps:
                _refuse_gaps(engine, gname, model.gaps)
            project = projects[gname]
            foreign = foreign_objects(
                engine,
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
        models = compose.link_groups(models, projects)
        if engine.remote:
            mounts.refuse_local_binds(
                models=models,
                read_from=where,
                project_dirs={g: where / Path(c.files[0]).parent for g, c in groups.items()},
                local_roots=[wt.path, ws.repo.root, Path.home()],
                engine_label=engine.label,
            )
            mounts.refuse_host_volumes(models=models, engine_label=engine.label)
        return models


def _refuse_gaps(engine: remote.Engine, group: str, gaps: list[EngineGap]) -> None:
    """SPEC §6: what the engine would accept and not do is exit 2 here, naming each setting."""
    version = podman_version(engine)
    if version is None:
        return
    found = [g for g in gaps if g.engine == "Podman" and (g.fixed_in is None or _older(version, g.fixed_in))]
    if not found:
        return
    lines = [
        f"- {g.where} sets {g.key}: {g.value}\n  ({g.why}; "
        + (
            f"Podman {g.fixed_in} and later do it)"
            if g.fixed_in
            else "no Podman version known to devup does it)"
        )
        for g in found
    ]
    raise PreflightError(
        f"group {group}: Podman {version} ({engine.host}) would start these services without what "
        f"they ask for:\n" + "\n".join(lines),
        hint="change each setting as the note says, or run the session on Docker "
        "(DOCKER_HOST, --context); docs/troubleshooting.md lists what differs",
    )


def _older(version: str, than: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", v)[:3])

    return parts(version) < parts(than)


def _refused(group: str, refusals: list[Refusal]) -> PreflightError:
    """All of a group's keys that cannot exist once per session, in one error: mailcow has four,
    and naming only the first made the user fix them one run at a time."""
    if len(refusals) == 1:
        (one,) = refusals
        return PreflightError(
            f"group {group}: {one.where} sets {one.key}: {one.value}, which cannot exist once per session",
            hint=one.hint,
        )
    lines = [f"- {r.where} sets {r.key}: {r.value}\n  ({r.hint})" for r in refusals]
    return PreflightError(
        f"group {group}: {len(refusals)} settings cannot exist once per session:\n" + "\n".join(lines),
        hint="change each one as the note under it says, then run `devup up` again",
    )


def _no_service(group: str, profiles: list[str], mode: Mode) -> PreflightError:
    """A group none of whose services would start: compose's `up` fails with "no service
    selected", after the worktree was made; said here instead, with what would start one."""
    leave_out = f"or leave group {group} out of {mode} mode (`modes` of [groups.{group}])"
    if not profiles:
        return PreflightError(
            f"group {group}: no service would start: its compose files define no service",
            hint=f"add a service to its files, {leave_out}",
        )
    return PreflightError(
        f"group {group}: no service would start: every service of its compose files is behind a "
        f"profile ({', '.join(profiles)}) and none of them is enabled",
        hint=f'enable one with COMPOSE_PROFILES in [env] of devup.toml (e.g. COMPOSE_PROFILES = "{profiles[0]}") '
        f"or in the .env next to the compose files, {leave_out}",
    )


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
            for key, full in compose.port_keys(svc, specs):
                claim(key, f"{gname}/{svc}")
                if key == full:
                    if key not in lease:
                        lease.append(key)
                else:
                    aliases[key] = full
    for sname, scfg in services.items():
        if scfg.port:
            key = port_key(sname)
            claim(key, f"service {sname}")
            lease.append(key)
    return lease, aliases
