"""Port leases (ports.json): one port per key and session across every repository, leased,
released and restored under the lease file's lock; a damaged file is rebuilt from the records."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devup import paths
from devup.errors import CorruptState, DevupError
from devup.locks import file_lock, write_atomic
from devup.records import read_record


def _read_leases(path: Path) -> dict[str, dict[str, Any]]:
    """The lease file; a damaged one is moved aside and rebuilt from the session records
    (SPEC §5.11): emptying it would hand other sessions' ports out again. Caller holds the lock."""
    try:
        return _valid_leases(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return {}
    except (ValueError, TypeError, KeyError, AttributeError, OSError):
        return _rebuild_leases(path)


def _valid_leases(data: Any) -> dict[str, dict[str, Any]]:
    leases = data["leases"]
    if not isinstance(leases, dict):
        raise TypeError("leases is not an object")
    for port, lease in leases.items():
        int(port)
        if not all(isinstance(lease.get(k), str) for k in ("repo", "session", "key")):
            raise TypeError(f"lease of port {port} is malformed")
    return leases


def _rebuild_leases(path: Path) -> dict[str, dict[str, Any]]:
    import sys
    import time

    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    with contextlib.suppress(OSError):
        os.replace(path, aside)
    leases: dict[str, dict[str, Any]] = {}
    for record_path in sorted(paths.state_root().glob("repos/*/sessions/*.json")):
        try:
            record = read_record(record_path)
        except CorruptState:
            continue  # that session's own problem; its ports are re-checked free before use
        if record is None:
            continue
        # The longest key of a port is its full key (STORE_8080 over its alias STORE).
        for key, port in sorted(record.ports.items(), key=lambda kv: len(kv[0])):
            leases[str(port)] = {"repo": record.repo_id, "session": record.session, "key": key}
    write_atomic(path, json.dumps({"leases": leases}, indent=1, sort_keys=True))
    print(
        f"warning: the port lease file {path} was damaged; moved it to {aside} and rebuilt it "
        f"from the session records ({len(leases)} leases)",
        file=sys.stderr,
    )
    return leases


def port_is_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def lease_ports(
    *,
    repo_id: str,
    session: str,
    keys: list[str],
    prefer: dict[str, int],
    port_range: tuple[int, int],
    avoid: frozenset[int] = frozenset(),
    held: frozenset[str] = frozenset(),
    is_free: Callable[[str, int], bool] | None = None,
) -> dict[str, int]:
    """Lease one port per key, preferring `prefer`; returns only the ports newly leased.

    A key this session already leases keeps its port if the port is free, or if `held`
    says one of the session's own running units is what binds it; otherwise it moves.
    `is_free(key, port)` says where a key's port must be free (a remote engine's host for its
    containers' ports); by default, on this machine.
    """

    def free(key: str, port: int) -> bool:
        return is_free(key, port) if is_free is not None else port_is_free(port)

    path = paths.ports_file()
    with file_lock(path.with_suffix(".lock")):
        leases = _read_leases(path)
        mine = {
            int(p): lease["key"]
            for p, lease in leases.items()
            if lease.get("repo") == repo_id and lease.get("session") == session
        }
        taken = {int(p) for p in leases}
        granted: dict[str, int] = {}
        candidates = iter(range(port_range[0], port_range[1] + 1))
        for key in keys:
            want = prefer.get(key)
            if want is not None and want not in avoid:
                if mine.get(want) == key:
                    if key in held or free(key, want):
                        continue  # still ours: nothing new to lease
                    del leases[str(want)]  # ours, but someone else binds it now: move
                elif want not in taken and free(key, want):
                    granted[key] = want
                    taken.add(want)
                    continue
            for port in candidates:
                if port not in taken and port not in avoid and free(key, port):
                    granted[key] = port
                    taken.add(port)
                    break
            else:
                raise DevupError(
                    f"no free port left in {port_range[0]}-{port_range[1]}",
                    hint="widen [ports].range in devup.toml or run `devup gc`",
                )
        for key, port in granted.items():
            leases[str(port)] = {"repo": repo_id, "session": session, "key": key}
        write_atomic(path, json.dumps({"leases": leases}, indent=1, sort_keys=True))
    return granted


def release_ports(*, repo_id: str, session: str, ports: list[int] | None = None) -> None:
    """Release this session's leases (all, or just `ports`); already released is fine."""
    path = paths.ports_file()
    with file_lock(path.with_suffix(".lock")):
        leases = _read_leases(path)
        keep = {
            p: lease
            for p, lease in leases.items()
            if not (
                lease.get("repo") == repo_id
                and lease.get("session") == session
                and (ports is None or int(p) in ports)
            )
        }
        if keep != leases:
            write_atomic(path, json.dumps({"leases": keep}, indent=1, sort_keys=True))


def restore_leases(*, repo_id: str, session: str, leases: dict[str, int]) -> None:
    """Lease `leases` (key -> port) to the session again where no one else holds the port."""
    path = paths.ports_file()
    with file_lock(path.with_suffix(".lock")):
        current = _read_leases(path)
        changed = False
        for key, port in leases.items():
            if str(port) not in current:
                current[str(port)] = {"repo": repo_id, "session": session, "key": key}
                changed = True
        if changed:
            write_atomic(path, json.dumps({"leases": current}, indent=1, sort_keys=True))


def all_leases() -> dict[int, dict[str, Any]]:
    path = paths.ports_file()
    with file_lock(path.with_suffix(".lock")):
        return {int(p): lease for p, lease in _read_leases(path).items()}
