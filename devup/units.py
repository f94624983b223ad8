"""The units of one `up` run: its compose groups and native services, each brought up, kept,
restarted or retired as the run's diff says (SPEC §5.12), each a step of the run with its inverse
on the run's stack; and the ports and variables they share, which follow a port someone else
took. The units run in threads (dag.run), so what they share is changed under one lock."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from devup import changes, envvars, inspect, paths
from devup.envvars import port_key
from devup.locks import write_atomic
from devup.records import GroupRecord, ProcessRecord
from devup.steps import group, service

if TYPE_CHECKING:
    from devup import preflight, remote, run
    from devup.config import Config
    from devup.report import Reporter
    from devup.steps import ports, routes
    from devup.workspace import Workspace


class Units:
    """The groups and services `run` brings up, and the variables (`env`) they get."""

    def __init__(
        self,
        *,
        run: run.Run,
        ws: Workspace,
        cfg: Config,
        plan: preflight.Plan,
        engine: remote.Engine,
        reporter: Reporter,
        leases: ports.Leases,
        hostnames: routes.Hostnames | None,
    ) -> None:
        self.run, self.ws, self.cfg, self.plan, self.engine, self.reporter = (
            run,
            ws,
            cfg,
            plan,
            engine,
            reporter,
        )
        self.leases, self.hostnames = leases, hostnames
        self.name, self.ident, self.previous = plan.ident.session, plan.ident, plan.previous
        self.reconciling = bool(self.previous and self.previous.status == "up")
        self.env: dict[str, str] = {}
        self.groups: dict[str, GroupRecord] = {}
        self.procs: dict[str, ProcessRecord] = {}
        self.retired = list(self.previous.retired) if self.previous else []
        self.stopped: list[str] = []  # retired by this run: stopped, removed once it commits
        self.kept: list[Path] = []  # the previous configs this run's inverses would restore
        self.diff: changes.Diff | None = None  # decided once the session's variables are known
        self._lock = threading.Lock()

    def vars(self) -> dict[str, str]:
        """The session's variables with the ports and URLs as they are now; kept as `env`."""
        urls = self.hostnames.url_vars if self.hostnames else None
        self.env = self.plan.variables(
            repo=self.ws.repo.root,
            ports=self.leases.ports,
            extra=self.cfg.env,
            host=self.engine.address,
            urls=urls,
        )
        return self.env

    def process_env(self) -> dict[str, str]:
        # Hooks and native services see the session's engine too (`docker compose ps` in a hook
        # talks to the engine the session runs on).
        return {**self.engine.environ(), **self.env}

    def relet(self, keys: list[str], avoid: int) -> dict[str, int]:
        """Move `keys` off a port someone else took; the routes and the env file follow at once."""
        with self._lock:
            moved = self.leases.relet(keys, avoid)
            if self.hostnames is not None:
                self.hostnames.follow(self.leases.ports)
            write_atomic(self.plan.wt.path / paths.ENV_FILE, envvars.dotenv(self.vars()))
        self.reporter.warn(
            f"port {avoid} was taken by someone else; moved {', '.join(moved)} to {sorted(set(moved.values()))}"
        )
        return moved

    def up_group(self, name: str) -> None:
        """Bring group `name` up (or recreate what changed in it); one unchanged and running is
        kept as it is (SPEC §5.12)."""
        for warning in group.sharing(name, self.plan.models[name]):
            self.reporter.warn(warning)
        assert self.diff is not None
        action = self.diff.groups[name]
        if action == "keep":
            assert self.previous is not None
            record = next(g for g in self.previous.groups if g.name == name)
        else:
            with self.run.step(f"group:{name}"):
                record = group.up(
                    restore=self._previous_config(name) if action == "recreate" else None,
                    recreate=changes.changed_services(self.plan, name, self.env),
                    stack=self.run.stack,
                    ident=self.ident,
                    name=name,
                    project=self.plan.projects[name],
                    cfg=self.plan.groups[name],
                    model=self.plan.models[name],
                    worktree=self.plan.wt.path,
                    env=self.process_env(),
                    ports=self.leases.ports,
                    override=self.ws.repo.override(self.name, name),
                    relet=self.relet,
                )
        with self._lock:
            self.groups[name] = record

    def retire_group(self, name: str) -> None:
        """A group the config no longer has: stopped (removed once the run commits), its data
        volumes kept until `down`."""
        assert self.previous is not None
        gone = next(g for g in self.previous.groups if g.name == name)
        with self.run.step(f"group:{name}"):
            group.retire(
                stack=self.run.stack, ident=self.ident, record=gone, restore=self._previous_config(name)
            )
            self.retired.append(gone.project)
            self.stopped.append(gone.project)

    def _previous_config(self, name: str) -> Path | None:
        """For a reconcile of a running session: the group's config as it runs now, kept aside
        for this run's inverse (compose brings the previous containers back from it)."""
        if not self.reconciling:
            return None
        kept = group.keep_resolved(self.ws.repo.override(self.name, name), tag=f"{os.getpid()}")
        if kept is not None:
            self.kept.append(kept)
        return kept

    def stop_service(self, name: str) -> None:
        """A native service the config no longer has (or whose command changed): stopped; the
        inverse starts it again as it ran. One not running (a stopped session) is left alone."""
        assert self.previous is not None
        if inspect.process_alive(self.previous.services[name]):
            with self.run.step(f"service:{name}"):
                service.stop_previous(
                    stack=self.run.stack,
                    ident=self.ident,
                    name=name,
                    previous=self.previous,
                    cwd=self.plan.wt.path,
                    log_path=self.ws.repo.log(self.name, name),
                    session_record=self.ws.repo.record(self.name),
                )

    def start_service(self, name: str) -> None:
        """Start native service `name` on its port (moved if taken); one still running as it
        should is kept, one whose command or variables changed is restarted."""
        cfg, key = self.plan.services[name], port_key(name)
        prev = self.previous.services.get(name) if self.previous else None
        assert self.diff is not None
        if prev is not None and inspect.process_alive(prev):
            if self.diff.services[name] == "keep":  # kept, in the order `down` must now follow
                with self._lock:
                    self.procs[name] = prev.replace(depends_on=list(cfg.depends_on))
                return
            self.stop_service(name)
        with self.run.step(f"service:{name}"):
            record = service.start_on_a_free_port(
                stack=self.run.stack,
                ident=self.ident,
                name=name,
                cfg=cfg,
                cwd=self.plan.wt.path,
                env=self.process_env,
                port=self.leases.ports.get(key) if cfg.port else None,
                move=lambda port: self.relet([key], port)[key],
                log_path=self.ws.repo.log(self.name, name),
            )
        with self._lock:
            self.procs[name] = record
