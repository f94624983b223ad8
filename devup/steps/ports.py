"""Port leases of one run: every change is journaled on the undo stack before it is made.

A new session's leases all go on a rollback; a resumed session gets back the leases its record
names (leasing may move it off a port someone else binds now), and gives up the new ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from devup.compose_model import PortSpec, port_keys
from devup.envvars import port_key
from devup.leases import lease_ports, port_is_free, release_ports, restore_leases
from devup.undo import UndoRecord, UndoStack, inverse

if TYPE_CHECKING:
    from devup.remote import Engine

PortFree = Callable[[str, int], bool]  # (lease key, port) -> free where the unit will bind it
# Makes a fresh check for each leasing (None: free on this machine): a remote engine's
# published ports are read once per leasing, not once per port.
PortCheck = Callable[[], PortFree | None]


def held_keys(
    *,
    services_alive: Iterable[str],
    running_groups: Iterable[str],
    models: dict[str, dict[str, list[PortSpec]]],
) -> frozenset[str]:
    """The keys a resumed session's own running units bind, so that their port being busy is
    not someone else's: native services still alive, and every published port of a group whose
    containers run (`models`: group -> service -> its published ports)."""
    held = {port_key(n) for n in services_alive}
    for name in running_groups:
        for svc, specs in models.get(name, {}).items():
            held |= {key for key, _ in port_keys(svc, specs)}
    return frozenset(held)


def free_check(engine: Engine, *, native: list[str]) -> Callable[[str, int], bool] | None:
    """On a remote engine, a container's port must be free on the engine's host and a native
    service's (keys `native`) on this machine; None on a local engine: every port here."""
    if not engine.remote:
        return None
    from devup import remote
    from devup.engine.queries import published_ports

    there = remote.port_checker(engine, lambda: published_ports(engine))
    return lambda key, port: port_is_free(port) if key in native else there(port)


class Leases:
    """The session's ports for this run: `lease` once, then `relet` for a port that turned out
    taken. `ports` holds every key and alias (`DEVUP_PORT_<KEY>` of SPEC §4)."""

    def __init__(
        self,
        *,
        stack: UndoStack,
        repo_id: str,
        session: str,
        keys: list[str],
        aliases: dict[str, str],
        port_range: tuple[int, int],
        free_check: PortCheck,
    ) -> None:
        self.stack, self.repo_id, self.session = stack, repo_id, session
        self.keys, self.aliases, self.port_range, self.free_check = keys, aliases, port_range, free_check
        self.ports: dict[str, int] = {}
        self._lock = threading.Lock()

    def lease(self, *, prefer: dict[str, int], resumed: bool, held: frozenset[str]) -> dict[str, int]:
        """Lease every key, keeping the `prefer`red ports (a resumed session's) where they are
        free or `held` by the session itself."""
        if not resumed:
            # Write-ahead: a new session's leases all go with it, whatever was granted before a crash.
            self._push_release(None, "port leases")
        else:
            # Write-ahead: leasing may move the session off a port someone else binds now; a
            # rollback gives the session back the leases its record names.
            self._push_restore({k: prefer[k] for k in self.keys if k in prefer}, "previous port leases")
        granted = lease_ports(
            repo_id=self.repo_id,
            session=self.session,
            keys=self.keys,
            prefer=prefer,
            port_range=self.port_range,
            held=held,
            is_free=self.free_check(),
        )
        if resumed and granted:
            self._push_release(sorted(granted.values()), "new port leases")
        self.ports = {k: granted.get(k, prefer.get(k, 0)) for k in self.keys}
        self.ports.update({alias: self.ports[full] for alias, full in self.aliases.items()})
        return self.ports

    def drop(self, leases: dict[str, int]) -> None:
        """Release `leases` (keys the config no longer has); a rollback leases them again."""
        if not leases:
            return
        self._push_restore(leases, "dropped port leases")
        release_ports(repo_id=self.repo_id, session=self.session, ports=sorted(set(leases.values())))

    def relet(self, keys: list[str], avoid: int) -> dict[str, int]:
        """Move `keys` off port `avoid` (someone else bound it); returns what moved, aliases
        included. Safe from the threads that bring groups and services up in parallel."""
        with self._lock:
            leased = [k for k in keys if k in self.keys]
            granted = lease_ports(
                repo_id=self.repo_id,
                session=self.session,
                keys=leased,
                prefer={},
                port_range=self.port_range,
                avoid=frozenset({avoid}),
                is_free=self.free_check(),
            )
            self._push_release(sorted(granted.values()), "replacement port leases")
            # The displaced lease goes back on a rollback (journaled before it is released).
            self._push_restore(
                {k: avoid for k in leased if self.ports.get(k) == avoid}, f"lease of port {avoid}"
            )
            release_ports(repo_id=self.repo_id, session=self.session, ports=[avoid])
            moved = dict(granted)
            moved.update({a: granted[f] for a, f in self.aliases.items() if f in granted})
            self.ports.update(moved)
            return moved

    def _push_release(self, ports: list[int] | None, label: str) -> None:
        record = {"repo_id": self.repo_id, "session": self.session, "ports": ports}
        self.stack.push(UndoRecord("ports_release", record, label))

    def _push_restore(self, leases: dict[str, int], label: str) -> None:
        if leases:
            record = {"repo_id": self.repo_id, "session": self.session, "leases": leases}
            self.stack.push(UndoRecord("ports_restore", record, label))


@inverse("ports_release")
def undo(args: dict[str, Any], _engine: Engine) -> None:
    """Release the session's leases (all of them when `ports` is None); already free is success."""
    release_ports(repo_id=args["repo_id"], session=args["session"], ports=args["ports"])


@inverse("ports_restore")
def undo_restore(args: dict[str, Any], _engine: Engine) -> None:
    """Give the session back the leases a run moved it off (a port someone else bound): a
    rolled-back resume keeps the ports its record names. A port leased to another session
    meanwhile stays theirs; the next `up` moves this one."""
    restore_leases(
        repo_id=args["repo_id"],
        session=args["session"],
        leases={k: int(p) for k, p in args["leases"].items()},
    )
