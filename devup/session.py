"""`devup up`: preflight, then every step with its inverse on a journaled undo stack."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from devup import (
    changes,
    dag,
    inspect,
    paths,
    remote,
    run,
)
from devup.envvars import port_key
from devup.errors import (
    DevupError,
    Interrupted,
    PreflightError,
    UsageError,
)
from devup.records import SessionRecord, write_record
from devup.report import Reporter
from devup.steps import files, group, hooks, ports, routes, worktree
from devup.units import Units
from devup.workspace import Workspace

if TYPE_CHECKING:
    from devup import clones, preflight
    from devup.config import Config, Mode
    from devup.undo import UndoStack


@dataclass(frozen=True)
class UpRequest:
    name: str
    branch: str | None = None
    base: str | None = None
    mode: Mode | None = None
    on_failure: Literal["rollback", "keep"] = "rollback"
    hooks: bool = True
    attach: Path | None = None  # an existing worktree made by another tool (SPEC §8, attach.py)
    context: str | None = None  # --context: the docker context of a new session's groups
    source: str | None = None  # --from: a session or snapshot whose data a new session copies (§7)
    ttl: float | None = None  # --ttl: expires this many seconds after its last use (§5.13)
    dry_run: bool = False  # --dry-run: say what would change, change nothing (§5.12)


@dataclass(frozen=True)
class UpResult:
    session: str
    mode: str
    branch: str
    worktree: str
    projects: list[str]
    ports: dict[str, int]
    env_file: str
    resumed: bool
    duration_s: float
    record: SessionRecord  # what the summary renders (output.up_summary)
    noop: bool = False
    urls: dict[str, str] | None = None  # hostname URLs, target -> URL (SPEC §9)

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "status": "up",
            "mode": self.mode,
            "branch": self.branch,
            "worktree": self.worktree,
            "projects": self.projects,
            "ports": self.ports,
            "env_file": self.env_file,
            "resumed": self.resumed,
            "duration_s": round(self.duration_s, 3),
            "urls": self.urls or {},
        }


def up(ws: Workspace, req: UpRequest, reporter: Reporter) -> UpResult:
    started = time.monotonic()
    paths.check_session_name(req.name)
    if not _config_unchanged_since_up(ws, req.name):
        ws.remembered_config  # noqa: B018  (validated: a config error is exit 2 before anything changes)
    from devup import fleet, usage

    # A fleet that never runs `gc` reaps itself: a stat or two per session when nothing is due.
    fleet.reap(ws, reporter, skip=req.name)
    with run.held(ws, req.name, reporter):
        previous = ws.record(req.name)
        if req.source is not None and previous is not None:
            raise UsageError(
                f"session {req.name} exists already: --from makes a new session; nothing was changed",
                hint=f"`devup snapshot restore {req.name} SNAP` replaces an existing session's data",
            )
        engine = _engine_for(ws, req, previous)  # this run's, its children's and its rollback's
        if previous is not None and _nothing_to_do(ws, req, previous):
            usage.touch(ws.repo, req.name)  # a use (SPEC §5.13)
            return _result(previous, resumed=True, started=started, noop=True)
        from devup import preflight

        # Kept for the commands that meet this text next (`--dry-run`, a reconcile), which then
        # skip pydantic (config.remember); a read when it is kept already.
        cfg = ws.remembered_config
        plan = preflight.plan(
            ws,
            cfg,
            name=req.name,
            branch=req.branch,
            base=req.base,
            mode=req.mode,
            previous=previous,
            attach=req.attach,
            engine=engine,
        )
        if req.source is not None and not plan.groups:
            raise UsageError(
                f"--from {req.source}: session {req.name} has no compose groups ({plan.mode} mode), "
                "so no data volumes to fill; nothing was changed"
            )
        if previous is None or previous.status != "up":  # one more running session: checked last,
            # after preflight, so that a config error never stops another session for nothing
            fleet.make_room(ws, req.name, usage.limits_of(ws.config_text), reporter, new=previous is None)
        names = _hostnames(cfg, plan, engine, reporter)  # SPEC §9; a missing router required: exit 2
        source = req.source or (cfg.project.data_from if previous is None else None)
        if source is None or not plan.groups:  # host mode: no volumes to fill, and no Docker
            return _Run(ws, cfg, req, plan, reporter, engine, hostnames=names).execute(started)
        from devup import clones

        planned = clones.plan_clone(ws, source, new=req.name, eng=engine)
        with clones.held(ws, planned, engine) as clone:  # busy: exit 4, before anything changed
            return _Run(ws, cfg, req, plan, reporter, engine, clone, hostnames=names).execute(started)


def _hostnames(
    cfg: Config, plan: preflight.Plan, engine: remote.Engine, reporter: Reporter
) -> Literal["required", "auto"] | None:
    """Whether this run gives the session hostnames (SPEC §9): "required" when
    `[routes].hostnames = true`, "auto" when left to its default (on where the router can run,
    else off with a note), None when off."""
    setting = cfg.routes.hostnames
    if setting is False or not _route_targets(plan):
        return None
    if engine.remote:
        # Its published ports answer on the engine's host, not behind this machine's router.
        reporter.note(
            f"hostnames are off: session {plan.ident.session} runs on a remote engine ({engine.label})"
        )
        return None
    from devup import router

    if router.installed() is None:
        if setting:
            raise PreflightError(
                "[routes].hostnames = true, but caddy (the router of the hostnames) is not installed; "
                "nothing was changed",
                hint="`apt-get install caddy` (scripts/setup does it), or [routes].hostnames = false",
            )
        reporter.note(
            "hostnames are off: caddy is not installed (`apt-get install caddy`, or scripts/setup); "
            "[routes].hostnames = false says you do not want them"
        )
        return None
    return "required" if setting else "auto"


def _unchanged_urls(
    cfg: Config, plan: preflight.Plan, engine: remote.Engine, previous: SessionRecord | None
) -> dict[str, str]:
    """For `--dry-run`: the DEVUP_URL_ keys the session has and keeps (hostnames still on, its
    port key still routed), with the URLs it has: the router is not asked, nor started."""
    from devup.report import NullReporter

    if previous is None or _hostnames(cfg, plan, engine, NullReporter()) is None:
        return {}
    keys = {key for _, _, keys, _ in _route_targets(plan) for key in keys}
    prefix = "DEVUP_URL_"
    return {
        k[len(prefix) :]: v
        for k, v in previous.env.items()
        if k.startswith(prefix) and k[len(prefix) :] in keys
    }


def _route_targets(plan: preflight.Plan) -> list[tuple[str, str, tuple[str, ...], str]]:
    return routes.targets(models=plan.models, aliases=plan.aliases, services=plan.services)


@dataclass(frozen=True)
class DryRun:
    session: str
    new: bool
    changes: list[changes.Change]
    notes: tuple[str, ...] = ()  # said on stderr: what `up` would do that is no change of the config

    def to_json(self) -> dict[str, Any]:
        return {"session": self.session, "new": self.new, "changes": [c.to_json() for c in self.changes]}


def dry_run(ws: Workspace, req: UpRequest) -> DryRun:
    """`up --dry-run`: what `up` would do, with preflight's checks (exit 2) and nothing changed:
    no lock, journal, lease, record, worktree, branch or engine object."""
    paths.check_session_name(req.name)
    previous = ws.record(req.name)
    if req.source is not None and previous is not None:
        raise UsageError(f"session {req.name} exists already: --from makes a new session")
    engine = _engine_for(ws, req, previous)
    from devup import preflight

    cfg = ws.config
    plan = preflight.plan(
        ws,
        cfg,
        name=req.name,
        branch=req.branch,
        base=req.base,
        mode=req.mode,
        previous=previous,
        attach=req.attach,
        engine=engine,
    )
    # The ports `up` would hold: a key it has keeps its port (leases prefer it), a new one gets
    # one not known yet (0 here: any port differs from none), a dropped one is released.
    held = dict(previous.ports) if previous else {}
    ports = {key: held.get(key, 0) for key in plan.lease_keys}
    ports.update({alias: ports[full] for alias, full in plan.aliases.items()})
    env = plan.variables(
        repo=ws.repo.root,
        ports=ports,
        extra=cfg.env,
        host=engine.address,
        urls=_unchanged_urls(cfg, plan, engine, previous),
    )
    found = changes.diff(plan, cfg, env=env, running=_running(ws, previous), hooks=req.hooks)
    notes = []
    if ws.repo.journal(req.name).exists():
        notes.append(
            f"session {req.name} has an unfinished run: `up` rolls it back first if it was "
            f"interrupted (as `devup recover {req.name}` does), or exits 4 while it runs"
        )
    elif previous is not None and _nothing_to_do(ws, req, previous):  # `up` returns at once
        return DryRun(req.name, False, [c for c in found.changes if c.action == "keep"])
    return DryRun(req.name, found.new, found.changes, tuple(notes))


def _nothing_to_do(ws: Workspace, req: UpRequest, previous: SessionRecord) -> bool:
    """`up` of an up, healthy session that nothing changed for, asked nothing new: the no-op."""
    return (
        req.mode in (None, previous.mode)
        and req.branch in (None, previous.branch)
        and req.ttl in (None, previous.ttl)
        and previous.status == "up"
        and not previous.hostnames_off  # the router could not start last time: try again
        and not drifted(ws, previous)
        and inspect.is_healthy(ws, previous)
    )


def drifted(ws: Workspace, record: SessionRecord) -> list[str]:
    """What changed since `record`'s session came up (SPEC §5.12; a few small reads)."""
    from devup import drift

    return drift.since(record, config=ws.config_digest)


