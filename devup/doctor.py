"""`devup doctor`: is each outside tool there, which version, and how to fix what is missing."""

from __future__ import annotations

import re
from typing import Any

from devup import compose, remote, runner
from devup.engine.facts import facts
from devup.engine.http import engine_version
from devup.errors import DevupError


def _check(fn: Any, fix: str) -> dict[str, Any]:
    try:
        return {"ok": True, "version": fn(), "error": None, "fix": None}
    except DevupError as exc:
        return {"ok": False, "version": None, "error": exc.message, "fix": exc.hint or fix}


def _git() -> str:
    result = runner.run(["git", "--version"], timeout=10)
    match = re.search(r"(\d+\.\d+(\.\d+)?)", result.output)
    if not result.ok or not match:
        raise DevupError("git not found")
    major, minor = (int(x) for x in match.group(1).split(".")[:2])
    if (major, minor) < (2, 30):
        raise DevupError(f"git {match.group(1)} is older than 2.30")
    return match.group(1)


def _engine() -> dict[str, Any]:
    """Which engine answers (Docker or Podman, version, rootless or not; SPEC §6) and what it
    lacks for devup, with the fix."""
    eng = remote.current()
    check = _check(
        lambda: engine_version(eng, attempts=1),  # a diagnosis of now: no waiting
        "start a Docker engine (Debian: apt-get install docker.io; dockerd &), or Podman's API "
        "service (podman system service --time=0 unix:///run/podman/podman.sock &)",
    )
    check.update(kind=None, rootless=None, host=eng.host, lacks=[])
    if check["ok"]:
        try:
            found = facts(eng)
        except DevupError:
            return check
        check.update(
            version=f"{found.summary} at {eng.host}",
            kind=found.name,
            rootless=found.rootless,
            lacks=[lack.to_json() for lack in found.lacks],
        )
    return check


def run() -> dict[str, dict[str, Any]]:
    return {
        "git": _check(_git, "install git 2.30 or newer (Debian: apt-get install git)"),
        "engine": _engine(),
        "compose": _check(
            compose.compose_version,
            "install Compose v2 (docker compose plugin or a v2 docker-compose binary)",
        ),
    }


def contexts() -> list[dict[str, Any]]:
    """Each docker context: the engine it points at, whether that is remote, whether it answers.

    An engine that does not answer is reported, not a failure: a remote machine may be off.
    """
    current = remote.current_context()
    found = []
    for name in sorted(remote.contexts()):
        engine = remote.by_context(name, where="doctor")
        entry: dict[str, Any] = {
            "name": name,
            "host": engine.host,
            "remote": engine.remote,
            "current": name == current,
            "address": engine.address,
        }
        try:
            entry.update(answers=True, version=engine_version(engine, attempts=1), error=None)
        except DevupError as exc:
            entry.update(answers=False, version=None, error=exc.message)
        found.append(entry)
    return found
