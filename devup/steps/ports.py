"""Port leases: the inverse of leasing releases exactly the leases a run took."""

from __future__ import annotations

from typing import Any

from devup import state
from devup.undo import inverse


@inverse("ports_release")
def undo(args: dict[str, Any]) -> None:
    """Release the session's leases (all of them when `ports` is None); already free is success."""
    state.release_ports(repo_id=args["repo_id"], session=args["session"], ports=args["ports"])
