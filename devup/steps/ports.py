"""Port leases: the inverse of leasing releases exactly the leases a run took."""

from __future__ import annotations

from typing import Any

from devup import state
from devup.undo import inverse


@inverse("ports_release")
def undo(args: dict[str, Any]) -> None:
    """Release the session's leases (all of them when `ports` is None); already free is success."""
    state.release_ports(repo_id=args["repo_id"], session=args["session"], ports=args["ports"])


@inverse("ports_restore")
def undo_restore(args: dict[str, Any]) -> None:
    """Give the session back the leases a run moved it off (a port someone else bound): a
    rolled-back resume keeps the ports its record names. A port leased to another session
    meanwhile stays theirs; the next `up` moves this one."""
    state.restore_leases(
        repo_id=args["repo_id"],
        session=args["session"],
        leases={k: int(p) for k, p in args["leases"].items()},
    )
