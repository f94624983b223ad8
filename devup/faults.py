"""Fault injection, a test facility: DEVUP_FAULT="ACTION@POINT[,ACTION@POINT...]".

ACTION is `raise` (the step fails), `kill` (devup SIGKILLs itself, as a crash would) or `bug`
(a programming error, not a DevupError, is raised).
POINT is `before:STEP` or `after:STEP`, STEP one of pre_up, worktree, copy, ports, env_file,
post_create, data (`up --from`'s copies), group:NAME, pre_spawn, service:NAME, post_up, commit;
or `during:PHASE`, right after a data copy's helper container started (it copies on when devup
is killed there), PHASE one of snapshot (`snapshot create`, and a restore's keeping copy),
restore (a restore's copy into the session), clone (`up --from`), copy-back (a restore undone);
or `during:restarted`, a restore's containers started again on the restored data; or
`during:retire`, after a reconcile's commit, before a retired group's stopped containers go.
"""

from __future__ import annotations

import os
import signal

from devup.errors import InjectedFault


def hit(point: str) -> None:
    spec = os.environ.get("DEVUP_FAULT", "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        action, _, where = item.partition("@")
        if where == point:
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if action == "bug":
                raise TypeError(f"injected programming error at {point} (DEVUP_FAULT)")
            raise InjectedFault(f"fault injected at {point} (DEVUP_FAULT)")
