"""`stop`, `down` and `recover`: idempotent, so a failed or interrupted one can simply be re-run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup import compose, dag, envvars, git, paths, processes, recovery, remote, run, usage
from devup.errors import BusyError, DevupError, NoSuchSession, RecoverIncomplete
from devup.hookspec import Hook, teardown_settings
from devup.leases import release_ports
from devup.model import Identity
from devup.paths import CONFIG_NAME
from devup.records import GroupRecord, SessionRecord, write_record
from devup.report import Reporter
from devup.steps import hooks, service, worktree
from devup.workspace import Workspace


@dataclass(frozen=True)
class Outcome:
    session: str
    status: str
    message: str

    def to_json(self) -> dict[str, Any]:
        # stop and down leave nothing behind: a failure is an error, and re-running them converges
        return {"session": self.session, "status": self.status, "message": self.message, "leftovers": []}


def _ident(ws: Workspace, record: SessionRecord) -> Identity:
    return Identity(repo=ws.repo, session=record.session, project=record.project)


def stop(ws: Workspace, name: str, reporter: Reporter) -> Outcome:
    partly = (
        f"session {name} is partly stopped; `devup stop {name}` again finishes, `devup up {name}` resumes it"
    )
    with run.held(ws, name, reporter, kept="leave", partly=partly):
        record = ws.record(name)
        if record is None:
            raise NoSuchSession(name)
        where = remote.engine_of(record)  # the session's engine, whatever the environment says
        _remove_route(ws, record, reporter)  # a stopped session's hostnames no longer answer
        _stop_services(ws, record, reporter, "stop service")
        _each_group_in_reverse(
            record, lambda g: compose.stop(where, project=g.project), reporter, "stop group"
        )
        write_record(ws.repo.record(name), record.replace(status="stopped", services={}))
        return Outcome(name, "stopped", f"session {name} stopped; `devup up {name}` resumes it")


def down(
    ws: Workspace,
    name: str,
    reporter: Reporter,
    *,
    keep_worktree: bool = False,
    force: bool = False,
) -> Outcome:
    # Only what down needs from devup.toml, read without validating the rest: down must work
    # (and start fast) even when the file no longer validates.
    settings = teardown_settings(ws.repo.root / CONFIG_NAME)

    def refuse_if_dirty() -> None:  # before the recovery: a refusal changes nothing
        record = ws.record(name)
        if record is not None and record.created_worktree and not keep_worktree and not force:
            _refuse_if_dirty(record, settings.copy)

    with run.held(
        ws,
        name,
        reporter,
        kept="undo",
        check=refuse_if_dirty,
        hint=f"fix the cause, then `devup down {name}` again",
        partly=f"session {name} is partly removed; the same `devup down` again finishes it",
    ):
        record = ws.record(name)
        if record is None:
            release_ports(repo_id=ws.repo.repo_id, session=name)
            shutil.rmtree(ws.repo.session_dir(name), ignore_errors=True)
            return Outcome(name, "absent", f"no session named {name}: nothing to do")
        where = remote.engine_of(record)  # the session's engine, whatever the environment says
        ident = _ident(ws, record)
        wt = Path(record.worktree)
        env = {**record.env}
        if wt.is_dir():
            _hook(settings.pre_down, ident, wt, env, reporter)
        elif settings.pre_down is not None:
            # A hook runs only in its own folder (SPEC §5.14): a cleanup written for the worktree
            # (`git clean -fdX`, `make clean`) must never meet the main checkout (new-M3).
            reporter.note(
                f"hook pre_down skipped: the worktree {wt} is gone (a hook runs only in its own folder)"
            )
        _remove_route(ws, record, reporter)
        _stop_services(ws, record, reporter, "service")
        _each_group_in_reverse(
            record, lambda g: compose.down(where, project=g.project, volumes=True), reporter, "group"
        )
        for project in record.retired:  # groups a reconcile took down kept their data until now
            with _step(reporter, f"volumes of {project}"):
                compose.down(where, project=project, volumes=True)
        _remove_env_file(wt / paths.ENV_FILE, attached=record.attached)
        if record.created_worktree and not record.attached and not keep_worktree:
            with _step(reporter, "worktree"):
                worktree.remove_session_worktree(root=ws.repo.root, path=wt)
        else:
            # The worktree stays (--keep-worktree, attached, adopted): devup's mark goes before
            # the record does, or the next `gc` would take it for an orphan of devup's and
            # remove what `down` just said it kept (hostile-input new-M1).
            worktree.drop_mark(ws.repo.common_dir, wt)
        release_ports(repo_id=ws.repo.repo_id, session=name)
        shutil.rmtree(ws.repo.session_dir(name), ignore_errors=True)
        ws.repo.record(name).unlink(missing_ok=True)
        usage.forget(ws.repo, name)
        _hook(settings.post_down, ident, ws.repo.root, env, reporter)
        if settings.post_down is not None:
            # What post_down left running in the background is the session's too (SPEC §2:
            # down removes its processes).
            processes.kill_tagged(repo_id=ws.repo.repo_id, session=name)
        if record.attached:
            # SPEC §8: a worktree another tool made stays, with or without --keep-worktree.
            return Outcome(name, "down", f"session {name} removed; its attached worktree {wt} is kept")
        if not record.created_worktree and wt.is_dir():  # found there by `up`, not made by it
            return Outcome(
                name, "down", f"session {name} removed; its worktree {wt} is kept: the session found it there"
            )
        if keep_worktree:
            return Outcome(
                name, "down", f"session {name} removed; its worktree {wt} is kept (--keep-worktree)"
            )
        return Outcome(name, "down", f"session {name} removed")


def recover(ws: Workspace, name: str | None, reporter: Reporter) -> list[recovery.Recovery]:
    """`devup recover [NAME]`: one session, or every session with a journal, each through the
    run's prologue (run.held). For one named session an error is raised (busy: exit 4); for all,
    each is reported and the others go on. Leftovers are reported, not raised (exit 3 all the same)."""
    if name:
        return [_recover_one(ws, name, reporter)]
    folder = ws.repo.journals_dir
    results = []
    for n in sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []:
        try:
            results.append(_recover_one(ws, n, reporter))
        except BusyError:
            results.append(recovery.Recovery(n, "busy"))
        except DevupError as exc:
            results.append(recovery.Recovery(n, "error", error=exc.message))
    return results


def _recover_one(ws: Workspace, name: str, reporter: Reporter) -> recovery.Recovery:
    try:
        return run.finish(ws, name, reporter)
    except RecoverIncomplete as exc:
        return recovery.Recovery(name, "rollback_incomplete", exc.leftovers)


def _remove_route(ws: Workspace, record: SessionRecord, reporter: Reporter) -> None:
    """The session's hostnames (SPEC §9) go first: nothing answers there while it stops."""
    if not record.urls:
        return  # never had hostnames: the router is not asked (nor started, nor imported)
    from devup.steps import routes

    with _step(reporter, "routes"):
        routes.remove(repo_id=ws.repo.repo_id, session=record.session)