def _engine_for(ws: Workspace, req: UpRequest, previous: SessionRecord | None) -> remote.Engine:
    """A session stays on the engine it was created on (guarantee 10); a new one gets SPEC §6's
    choice. A record from before engines were recorded keeps the environment's engine."""
    if previous is None:
        return remote.choose(option=req.context, configured=remote.configured_context(ws.config_text))
    recorded = remote.engine_of(previous)
    if req.context:
        asked = remote.by_context(req.context, where="--context")
        if asked.host != recorded.host:
            raise UsageError(
                f"session {req.name} runs on engine {recorded.label}, not on {asked.label}",
                hint=f"`devup down {req.name}` first to move it to another engine",
            )
    return recorded


def _config_unchanged_since_up(ws: Workspace, name: str) -> bool:
    """devup.toml is byte for byte the one `name` was last brought up with, which validated then
    (docker-compose's config hash, used the same way): a no-op `up` reads no config at all."""
    with contextlib.suppress(DevupError):  # a corrupt record is reported under the lock
        previous = ws.record(name)
        return previous is not None and previous.config_digest == ws.config_digest
    return False


class _Run:
    """One `up` run: the steps in SPEC's order (§4, §5.12), each under its name, failures unwound."""

    def __init__(
        self,
        ws: Workspace,
        cfg: Config,
        req: UpRequest,
        plan: preflight.Plan,
        reporter: Reporter,
        engine: remote.Engine,
        clone: clones.CloneSource | None = None,
        *,
        hostnames: Literal["required", "auto"] | None = None,
    ) -> None:
        self.ws, self.cfg, self.req, self.plan, self.reporter = ws, cfg, req, plan, reporter
        self.engine, self.clone, self.ident, previous = engine, clone, plan.ident, plan.previous
        self.reconciling = bool(previous and previous.status == "up")
        begin = {"project": self.ident.project, "branch": plan.branch, "mode": plan.mode}
        self.run = run.Run(
            ws,
            req.name,
            kind="up",
            engine=engine,
            reporter=reporter,
            resumed=plan.resumed,
            restores=self.reconciling,
            begin={**begin, "worktree": str(plan.wt.path)},
        )
        self.stack = self.run.stack
        self.leases = _leases(self.stack, cfg, plan, engine)
        self.hostnames = _router(self.stack, cfg, plan, hostnames, reporter) if hostnames else None
        self.units = Units(
            run=self.run,
            ws=ws,
            cfg=cfg,
            plan=plan,
            engine=engine,
            reporter=reporter,
            leases=self.leases,
            hostnames=self.hostnames,
        )
        self.created_worktree = bool(previous and previous.created_worktree)
        self.running = _running(ws, previous)

    def execute(self, started: float) -> UpResult:
        try:
            self._steps()
        except (Exception, Interrupted) as exc:
            failed = self.run.fail(exc, keep=self.req.on_failure == "keep")
            if failed.status == "kept":
                write_record(self.ws.repo.record(self.req.name), _record(self, "failed", time.time()))
            raise failed from None
        from devup import usage

        usage.touch(self.ws.repo, self.req.name)  # a use (SPEC §5.13); a failed new one leaves none
        return _result(_record(self, "up", time.time()), resumed=self.plan.resumed, started=started)

    def _steps(self) -> None:
        plan, ws, name, stack, units = self.plan, self.ws, self.req.name, self.stack, self.units
        wt_path, previous = plan.wt.path, plan.previous
        units.vars()
        self._hook("pre_up", ws.repo.root)
        with self.run.step("worktree"):
            if self.req.attach is not None:
                # Attached, it is the user's (SPEC §8): a mark devup left on it (a worktree of a
                # session whose record is gone) must not let `gc` remove it later.
                worktree.drop_mark(ws.repo.common_dir, wt_path)
            mark = {"repo_id": self.ident.repo.repo_id, "session": name}
            created = worktree.apply(stack=stack, root=ws.repo.root, plan=plan.wt, mark=mark)
            self.created_worktree = self.created_worktree or created
        if created and self.cfg.worktree.copy_:
            with self.run.step("copy"):
                files.copy_into(source_root=ws.repo.root, worktree=wt_path, patterns=self.cfg.worktree.copy_)
        with self.run.step("ports"):
            prefer = dict(previous.ports) if previous else {}
            self.leases.lease(prefer=prefer, resumed=plan.resumed, held=_held_keys(ws, plan))
            if previous:  # keys the config no longer has: released (a rollback leases them again)
                kept = set(self.leases.ports.values())
                self.leases.drop({k: p for k, p in previous.ports.items() if p not in kept})
        if self.hostnames is not None:
            with self.run.step("routes"):
                self.hostnames.apply(self.leases.ports, restore=self.reconciling)
        elif previous is not None and previous.urls:  # hostnames turned off since
            with self.run.step("routes"):
                routes.retire(
                    stack=stack, repo_id=self.ident.repo.repo_id, session=name, fallback=_fallback(self.cfg)
                )
        with self.run.step("env_file"):
            files.make_dir(stack=stack, path=ws.repo.session_dir(name), label="session state folder")
            env = units.vars()
            for warning in files.write_env_file(
                stack=stack, common_dir=ws.repo.common_dir, worktree=wt_path, env=env
            ):
                self.reporter.warn(warning)
        units.diff = changes.diff(plan, self.cfg, env=units.env, running=self.running, hooks=self.req.hooks)
        if created:
            self._hook("post_create", wt_path)
        if self.clone is not None and plan.groups:
            with self.run.step("data"):
                from devup import clones

                targets = clones.clone_targets(self.ident, plan.groups, plan.projects, plan.models)
                clones.clone(ws, stack, self.clone, targets, new=name, reporter=self.reporter)
        if plan.groups:
            dag.run({n: g.depends_on for n, g in plan.groups.items()}, units.up_group)
        for group_name in [g for g, action in units.diff.groups.items() if action == "remove"]:
            units.retire_group(group_name)
        self._hook("pre_spawn", wt_path)
        for service_name in [s for s, action in units.diff.services.items() if action == "stop"]:
            units.stop_service(service_name)
        if plan.services:
            dag.run({n: s.depends_on for n, s in plan.services.items()}, units.start_service)
        self._hook("post_up", wt_path)
        with self.run.step("commit"):
            text = _record(self, "up", time.time()).to_json()
            files.write_restorable(stack=stack, path=ws.repo.record(name), text=text, label="session record")
        self.run.commit()
        for copy in units.kept:  # no inverse will restore them now
            copy.unlink(missing_ok=True)
        for project in units.stopped:  # final now: the containers go, the volumes stay until `down`
            group.remove_stopped(self.engine, project=project, reporter=self.reporter)

    def _hook(self, name: str, cwd: Path) -> None:
        hook = self.cfg.hooks.get(name)
        if hook is not None and self.req.hooks:
            with self.run.step(name):
                hooks.run(
                    stack=self.stack, ident=self.ident, hook=hook, cwd=cwd, env=self.units.process_env()
                )


