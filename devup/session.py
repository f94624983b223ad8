"""`devup up`: preflight, then every step with its inverse on a journaled undo stack."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from devup import (
    changes,
    dag,
    envvars,
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
from devup.locks import write_atomic
from devup.records import GroupRecord, ProcessRecord, SessionRecord, write_record
from devup.report import Reporter
from devup.steps import files, group, hooks, ports, routes, service, worktree
from devup.workspace import Workspace

if TYPE_CHECKING:
    from devup import clones, preflight
    from devup.config import Config, Mode


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
        ws.config  # noqa: B018  (validates: a config error is exit 2 before anything changes)
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
        unchanged = (
            previous is not None
            and req.mode in (None, previous.mode)
            and req.branch in (None, previous.branch)
        )
        if (
            previous is not None
            and unchanged
            and req.ttl in (None, previous.ttl)
            and previous.status == "up"
            and not drifted(ws, previous)
            and inspect.is_healthy(ws, previous)
        ):
            usage.touch(ws.repo, req.name)  # a use (SPEC §5.13)
            return _result(previous, resumed=True, started=started, noop=True)
        from devup import preflight  # with the config model: pydantic, ~0.15 s a no-op `up` skips

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
    keys = {key for _, _, keys in _route_targets(plan) for key in keys}
    prefix = "DEVUP_URL_"
    return {
        k[len(prefix) :]: v
        for k, v in previous.env.items()
        if k.startswith(prefix) and k[len(prefix) :] in keys
    }


def _route_targets(plan: preflight.Plan) -> list[tuple[str, str, tuple[str, ...]]]:
    """(target, the key of the port its hostname leads to, every DEVUP_PORT_ key of that port):
    each compose service's first published port, each native service's port."""
    found: list[tuple[str, str, tuple[str, ...]]] = []
    for model in plan.models.values():
        for svc, specs in model.services.items():
            alias = port_key(svc)
            full = plan.aliases.get(alias)
            if specs and full is not None:
                found.append((svc, alias, (alias, full)))
    for name, cfg in plan.services.items():
        if cfg.port:
            found.append((name, port_key(name), (port_key(name),)))
    return found


@dataclass(frozen=True)
class DryRun:
    session: str
    new: bool
    changes: list[changes.Change]

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
    env = envvars.session_vars(
        session=req.name,
        project=plan.ident.project,
        branch=plan.branch,
        worktree=str(plan.wt.path),
        repo=str(ws.repo.root),
        mode=plan.mode,
        resumed=plan.resumed,
        ports=dict(previous.ports) if previous else {},
        extra=cfg.env,
        host=engine.address,
        urls=_unchanged_urls(cfg, plan, engine, previous),
    )
    found = changes.diff(plan, cfg, env=env, running=_running(ws, previous), hooks=req.hooks)
    return DryRun(req.name, found.new, found.changes)


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
    (docker-compose's config hash, used the same way): `up` of an up session skips pydantic."""
    with contextlib.suppress(DevupError):  # a corrupt record is reported under the lock
        previous = ws.record(name)
        return previous is not None and previous.config_digest == ws.config_digest
    return False


