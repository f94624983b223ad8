"""What an `up` will do to a session (SPEC §5.12): one answer for the run and for `--dry-run`.

A new session gets everything created. An existing one is compared with the fingerprints its
record keeps (drift.py): a group whose services' resolved configs are all unchanged is kept as
it runs, a changed one is recreated by compose (its unchanged services keep their containers),
an added one is brought up and a removed one taken down (its data volumes kept); a native
service whose command or variables changed is restarted; new port keys are leased and dropped
ones released.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devup import drift
from devup.envvars import port_key

if TYPE_CHECKING:
    from devup.config import Config, ServiceCfg
    from devup.preflight import Plan

# Variables that differ between a session's first `up` and its resumes by design: no change.
_RUN_ONLY = frozenset({"DEVUP_RESUMED"})


@dataclass(frozen=True)
class Change:
    kind: str  # worktree branch group container service port env_file hook volume
    name: str
    action: str  # create recreate start stop restart remove keep lease release write run

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "action": self.action}


def group_digests(plan: Plan, name: str, env: dict[str, str]) -> dict[str, str]:
    """Its services' resolved configs, its own settings, and the host ports its services
    publish on (a moved lease changes the override: the group is recreated)."""
    mine = tuple(f"DEVUP_PORT_{port_key(s)}" for s in plan.models[name].services)
    ports = {k: v for k, v in env.items() if k.startswith(mine)}
    return {
        **plan.models[name].digests,
        "#cfg": drift.digest(dump(plan.groups[name])),
        "#ports": drift.digest(ports),
    }


def changed_services(plan: Plan, name: str, env: dict[str, str]) -> list[str] | None:
    """The group's services whose resolved config or host ports changed since the session's last
    `up` (new ones included); None when that is not known, or when only the group's own settings,
    networks or volumes changed: compose then decides alone. (Used on Podman, where compose would
    recreate every container: SPEC §5.12 keeps the unchanged ones.)"""
    previous = plan.previous
    was = ((previous.inputs if previous else {}).get("groups") or {}).get(name)
    if not was or previous is None:
        return None
    now = group_digests(plan, name, env)
    services = plan.models[name].services
    changed = {s for s in services if was.get(s) != now.get(s)}
    changed |= {s for s in services if _port_vars(previous.env, s) != _port_vars(env, s)}
    if not changed and any(was.get(key) != now.get(key) for key in ("#cfg", "#ports", "")):
        return None
    return sorted(changed)


def _port_vars(env: Mapping[str, str], service: str) -> dict[str, str]:
    """DEVUP_PORT_<SERVICE> and DEVUP_PORT_<SERVICE>_<port...> of `service` (not of a service
    whose key only starts alike)."""
    base = f"DEVUP_PORT_{port_key(service)}"
    return {
        k: v
        for k, v in env.items()
        if k == base or (k.startswith(base + "_") and k[len(base) + 1 :][:1].isdigit())
    }


def service_digest(cfg: ServiceCfg, env: dict[str, str]) -> str:
    return drift.digest([dump(cfg), {k: v for k, v in env.items() if k not in _RUN_ONLY}])


def inputs(plan: Plan, cfg: Config, env: dict[str, str]) -> dict[str, Any]:
    """The fingerprints of a session brought up by `plan` with variables `env`, which the next
    `up` (`diff`), `ls` and `status` (drift.py) compare with."""
    return {
        **drift.watch(
            worktree=plan.wt.path,
            groups=[g.files for g in plan.groups.values()],
            session_env=env,
            env_values=cfg.env.values(),
        ),
        "config_mode": cfg.project.mode,  # an edit of it is a change to apply
        "groups": {g: group_digests(plan, g, env) for g in plan.groups},
        "services": {s: {"digest": service_digest(c, env), "run": c.run} for s, c in plan.services.items()},
    }


@dataclass(frozen=True)
class Diff:
    """The answer, by unit; `changes` lists it in SPEC §5.12's vocabulary."""

    new: bool
    groups: dict[str, str]  # group -> create | recreate | start | keep | remove
    services: dict[str, str]  # native service -> start | restart | keep | stop
    changes: list[Change]


def diff(plan: Plan, cfg: Config, *, env: dict[str, str], running: set[str], hooks: bool) -> Diff:
    """`env`: the session's variables as this run would write them; `running`: the groups and
    services of the previous record that run now (a stopped one is started, not kept)."""
    previous = plan.previous
    inputs: dict[str, Any] = previous.inputs if previous else {}
    before_groups: dict[str, dict[str, str]] = inputs.get("groups") or {}
    before_services: dict[str, dict[str, str]] = inputs.get("services") or {}
    recorded = {g.name for g in previous.groups} if previous else set()
    changes: list[Change] = []
    if previous is None:
        changes += [Change("worktree", str(plan.wt.path), "keep" if plan.wt.exists else "create")]
        if plan.wt.new_from:
            changes.append(Change("branch", plan.branch, "create"))
    groups: dict[str, str] = {}
    for name in plan.groups:
        now = group_digests(plan, name, env)
        was = before_groups.get(name)
        if name not in recorded:
            action = "create"
        elif name not in running:
            action = "start"
        elif was is None or was != now:
            action = "recreate"
        else:
            action = "keep"
        groups[name] = action
        changes.append(Change("group", name, action))
        if action in ("recreate", "start") and was is not None and was != now:
            changes += _containers(name, was, now)  # a stopped group's changed services too
    for name in sorted(recorded - set(plan.groups)):
        groups[name] = "remove"
        changes.append(Change("group", name, "remove"))
    services: dict[str, str] = {}
    for name, scfg in plan.services.items():
        was_s = before_services.get(name)
        if previous is None or name not in (previous.services if previous else {}) or name not in running:
            action = "start"
        elif was_s is None or was_s.get("digest") != service_digest(scfg, env):
            action = "restart"
        else:
            action = "keep"
        services[name] = action
        changes.append(Change("service", name, action))
    for name in sorted(set(previous.services) - set(plan.services) if previous else set()):
        services[name] = "stop"
        changes.append(Change("service", name, "stop"))
    before_ports = set(previous.ports) if previous else set()
    keys = set(plan.lease_keys) | set(plan.aliases)
    changes += [Change("port", k, "lease") for k in sorted(keys - before_ports)]
    changes += [Change("port", k, "release") for k in sorted(before_ports - keys)]
    if previous is None or previous.env != env:
        changes.append(Change("env_file", "env file", "write"))
    if hooks:
        names = ["pre_up", *(["post_create"] if not plan.wt.exists else []), "pre_spawn", "post_up"]
        changes += [Change("hook", n, "run") for n in names if cfg.hooks.get(n) is not None]
    return Diff(previous is None, groups, services, changes)


def _containers(group: str, was: dict[str, str], now: dict[str, str]) -> list[Change]:
    """Per service of a recreated group: compose recreates only what changed."""
    found = []
    for svc in sorted((set(was) | set(now)) - {"", "#cfg", "#ports"}):
        if svc not in was:
            action = "create"
        elif svc not in now:
            action = "remove"
        else:
            action = "keep" if was[svc] == now[svc] else "recreate"
        found.append(Change("container", f"{group}/{svc}", action))
    return found


def dump(cfg: Any) -> dict[str, Any]:
    from devup import config  # not at import: a no-op `up` reads no config

    return config.dump(cfg)