def _leases(stack: UndoStack, cfg: Config, plan: preflight.Plan, engine: remote.Engine) -> ports.Leases:
    """The run's port leases: each checked free on the engine's host right before use."""
    native = [port_key(n) for n, s in plan.services.items() if s.port]
    return ports.Leases(
        stack=stack,
        repo_id=plan.ident.repo.repo_id,
        session=plan.ident.session,
        keys=plan.lease_keys,
        aliases=plan.aliases,
        port_range=cfg.ports.range,
        free_check=lambda: ports.free_check(engine, native=native),
    )


def _router(
    stack: UndoStack,
    cfg: Config,
    plan: preflight.Plan,
    hostnames: Literal["required", "auto"],
    reporter: Reporter,
) -> routes.Hostnames:
    """The run's hostnames (SPEC §9), named from the plan."""
    return routes.Hostnames(
        stack=stack,
        repo_id=plan.ident.repo.repo_id,
        session=plan.ident.session,
        project=plan.ident.project,
        domain=cfg.routes.domain,
        https=cfg.routes.https,
        fallback=_fallback(cfg),
        targets=_route_targets(plan),
        required=hostnames == "required",
        warn=reporter.warn,
    )


def _fallback(cfg: Config) -> tuple[int, int]:
    return (cfg.routes.http_port, cfg.routes.https_port)


