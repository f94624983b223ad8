"""What changed since a session came up (SPEC §5.12), told cheaply.

At the end of every `up` the record keeps fingerprints: a digest of each file compose may read
for the session's groups (present or not), of each outside variable that `[env]` or those files
name, of each service's resolved compose config and of each native service's command and
variables. The next `up` (and `ls`, `status`) reads the files and variables again, a few small
reads: when nothing differs, `up` is the fast no-op of §5.4; when something does, `up`
reconciles, and the service digests say which containers and processes to touch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from devup.envvars import REF


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return "-"
    except OSError:
        return "?"


def _var(name: str) -> str:
    value = os.environ.get(name)
    return "-" if value is None else hashlib.sha256(value.encode()).hexdigest()[:16]


def watch(
    *, worktree: Path, groups: Iterable[list[str]], session_env: Mapping[str, str], env_values: Iterable[str]
) -> dict[str, Any]:
    """The files compose may read for `groups` and the outside variables that they and `[env]`'s
    values (`env_values`) name, each with its digest now."""
    from devup import compose_inputs

    paths = compose_inputs.watched(worktree=worktree, groups=groups, env={**os.environ, **session_env})
    files = {p: _file(worktree / p) for p in paths}
    texts = [*env_values, *(_text(worktree / p) for p in paths)]
    names = {m.group(1) or m.group(2) for t in texts for m in REF.finditer(t)}
    names -= set(session_env)  # the session's own variables are devup's: fingerprinted as `env`
    return {"files": files, "vars": {n: _var(n) for n in sorted(names)}}


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    except OSError:
        return ""


def since(record: Any, *, config: str) -> list[str]:
    """What changed since session `record` came up, `config` being devup.toml's digest now."""
    return changed(
        inputs=record.inputs, worktree=record.worktree, recorded_config=record.config_digest, config=config
    )


def changed(*, inputs: Mapping[str, Any], worktree: str, recorded_config: str, config: str) -> list[str]:
    """What differs now from `inputs` (a record's fingerprints): "devup.toml", "compose input
    PATH", "variable NAME". Empty: nothing that `up` would apply."""
    found = [] if recorded_config == config else ["devup.toml"]
    root = Path(worktree)
    for path, was in (inputs.get("files") or {}).items():
        if _file(root / path) != was:
            found.append(f"compose input {path}")
    for name, was in (inputs.get("vars") or {}).items():
        if _var(name) != was:
            found.append(f"variable {name}")
    return found
