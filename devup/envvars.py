"""SPEC §4's variables: computed once per run, rendered as dotenv, shell or JSON."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping

_REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_PLAIN = re.compile(r"^[A-Za-z0-9_./:@%+,=-]*$")


def session_vars(
    *,
    session: str,
    project: str,
    branch: str,
    worktree: str,
    repo: str,
    mode: str,
    resumed: bool,
    ports: Mapping[str, int],
    extra: Mapping[str, str],
    host: str = "127.0.0.1",
) -> dict[str, str]:
    """The DEVUP_* variables, then `[env]` expanded against them, each other and the environment.

    `host` is DEVUP_HOST: where the session's published ports answer (a remote engine's host).
    """
    env = {
        "DEVUP_SESSION": session,
        "DEVUP_PROJECT": project,
        "DEVUP_BRANCH": branch,
        "DEVUP_WORKTREE": worktree,
        "DEVUP_REPO": repo,
        "DEVUP_MODE": mode,
        "DEVUP_RESUMED": "1" if resumed else "0",
        "DEVUP_HOST": host,
    }
    env.update({f"DEVUP_PORT_{key}": str(port) for key, port in sorted(ports.items())})
    resolved: dict[str, str] = {}

    def expand(name: str) -> str:
        if name in resolved:
            return resolved[name]
        if name in env:
            return env[name]
        if name in extra:  # config validation rejects cycles, so this recursion ends
            resolved[name] = _REF.sub(lambda m: expand(m.group(1) or m.group(2)), extra[name])
            return resolved[name]
        return os.environ.get(name, "")

    for name in extra:
        expand(name)
    env.update({name: resolved[name] for name in extra})
    return env


def dotenv(env: Mapping[str, str]) -> str:
    lines = []
    for key, value in env.items():
        if _PLAIN.match(value):
            lines.append(f"{key}={value}")
        elif "'" not in value and "\n" not in value:
            lines.append(f"{key}='{value}'")
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("\n", "\\n")
            lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


def shell(env: Mapping[str, str]) -> str:
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def as_json(env: Mapping[str, str]) -> str:
    return json.dumps(dict(env), indent=2)