def _held_keys(ws: Workspace, plan: preflight.Plan) -> frozenset[str]:
    """Port keys a resumed session's own running units bind (so "busy" is not foreign)."""
    previous = plan.previous
    if previous is None:
        return frozenset()
    running = {c.project for c in inspect.containers_of(ws, previous) if c.state == "running"}
    return ports.held_keys(
        services_alive=[n for n, p in previous.services.items() if inspect.process_alive(p)],
        running_groups=[g.name for g in previous.groups if g.project in running],
        models={name: model.services for name, model in plan.models.items()},
    )


def _record(run: _Run, status: str, now: float) -> SessionRecord:
    """The session record of what `run` brought up."""
    plan, ws, req, units = run.plan, run.ws, run.req, run.units
    return SessionRecord(
        session=req.name,
        project=plan.ident.project,
        repo=str(ws.repo.root),
        repo_id=plan.ident.repo.repo_id,
        branch=plan.branch,
        worktree=str(plan.wt.path),
        mode=plan.mode,
        status=status,
        created_worktree=run.created_worktree,
        ports=dict(sorted(run.leases.ports.items())),
        groups=[units.groups[g] for g in plan.groups if g in units.groups],
        services=dict(units.procs),
        env_file=str(plan.wt.path / paths.ENV_FILE),
        env=units.env,
        created_at=plan.previous.created_at if plan.previous else now,
        updated_at=now,
        config_digest=ws.config_digest,
        attached=req.attach is not None or bool(plan.previous and plan.previous.attached),
        engine=run.engine.to_json(),
        source=run.clone.to_json() if run.clone else (dict(plan.previous.source) if plan.previous else {}),
        ttl=req.ttl if req.ttl is not None else (plan.previous.ttl if plan.previous else None),
        inputs=changes.inputs(plan, run.cfg, units.env) if status == "up" else {},
        retired=[p for p in units.retired if p not in {g.project for g in units.groups.values()}],
        urls=dict(run.hostnames.urls) if run.hostnames else {},
        hostnames_off=run.hostnames.off if run.hostnames else "",
    )


def _running(ws: Workspace, previous: SessionRecord | None) -> set[str]:
    """The groups (every container running and healthy) and native services (alive) of
    `previous` that run as they should now: only those are kept as they are; the others are
    brought up again, as any resume does."""
    if previous is None:
        return set()
    containers = inspect.containers_of(ws, previous) if previous.groups else []
    units = inspect.units(previous, containers)
    sick = {u.name.split("/")[0] for u in units if u.kind == "container" and not u.healthy}
    return {g.name for g in previous.groups if g.name not in sick} | {
        n for n, p in previous.services.items() if inspect.process_alive(p)
    }


def _result(record: SessionRecord, *, resumed: bool, started: float, noop: bool = False) -> UpResult:
    return UpResult(
        session=record.session,
        mode=record.mode,
        branch=record.branch,
        worktree=record.worktree,
        projects=[g.project for g in record.groups],
        ports=record.ports,
        env_file=record.env_file,
        resumed=resumed,
        duration_s=time.monotonic() - started,
        record=record,
        noop=noop,
        urls=dict(record.urls),
    )