class _Run:
    """One `up` run: the steps in order, each under its name, failures unwound."""

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
        self.engine = engine
        self.clone = clone
        self.ident = plan.ident
        self.run = run.Run(
            ws,
            req.name,
            kind="up",
            engine=engine,
            reporter=reporter,
            resumed=plan.resumed,
            restores=bool(plan.previous and plan.previous.status == "up"),
            begin={
                "project": plan.ident.project,
                "branch": plan.branch,
                "mode": plan.mode,
                "worktree": str(plan.wt.path),
            },
        )
        self.stack = self.run.stack
        native = [port_key(n) for n, s in plan.services.items() if s.port]
        self.leases = ports.Leases(
            stack=self.stack,
            repo_id=self.ident.repo.repo_id,
            session=req.name,
            keys=plan.lease_keys,
            aliases=plan.aliases,
            port_range=cfg.ports.range,
            free_check=lambda: ports.free_check(engine, native=native),
        )
        self.hostnames = (
            None
            if hostnames is None
            else routes.Hostnames(
                stack=self.stack,
                repo_id=self.ident.repo.repo_id,
                session=req.name,
                project=self.ident.project,
                domain=cfg.routes.domain,
                https=cfg.routes.https,
                fallback=(cfg.routes.http_port, cfg.routes.https_port),
                targets=_route_targets(plan),
                required=hostnames == "required",
                warn=reporter.warn,
            )
        )
        self.env: dict[str, str] = {}
        self.groups: dict[str, GroupRecord] = {}
        self.procs: dict[str, ProcessRecord] = {}
        self.created_worktree = bool(plan.previous and plan.previous.created_worktree)
        self._lock = threading.Lock()
        self.running = _running(ws, plan.previous)
        self.retired = list(plan.previous.retired) if plan.previous else []
        self.stopped: list[str] = []  # retired by this run: stopped, removed once it commits
        self.diff: changes.Diff | None = None  # decided once the session's variables are known
        self.reconciling = bool(plan.previous and plan.previous.status == "up")

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

    def _hook(self, name: str, cwd: Path) -> None:
        hook = self.cfg.hooks.get(name)
        if hook is None or not self.req.hooks:
            return
        with self.run.step(name):
            hooks.run(stack=self.stack, ident=self.ident, hook=hook, cwd=cwd, env=self._process_env())

    def _process_env(self) -> dict[str, str]:
        # Hooks and native services see the session's engine too (`docker compose ps` in a hook
        # talks to the engine the session runs on).
        return {**self.engine.environ(), **self.env}

    def _steps(self) -> None:
        plan, ws = self.plan, self.ws
        wt_path = plan.wt.path
        self.env = self._vars()
        self._hook("pre_up", ws.repo.root)
        with self.run.step("worktree"):
            if self.req.attach is not None:
                # Attached, it is the user's (SPEC §8): a mark devup left on it (a worktree of a
                # session whose record is gone) must not let `gc` remove it later.
                worktree.drop_mark(ws.repo.common_dir, wt_path)
            created = worktree.apply(
                stack=self.stack,
                root=ws.repo.root,
                plan=plan.wt,
                mark={"repo_id": self.ident.repo.repo_id, "session": self.req.name},
            )
            self.created_worktree = self.created_worktree or created
        if created and self.cfg.worktree.copy_:
            with self.run.step("copy"):
                files.copy_into(source_root=ws.repo.root, worktree=wt_path, patterns=self.cfg.worktree.copy_)
        with self.run.step("ports"):
            self.leases.lease(
                prefer=dict(plan.previous.ports) if plan.previous else {},
                resumed=plan.resumed,
                held=_held_keys(self.ws, plan),
            )
            if plan.previous:  # keys the config no longer has: released (a rollback leases them again)
                kept = set(self.leases.ports.values())
                self.leases.drop({k: p for k, p in plan.previous.ports.items() if p not in kept})
        if self.hostnames is not None:
            with self.run.step("routes"):
                self.hostnames.apply(self.leases.ports, restore=self.reconciling)
        elif plan.previous is not None and plan.previous.urls:  # hostnames turned off since
            with self.run.step("routes"):
                routes.retire(
                    stack=self.stack,
                    repo_id=self.ident.repo.repo_id,
                    session=self.req.name,
                    fallback=(self.cfg.routes.http_port, self.cfg.routes.https_port),
                )
        with self.run.step("env_file"):
            files.make_dir(
                stack=self.stack,
                path=ws.repo.session_dir(self.req.name),
                label="session state folder",
            )
            self.env = self._vars()
            inexact = files.write_env_file(
                stack=self.stack, common_dir=ws.repo.common_dir, worktree=wt_path, env=self.env
            )
            for key, why in inexact.items():
                self.reporter.warn(
                    f"{key} {why}: sh, bash and `devup env --format shell` read it exactly, "
                    f"python-dotenv and compose's env_file read {paths.ENV_FILE} differently"
                )
        self.diff = changes.diff(plan, self.cfg, env=self.env, running=self.running, hooks=self.req.hooks)
        if created:
            self._hook("post_create", wt_path)
        if self.clone is not None and plan.groups:
            with self.run.step("data"):
                from devup import clones

                targets = clones.clone_targets(self.ident, plan.groups, plan.projects, plan.models)
                clones.clone(ws, self.stack, self.clone, targets, new=self.req.name, reporter=self.reporter)
        if plan.groups:
            dag.run({n: g.depends_on for n, g in plan.groups.items()}, self._up_group)
        for name in [g for g, action in self.diff.groups.items() if action == "remove"]:
            self._retire_group(name)
        self._hook("pre_spawn", wt_path)
        for name in [s for s, action in self.diff.services.items() if action == "stop"]:
            self._stop_service(name)
        if plan.services:
            dag.run({n: s.depends_on for n, s in plan.services.items()}, self._start_service)
        self._hook("post_up", wt_path)
        with self.run.step("commit"):
            record = _record(self, "up", time.time())
            files.write_restorable(
                stack=self.stack,
                path=ws.repo.record(self.req.name),
                text=record.to_json(),
                label="session record",
            )
        self.run.commit()
        for project in self.stopped:  # final now: the containers go, the volumes stay until `down`
            group.remove_stopped(self.engine, project=project, reporter=self.reporter)

    def _vars(self) -> dict[str, str]:
        plan = self.plan
        return envvars.session_vars(
            session=self.req.name,
            project=self.ident.project,
            branch=plan.branch,
            worktree=str(plan.wt.path),
            repo=str(self.ws.repo.root),
            mode=plan.mode,
            resumed=plan.resumed,
            ports=self.leases.ports,
            extra=self.cfg.env,
            host=self.engine.address,
            urls=self.hostnames.url_vars if self.hostnames else None,
        )

    def _relet(self, keys: list[str], avoid: int) -> dict[str, int]:
        """Move `keys` off a port someone else took; the env file follows at once."""
        with self._lock:
            moved = self.leases.relet(keys, avoid)
            if self.hostnames is not None:
                self.hostnames.follow(self.leases.ports)
            self.env = self._vars()
            write_atomic(self.plan.wt.path / paths.ENV_FILE, envvars.dotenv(self.env))
        self.reporter.warn(
            f"port {avoid} was taken by someone else; moved {', '.join(moved)} to {sorted(set(moved.values()))}"
        )
        return moved

    def _up_group(self, name: str) -> None:
        model = self.plan.models[name]
        shared = model.shared()
        if shared:
            # External objects are the user's: never renamed, labelled or removed (SPEC §3).
            self.reporter.warn(
                f"group {name} uses external {', '.join(shared)}: every session shares "
                f"{'them' if len(shared) > 1 else 'it'}; devup never changes or removes external objects"
            )
        binds = model.shared_binds()
        if binds:
            # Not refused: a host folder may be meant to be shared; but two sessions writing one
            # config folder (jitsi's ~/.jitsi-meet-cfg) is a surprise unless said.
            self.reporter.warn(
                f"group {name} bind-mounts {', '.join(binds)} from outside the worktree: every session "
                f"shares {'them' if len(binds) > 1 else 'it'}; for a copy per session use a folder "
                "of the worktree (a relative path) or a named volume"
            )
        assert self.diff is not None
        if self.diff.groups[name] == "keep":  # unchanged and running: not touched (SPEC §5.12)
            assert self.plan.previous is not None
            with self._lock:
                self.groups[name] = next(g for g in self.plan.previous.groups if g.name == name)
            return
        with self.run.step(f"group:{name}"):
            restore = self._previous_config(name) if self.diff.groups[name] == "recreate" else None
            record = group.up(
                restore=restore,
                stack=self.stack,
                ident=self.ident,
                name=name,
                project=self.plan.projects[name],
                cfg=self.plan.groups[name],
                model=self.plan.models[name],
                worktree=self.plan.wt.path,
                env=self._process_env(),
                ports=self.leases.ports,
                override=self.ws.repo.override(self.req.name, name),
                relet=self._relet,
            )
            with self._lock:
                self.groups[name] = record

    def _previous_config(self, name: str) -> Path | None:
        """For a reconcile of a running session: the group's config as it runs now, kept aside
        for this run's inverse (compose brings the previous containers back from it)."""
        if not self.reconciling:
            return None
        return group.keep_resolved(self.ws.repo.override(self.req.name, name), tag=f"{os.getpid()}")

    def _retire_group(self, name: str) -> None:
        """A group the config no longer has: taken down, its data volumes kept until `down`."""
        assert self.plan.previous is not None
        gone = next(g for g in self.plan.previous.groups if g.name == name)
        with self.run.step(f"group:{name}"):
            group.retire(stack=self.stack, ident=self.ident, record=gone, restore=self._previous_config(name))
            self.retired.append(gone.project)
            self.stopped.append(gone.project)

    def _stop_service(self, name: str) -> None:
        """A native service the config no longer has (or whose command changed): stopped; the
        inverse starts it again as it ran."""
        assert self.plan.previous is not None
        previous = self.plan.previous
        if not inspect.process_alive(previous.services[name]):
            return  # not running (a stopped session): nothing to stop, nothing to bring back
        was = (previous.inputs.get("services") or {}).get(name) or {}
        with self.run.step(f"service:{name}"):
            service.stop_restorable(
                stack=self.stack,
                ident=self.ident,
                name=name,
                record=previous.services[name],
                run=was.get("run"),
                cwd=self.plan.wt.path,
                env=previous.env,
                port=previous.ports.get(port_key(name)),
                log_path=self.ws.repo.log(self.req.name, name),
                session_record=self.ws.repo.record(self.req.name),
            )

    def _start_service(self, name: str) -> None:
        cfg = self.plan.services[name]
        prev = self.plan.previous.services.get(name) if self.plan.previous else None
        assert self.diff is not None
        alive = prev is not None and inspect.process_alive(prev)
        if prev is not None and alive and self.diff.services[name] == "keep":
            with self._lock:  # still running: kept, with the order `down` must now follow
                self.procs[name] = prev.replace(depends_on=list(cfg.depends_on))
            return
        if prev is not None and alive:  # its command or variables changed: restarted
            self._stop_service(name)
        with self.run.step(f"service:{name}"):
            key = port_key(name)
            record = service.start_on_a_free_port(
                stack=self.stack,
                ident=self.ident,
                name=name,
                cfg=cfg,
                cwd=self.plan.wt.path,
                env=self._process_env,
                port=self.leases.ports.get(key) if cfg.port else None,
                move=lambda port: self._relet([key], port)[key],
                log_path=self.ws.repo.log(self.req.name, name),
            )
            with self._lock:
                self.procs[name] = record


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
    plan, ws, req = run.plan, run.ws, run.req
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
        groups=[run.groups[g] for g in plan.groups if g in run.groups],
        services=dict(run.procs),
        env_file=str(plan.wt.path / paths.ENV_FILE),
        env=run.env,
        created_at=plan.previous.created_at if plan.previous else now,
        updated_at=now,
        config_digest=ws.config_digest,
        attached=req.attach is not None or bool(plan.previous and plan.previous.attached),
        engine=run.engine.to_json(),
        source=run.clone.to_json() if run.clone else (dict(plan.previous.source) if plan.previous else {}),
        ttl=req.ttl if req.ttl is not None else (plan.previous.ttl if plan.previous else None),
        inputs=_inputs(run) if status == "up" else {},
        retired=[p for p in run.retired if p not in {g.project for g in run.groups.values()}],
        urls=dict(run.hostnames.urls) if run.hostnames else {},
    )


def _inputs(run: _Run) -> dict[str, Any]:
    """The fingerprints the next `up`, `ls` and `status` compare with (drift.py, changes.py)."""
    from devup import drift

    plan = run.plan
    return {
        **drift.watch(
            worktree=plan.wt.path,
            groups=[g.files for g in plan.groups.values()],
            session_env=run.env,
            env_values=run.cfg.env.values(),
        ),
        "config_mode": run.cfg.project.mode,  # an edit of it is a change to apply
        "groups": {g: changes.group_digests(plan, g, run.env) for g in plan.groups},
        "services": {
            s: {"digest": changes.service_digest(c, run.env), "run": c.run} for s, c in plan.services.items()
        },
    }


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
