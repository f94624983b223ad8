"""The session's hostnames (SPEC §9): one route on the shared router, its inverse pushed first.

The route's id derives from the repository and the session (router.route_id), so its intent
alone is enough to undo it after a crash; the inverse removes exactly that route (gone already,
or no router running: success), or, for a reconcile of a running session, puts back the route
the session had.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from devup import router
from devup.envvars import port_key
from devup.errors import RouterError
from devup.undo import UndoRecord, UndoStack, inverse

if TYPE_CHECKING:
    from devup.compose import GroupModel
    from devup.config import ServiceCfg
    from devup.remote import Engine


@dataclass(frozen=True)
class Target:
    """A compose service with a published port, or a native service with `port = true`."""

    name: str
    host: str
    lease: str  # the DEVUP_PORT_ key of the port its hostname leads to
    keys: tuple[str, ...]  # the DEVUP_PORT_ keys of that port: each gets its DEVUP_URL_
    address: str = "127.0.0.1"  # where the router reaches that port: `[::1]` for one published there


def targets(
    *, models: Mapping[str, GroupModel], aliases: Mapping[str, str], services: Mapping[str, ServiceCfg]
) -> list[tuple[str, str, tuple[str, ...], str]]:
    """(target, the key of the port its hostname leads to, every DEVUP_PORT_ key of that port,
    the address the router reaches it on): each compose service's first published port, each
    native service's port."""
    found: list[tuple[str, str, tuple[str, ...], str]] = []
    for model in models.values():
        for svc, specs in model.services.items():
            alias = port_key(svc)
            full = aliases.get(alias)
            if specs and full is not None:
                found.append((svc, alias, (alias, full), _reached_on(specs[0].host_ip)))
    for name, cfg in services.items():
        if cfg.port:
            found.append((name, port_key(name), (port_key(name),), "127.0.0.1"))
    return found


def _reached_on(host_ip: str | None) -> str:
    """The loopback address a port published on `host_ip` answers on: IPv6's for one published
    on an IPv6 address (`[::1]::8080`: 127.0.0.1 gets no answer there), else IPv4's."""
    if host_ip and ":" in host_ip:
        return "[::1]" if host_ip in ("::", "::1") else f"[{host_ip}]"
    if host_ip and host_ip != "0.0.0.0":
        return host_ip
    return "127.0.0.1"


class Hostnames:
    """One run's hostnames: named from the plan, put on the router by `apply`, moved with a port
    by `follow`. `urls` (target -> URL) and `url_vars` (key -> URL) are empty until `apply`."""

    def __init__(
        self,
        *,
        stack: UndoStack,
        repo_id: str,
        session: str,
        project: str,
        domain: str,
        https: bool,
        fallback: tuple[int, int],
        targets: list[tuple[str, str, tuple[str, ...], str]],
        required: bool,
        warn: Callable[[str], None],
    ) -> None:
        self.stack, self.https, self.fallback, self.required, self.warn = (
            stack,
            https,
            fallback,
            required,
            warn,
        )
        self.route_id = router.route_id(repo_id, session)
        label = router.project_label(project, repo_id)
        self.targets = [
            Target(
                name,
                router.hostname(target=name, session=session, project=label, domain=domain),
                lease,
                keys,
                address,
            )
            for name, lease, keys, address in targets
        ]
        self.urls: dict[str, str] = {}
        self.url_vars: dict[str, str] = {}
        self.off = ""  # why the hostnames are off for this run, when the router could not start

    def apply(self, ports: Mapping[str, int], *, restore: bool) -> None:
        """Put the session's route on the router (started if need be). With `restore` (a
        reconcile of a running session), a rollback puts back the route it had, else removes it."""
        previous = _quietly(lambda: router.get(self.route_id)) if restore else None
        args = {"id": self.route_id, "restore": previous, "ports": list(self.fallback)}
        hosts = ", ".join(t.host for t in self.targets)
        self.stack.push(UndoRecord("route_remove", args, f"route of {hosts}"))
        try:
            found = router.put(self.route_id, self._hosts(ports), ports=self.fallback)
        except RouterError as exc:
            if self.required:
                raise
            # [routes].hostnames left to its default: on where the router can run (SPEC §9).
            self.warn(f"hostnames are off for this run: {exc.message}")
            self.off = exc.message
            return
        self.urls = {t.name: found.url(t.host, https=self.https) for t in self.targets}
        self.url_vars = {key: self.urls[t.name] for t in self.targets for key in t.keys}

    def follow(self, ports: Mapping[str, int]) -> None:
        """A port moved (someone else took it): the route leads to the new one. The record
        already on the stack undoes this too (it names the route, not its ports)."""
        if self.urls:
            router.put(self.route_id, self._hosts(ports), ports=self.fallback)

    def _hosts(self, ports: Mapping[str, int]) -> dict[str, str]:
        """hostname -> the address and port the router passes it to."""
        return {t.host: f"{t.address}:{ports[t.lease]}" for t in self.targets if ports.get(t.lease)}


def _quietly(read: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    try:
        return read()
    except RouterError:
        return None


def remove(*, repo_id: str, session: str) -> None:
    """`stop` and `down`: the session's route goes (idempotent)."""
    router.remove(router.route_id(repo_id, session))


def retire(*, stack: UndoStack, repo_id: str, session: str, fallback: tuple[int, int]) -> None:
    """A session whose hostnames were turned off (or that has no target left): its route goes;
    a rollback puts it back."""
    rid = router.route_id(repo_id, session)
    previous = router.get(rid)
    if previous is None:
        return
    stack.push(
        UndoRecord("route_remove", {"id": rid, "restore": previous, "ports": list(fallback)}, f"route {rid}")
    )
    router.remove(rid)


@inverse("route_remove")
def undo(args: dict[str, Any], _engine: Engine) -> None:
    """Remove the session's route (already gone, or no router: success), or put back the route
    a reconciled session had before this run."""
    if args.get("restore"):
        router.put_raw(args["restore"], ports=(int(args["ports"][0]), int(args["ports"][1])))
    else:
        router.remove(args["id"])
