"""SPEC §4's variables: computed once per run, rendered as dotenv, shell or JSON."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

from devup.errors import Unrepresentable

REF = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def port_key(name: str) -> str:
    """The `<KEY>` of DEVUP_PORT_<KEY> for a service name: upper case, `-` as `_` (SPEC §4)."""
    return name.upper().replace("-", "_")


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
    urls: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The DEVUP_* variables, then `[env]` expanded against them, each other and the environment.

    `host` is DEVUP_HOST: where the session's published ports answer (a remote engine's host).
    `urls` are the hostname URLs of the port keys that have one (DEVUP_URL_<KEY>, SPEC §9).
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
    env.update({f"DEVUP_URL_{key}": url for key, url in sorted((urls or {}).items())})
    resolved: dict[str, str] = {}

    def expand(name: str) -> str:
        if name in resolved:
            return resolved[name]
        if name in env:
            return env[name]
        if name in extra:  # config validation rejects cycles, so this recursion ends
            resolved[name] = REF.sub(lambda m: expand(m.group(1) or m.group(2)), extra[name])
            return resolved[name]
        return os.environ.get(name, "")

    for name in extra:
        expand(name)
    env.update({name: resolved[name] for name in extra})
    return env


KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# python-dotenv expands `${NAME}` and `${NAME:-default}` in every value, quoted or not, and has
# no escape for `$`: a value containing this cannot reach a python-dotenv reader unchanged.
_DOTENV_EXPANSION = re.compile(r"\$\{[^}:]*(?::-[^}]*)?\}")
# In single quotes python-dotenv turns `\\` into `\` and reads `\'` as an escaped quote (so
# does compose for a final backslash); sh reads both literally.
_SINGLE_UNSAFE = re.compile(r"\\(?:\\|$)")


def file_value(key: str, value: str) -> str:
    """`value` in the form that `.` in sh/bash, compose's `env_file` and python-dotenv all read
    back exactly, with nothing expanded or run (SPEC §4):

    - plain characters stay unquoted;
    - otherwise single quotes, which all three read literally, when the value has no `'` and no
      backslash that python-dotenv would take as an escape (`\\\\`, or one at the very end);
    - otherwise double quotes with `\\` and `"` escaped, which all three decode alike, when
      the value has no `$` and no backtick (sh expands those in double quotes, and python-dotenv
      has no escape to keep them).

    The rest (a `'` or such a backslash together with a `$` or a backtick, `${...}`, a carriage
    return) has no form all of them agree on. Such a value is still written, in the form sh and
    bash read back exactly and that runs nothing anywhere (single quotes when they are safe, else
    double quotes with `\\`, `"`, `$` and the backtick escaped); the python-dotenv and compose
    readers then see a value that differs from it, which `inexact` names so that `up` says so.
    A branch name like ``pr'`id` `` must not stop a CI job, and must never run.
    """
    if "\0" in value:
        raise Unrepresentable(
            f"the value of {key} ({value!r}) contains a NUL character, which no environment can carry"
        )
    if unrepresentable(value) is None:
        if _PLAIN.fullmatch(value):
            return value
        if "'" not in value and not _SINGLE_UNSAFE.search(value):
            return f"'{value}'"
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if "'" not in value and not _SINGLE_UNSAFE.search(value):
        return f"'{value}'"
    # Double quotes with every `\\` and `"` escaped also end where python-dotenv and compose
    # think they end: an inexact value never swallows the lines after it.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("`", "\\`")
    return f'"{escaped}"'


def unrepresentable(value: str) -> str | None:
    """Why `value` has no env-file form all readers agree on (see file_value), or None."""
    if "\0" in value:
        return "contains a NUL character"
    if "\r" in value:
        return "contains a carriage return, which python-dotenv reads as a newline"
    if _DOTENV_EXPANSION.search(value):
        return "contains `${...}`, which python-dotenv always expands"
    if ("'" in value or _SINGLE_UNSAFE.search(value)) and ("$" in value or "`" in value):
        return (
            "contains a ' (or a backslash python-dotenv reads as an escape) together with a $ or a backtick"
        )
    return None


def inexact(env: Mapping[str, str]) -> dict[str, str]:
    """Key -> why python-dotenv and compose's env_file will not read its value back exactly
    (sh, bash and `eval` of the shell format always do)."""
    return {k: why for k, v in env.items() if (why := unrepresentable(v)) is not None}


def check_file_safe(env: Mapping[str, str]) -> None:
    """Refuse (exit 2) a key that is no variable name or a value no env file can carry; called
    at preflight, before anything changes."""
    for key, value in env.items():
        if not KEY.fullmatch(key):
            raise Unrepresentable(f"{key!r} is not a valid variable name (^[A-Za-z_][A-Za-z0-9_]*$)")
        file_value(key, value)


# The env file's first line: how devup tells its own file from a user's of the same name in a
# worktree it attaches to (new-L6). A comment to sh, compose's env_file and python-dotenv alike.
ENV_FILE_HEADER = "# devup's session variables: `devup up` rewrites this file, `devup down` removes it"


def dotenv(env: Mapping[str, str]) -> str:
    """The env file: devup's header, then one `KEY=value` line per variable, each value in
    file_value's form."""
    check_file_safe(env)
    return ENV_FILE_HEADER + "\n" + "".join(f"{key}={file_value(key, value)}\n" for key, value in env.items())


def written_by_devup(path: Path) -> bool:
    """Whether the file at `path` is an env file devup wrote: a regular file (no link, no FIFO)
    whose first line is devup's header or, written before the header was, sets DEVUP_SESSION
    (session_vars always puts it first)."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with path.open(encoding="utf-8") as f:
            first = f.readline(4096).rstrip("\n")
    except (OSError, ValueError):
        return False
    return first == ENV_FILE_HEADER or first.startswith("DEVUP_SESSION=")


def shell(env: Mapping[str, str]) -> str:
    """`export` lines for `eval`: POSIX single quotes (`'` as `'\\''`) are inert for any value."""
    for key in env:
        if not KEY.fullmatch(key):
            raise Unrepresentable(f"{key!r} is not a valid variable name (^[A-Za-z_][A-Za-z0-9_]*$)")
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def as_json(env: Mapping[str, str]) -> str:
    return json.dumps(dict(env), indent=2)
