"""A compose group: one compose project per session and group, with a generated override."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devup import compose, faults, processes
from devup.engine import queries, removal, volumes
from devup.errors import CommandFailed, DevupError
from devup.locks import write_atomic
from devup.model import Identity
from devup.records import GroupRecord
from devup.undo import UndoRecord, UndoStack, inverse

if TYPE_CHECKING:  # pydantic loads only when devup.toml is read
    from devup.config import GroupCfg
    from devup.remote import Engine
    from devup.report import Reporter

_TRANSIENT = (
    "Cannot connect to the Docker daemon",
    "connection refused",
    "i/o timeout",
    "TLS handshake timeout",
)
_ATTEMPTS = 4

# Asked to replace a port the engine could not bind: (port keys to move, port to avoid) -> new
# ports. It moves them in the session's `ports` itself, under its lock (ports.Leases.relet).
Relet = Callable[[list[str], int], dict[str, int]]


def up(
    *,
    stack: UndoStack,
    ident: Identity,
    name: str,
    project: str,
    cfg: GroupCfg,
    model: compose.GroupModel,
    worktree: Path,
    env: Mapping[str, str],
    ports: dict[str, int],
    override: Path,
    relet: Relet,
    restore: Path | None = None,
    recreate: list[str] | None = None,
) -> GroupRecord:
    """Bring the group up with --wait; the inverse takes down what this run made, volumes that
    existed before (a resumed session's data) excepted. With `restore` (a reconcile of a running
    group: its config as it ran, from `keep_resolved`), the inverse brings that config back
    instead: compose recreates what this run changed and keeps the rest (SPEC §5.12).

    `project` is the plan's: a resumed session keeps the project it was recorded with.
    `recreate`: the services whose config changed, when known (compose.up).
    """
    eng = stack.engine
    before = volumes.project_volumes(eng, project=project)
    restarts_before = queries.restarts(eng, project=project)
    identity = {"project": project, "session": ident.session, "repo_id": ident.repo.repo_id}
    if restore is not None:
        stack.push(
            UndoRecord(
                "compose_restore",
                {**identity, "config": str(restore), "recreate": recreate, "keep_volumes": sorted(before)},
                f"compose project {project}",
            )
        )
    else:
        down = UndoRecord(
            "compose_down", {**identity, "keep_volumes": sorted(before)}, f"compose project {project}"
        )
        pushed = stack.push(down)
    files = [worktree / f for f in cfg.files] + [override]

    def attempt() -> None:
        # `ports` is the session's, which another group's thread may relet meanwhile: this
        # attempt reads one copy of it (a dict copy is atomic under the GIL; iterating is not).
        mine = dict(ports)
        compose.write_override(override, project=project, model=model, ports=mine, labels=ident.labels(name))
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            # The config it will run with, resolved by compose while compose brings it up: what a
            # later reconcile's inverse restores (SPEC §5.12).
            config = pool.submit(compose.resolved, eng, project=project, files=files, cwd=worktree, env=env)
            # Tagged like every process devup starts: if devup is killed mid-`up`, recovery stops
            # this compose too, so it cannot create containers after the rollback.
            result = compose.up(
                eng,
                project=project,
                files=files,
                cwd=worktree,
                env={**env, **ident.tags(f"compose:{project}")},
                wait_timeout=cfg.wait_timeout,
                recreate=recreate,
            )
            resolved = config.exception() is None and config.result()
        if result.ok:
            if resolved:
                write_atomic(resolved_path(override), resolved)
            else:  # never a stale one: a later rollback would bring back an older config
                resolved_path(override).unlink(missing_ok=True)
            return
        failure = CommandFailed(
            command=f"docker compose -p {project} up -d --wait",
            returncode=result.returncode,
            output_tail=result.tail(),
            what=f"group {name}:",
        )
        taken = compose.taken_port(result.output)
        if taken is not None:
            # Someone bound the port between lease and bind: lease another (relet moves it in
            # `ports`, under its lock) and try again.
            relet([k for k, p in mine.items() if p == taken], taken)
            raise _Transient(failure, wait=False)
        if any(t in result.output for t in _TRANSIENT):
            raise _Transient(failure, wait=True)
        raise failure  # deterministic: an invalid file, an image that is not there

    _retry_transient(attempt)
    if restore is None:  # compose has exited: no create of it can land after a `down` now
        stack.update(pushed, UndoRecord(down.kind, {**down.args, "settled": True}, down.label))
    _check_settled(eng, ident=ident, project=project, name=name, restarts_before=restarts_before)
    _check_uptime(eng, project=project, name=name, min_uptime=cfg.min_uptime)
    return GroupRecord(
        name=name,
        project=project,
        files=list(cfg.files),
        services=sorted(model.services),
        depends_on=list(cfg.depends_on),
        kept_volumes=sorted(before - set(model.volume_names.values())),
    )


def resolved_path(override: Path) -> Path:
    return override.with_name(override.name.replace(".override.yaml", ".resolved.yaml"))


def keep_resolved(override: Path, *, tag: str) -> Path | None:
    """A copy of the group's running config (written by its last `up`) for this run's inverse;
    None when there is none (a session brought up by an older devup)."""
    source = resolved_path(override)
    if not source.is_file():
        return None
    kept = source.with_name(source.name.replace(".resolved.yaml", f".before-{tag}.yaml"))
    write_atomic(kept, source.read_text(encoding="utf-8"))
    return kept


def retire(*, stack: UndoStack, ident: Identity, record: GroupRecord, restore: Path | None) -> None:
    """Stop a group the config no longer has: its containers stop and stay, with its volumes (a
    reconcile never removes data, SPEC §5.12), until `down`. The inverse brings it back as it
    ran, from `restore`: compose starts the same containers again."""
    if restore is not None:
        identity = {"project": record.project, "session": ident.session, "repo_id": ident.repo.repo_id}
        stack.push(
            UndoRecord(
                "compose_restore", {**identity, "config": str(restore)}, f"compose project {record.project}"
            )
        )
    compose.stop(stack.engine, project=record.project)


def remove_stopped(eng: Engine, *, project: str, reporter: Reporter) -> None:
    """After the commit of a run that retired `project`: its stopped containers and networks
    removed, its volumes kept. Not undoable, so never before the commit; what fails here is
    said and left to `down` (the record lists the project as retired)."""
    try:
        faults.hit("during:retire")
        compose.down(eng, project=project, volumes=False)
    except DevupError as exc:
        reporter.warn(f"the stopped containers of {project} stay until `devup down`: {exc.message}")


def sharing(name: str, model: compose.GroupModel) -> list[str]:
    """What group `name` shares with every other session, said at each `up` (never refused)."""
    said = []
    shared = model.shared()
    if shared:
        # External objects are the user's: never renamed, labelled or removed (SPEC §3).
        said.append(
            f"group {name} uses external {', '.join(shared)}: every session shares "
            f"{'them' if len(shared) > 1 else 'it'}; devup never changes or removes external objects"
        )
    binds = model.shared_binds()
    if binds:
        # Not refused: a host folder may be meant to be shared; but two sessions writing one
        # config folder (jitsi's ~/.jitsi-meet-cfg) is a surprise unless said.
        said.append(
            f"group {name} bind-mounts {', '.join(binds)} from outside the worktree: every session "
            f"shares {'them' if len(binds) > 1 else 'it'}; for a copy per session use a folder "
            "of the worktree (a relative path) or a named volume"
        )
    return said


@inverse("compose_restore")
def undo_restore(args: dict[str, Any], eng: Engine) -> None:
    """Bring the project back to the config it ran with before this run: compose recreates the
    containers this run changed, keeps those it did not, removes those it added."""
    processes.kill_tagged(repo_id=args["repo_id"], session=args["session"], unit=f"compose:{args['project']}")
    config = Path(args["config"])
    if not config.is_file():
        raise DevupError(f"the previous config of compose project {args['project']} ({config}) is gone")
    result = compose.up(
        eng,
        project=args["project"],
        files=[config],
        cwd=config.parent,
        env=eng.environ(),
        wait_timeout=120,
        recreate=args.get("recreate"),  # what this run changed: back to before (on Podman)
    )
    if not result.ok:
        raise CommandFailed(
            command=f"docker compose -p {args['project']} -f {config} up -d --wait",
            returncode=result.returncode,
            output_tail=result.tail(),
        )
    if "keep_volumes" in args:  # volumes this run's config added: its own, removed (SPEC §1)
        for name in sorted(volumes.project_volumes(eng, project=args["project"]) - set(args["keep_volumes"])):
            volumes.remove_volume(eng, name)
    # What runs is that config again: the next reconcile's inverse must restore it, not the one
    # this run had written on its way (recorded by its `up`, undone here).
    os.replace(config, _resolved_of_kept(config))


def _resolved_of_kept(kept: Path) -> Path:
    """`<group>.before-<tag>.yaml` (keep_resolved's copy) -> `<group>.resolved.yaml`."""
    return kept.with_name(re.sub(r"\.before-[^.]+\.yaml$", ".resolved.yaml", kept.name))


class _Transient(Exception):
    """A compose failure worth another attempt: the engine blinked, or a port was taken."""

    def __init__(self, failure: CommandFailed, *, wait: bool) -> None:
        super().__init__(failure.message)
        self.failure, self.wait = failure, wait


def _retry_transient(attempt: Callable[[], None]) -> None:
    """Up to _ATTEMPTS tries; an engine blip waits 0.4, 0.8, 1.6 s, a moved port retries at once.
    The last failure is reported as compose reported it."""
    from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return 0.2 * 2**state.attempt_number if isinstance(exc, _Transient) and exc.wait else 0.0

    try:
        for round_ in Retrying(
            retry=retry_if_exception_type(_Transient),
            wait=wait,
            stop=stop_after_attempt(_ATTEMPTS),
            reraise=True,
        ):
            with round_:
                attempt()
    except _Transient as exc:
        raise exc.failure from None


def _check_settled(
    eng: Engine, *, ident: Identity, project: str, name: str, restarts_before: dict[str, queries.Restarts]
) -> None:
    """`--wait` accepts a container that exited or is crash-looping between two restarts (a
    second `network_mode: host` copy did exactly that): either fails the group."""
    exited = [
        c
        for c in queries.containers(eng, repo_id=ident.repo.repo_id, session=ident.session)
        if c.project == project and c.state == "exited" and c.exit_code != 0
    ]
    problems = [f"{c.service} (exit {c.exit_code})" for c in exited]
    for cid, now in sorted(queries.restarts(eng, project=project).items(), key=lambda kv: kv[1].service):
        earlier = restarts_before.get(cid)
        restarted = now.count - (earlier.count if earlier else 0)
        if now.state == "restarting" or restarted > 0:
            problems.append(f"{now.service} ({now.state}, {max(restarted, 0)} restarts during the wait)")
    if problems:
        raise CommandFailed(
            command=f"docker compose -p {project} up -d --wait",
            returncode=1,
            output_tail=f"containers exited or restarting: {', '.join(problems)}",
            what=f"group {name}:",
        )


def _check_uptime(eng: Engine, *, project: str, name: str, min_uptime: float) -> None:
    """SPEC §3: a container without a healthcheck is ready once it has run `min_uptime` seconds
    since its last start without exiting or restarting. `--wait` accepts it as soon as it runs,
    so a `restart: always` service that dies a second later was reported up.

    One that had exited 0 when `--wait` returned is a finished one-shot compose accepted (a
    `service_completed_successfully` dependency); one that exited otherwise, _check_settled failed.
    """
    if min_uptime <= 0:
        return
    first = {
        cid: u
        for cid, u in queries.uptimes(eng, project=project).items()
        if not u.healthcheck and u.state != "exited"
    }
    since = time.monotonic()
    now = first
    while first:
        problems = [
            f"{was.service} ({problem})"
            for cid, was in sorted(first.items(), key=lambda kv: kv[1].service)
            if (problem := _run_ended(was, now.get(cid)))
        ]
        if problems:
            raise CommandFailed(
                command=f"docker compose -p {project} up -d --wait",
                returncode=1,
                output_tail=f"containers without a healthcheck exited or restarted within min_uptime "
                f"({min_uptime:g} s): {', '.join(problems)}",
                what=f"group {name}:",
            )
        # Each has run up_for seconds by the engine's clock; and at least as long as we have been
        # watching it, whatever a remote engine's clock says.
        watched = time.monotonic() - since
        left = max(min_uptime - max(u.up_for, watched) for u in (now[c] for c in first))
        if left <= 0:
            return
        time.sleep(left + 0.05)
        now = queries.uptimes(eng, project=project)


def _run_ended(was: queries.Uptime, now: queries.Uptime | None) -> str | None:
    """How the run seen first ended since, if it did."""
    if now is None:
        return "removed"
    if now.state == "restarting":
        return "restarting"
    if (now.restarts, now.started_at) != (was.restarts, was.started_at):
        return "restarted"
    if now.state != "running":
        return f"{now.state}, exit {now.exit_code}"
    return None


@inverse("compose_down")
def undo(args: dict[str, Any], eng: Engine) -> None:
    """Remove the project's containers and networks, and the volumes this run created."""
    processes.kill_tagged(repo_id=args["repo_id"], session=args["session"], unit=f"compose:{args['project']}")
    keep = set(args["keep_volumes"])
    compose.down(eng, project=args["project"], volumes=not keep)
    # Confirmed through the engine, not assumed from compose's exit: what is still there (a
    # create that landed after `down`, a resumed session's new volume) is removed, a resumed
    # session's data volumes (`keep`) excepted, and what cannot be is a leftover (exit 3).
    left = removal.sweep_project(
        eng,
        project=args["project"],
        session=args["session"],
        repo_id=args["repo_id"],
        keep_volumes=keep,
        looks=1 if args.get("settled") else 2,  # a compose still running may yet create something
    )
    if left:
        raise DevupError(f"still on the engine after `compose down -p {args['project']}`: {', '.join(left)}")