def _stop_services(ws: Workspace, record: SessionRecord, reporter: Reporter, label: str) -> None:
    """Native services in reverse dependency order, independent ones in parallel; then whatever
    else carries the session's tag (a service's child in another group, a hook's background job)."""
    services = record.services
    _in_reverse(
        {n: p.depends_on for n, p in services.items()},
        lambda n: service.stop(record=services[n]),
        reporter,
        label,
    )
    timeout = max((p.stop_timeout for p in services.values()), default=5)
    processes.kill_tagged(repo_id=ws.repo.repo_id, session=record.session, timeout=timeout)
    # A hook's child that cleared its environment carries no tag: found by its working folder.
    processes.kill_strays(record.worktree, timeout=timeout)


def _each_group_in_reverse(
    record: SessionRecord, work: Callable[[GroupRecord], None], reporter: Reporter, label: str
) -> None:
    groups = {g.name: g for g in record.groups}
    _in_reverse({n: g.depends_on for n, g in groups.items()}, lambda n: work(groups[n]), reporter, label)


def _in_reverse(
    units: dict[str, list[str]], work: Callable[[str], None], reporter: Reporter, label: str
) -> None:
    """Units in reverse dependency order, independent ones in parallel (as `up` brought them)."""
    dependents = {name: [o for o, deps in units.items() if name in deps] for name in units}

    def one(name: str) -> None:
        with _step(reporter, f"{label}:{name}"):
            work(name)

    dag.run(dependents, one)


def _remove_env_file(path: Path, *, attached: bool) -> None:
    """The session's env file goes; in an attached worktree (the user's) only while it is still
    devup's: one the user put in its place since is theirs (new-L6)."""
    if not attached or envvars.written_by_devup(path):
        path.unlink(missing_ok=True)


def _refuse_if_dirty(record: SessionRecord, copied: tuple[str, ...]) -> None:
    wt = Path(record.worktree)
    if not wt.is_dir():
        return
    dirty = [p for p in git.dirty_paths(wt) if p not in copied and p != paths.ENV_FILE]
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise DevupError(
            f"worktree {wt} has uncommitted changes ({shown}); nothing was touched",
            hint=f"commit or stash them, or `devup down {record.session} --keep-worktree`, or `--force` to discard them",
        )


def _hook(hook: Hook | None, ident: Identity, cwd: Path, env: dict[str, str], reporter: Reporter) -> None:
    """pre_down / post_down: a failure is a warning, never a reason to stop a teardown."""
    if hook is None:
        return
    try:
        hooks.run_commands(ident=ident, hook=hook, cwd=cwd, env={**os.environ, **env})
    except DevupError as exc:
        reporter.warn(f"hook {hook.name} failed (ignored): {exc.message}")


class _step:
    def __init__(self, reporter: Reporter, name: str) -> None:
        self.reporter, self.name = reporter, name

    def __enter__(self) -> None:
        import time

        self.t0 = time.monotonic()
        self.reporter.step_started(self.name)

    def __exit__(self, *exc: object) -> None:
        import time

        if exc[0] is None:
            self.reporter.step_done(self.name, time.monotonic() - self.t0)
        else:
            self.reporter.step_failed(self.name, time.monotonic() - self.t0, str(exc[1]))
