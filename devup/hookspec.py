"""A hook, normalised: the one shape `up` (through the validated config) and `down` use.

No pydantic here: `down` reads only its own hooks from devup.toml, and must work (and start
fast) even when the rest of the file no longer validates.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Hook:
    """Commands run in order; `undo` joins the undo stack after they succeed."""

    name: str
    commands: tuple[str, ...]
    undo: str | None = None
    timeout: float | None = None


def normalise(name: str, value: Any) -> Hook | None:
    """A hook from its devup.toml form: a string, a list of strings, or {run, undo, timeout}."""
    if value is None:
        return None
    if isinstance(value, dict):
        run = value["run"]
        return Hook(
            name=name,
            commands=tuple([run] if isinstance(run, str) else run),
            undo=value.get("undo"),
            timeout=value.get("timeout"),
        )
    return Hook(name=name, commands=tuple([value] if isinstance(value, str) else value))


@dataclass(frozen=True)
class TeardownSettings:
    pre_down: Hook | None
    post_down: Hook | None
    copy: tuple[str, ...]


def teardown_settings(config_file: Path) -> TeardownSettings:
    """What `down` needs from devup.toml; anything unreadable or malformed counts as absent."""
    try:
        raw = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return TeardownSettings(None, None, ())
    hooks: dict[str, Any] = raw["hooks"] if isinstance(raw.get("hooks"), dict) else {}
    worktree: dict[str, Any] = raw["worktree"] if isinstance(raw.get("worktree"), dict) else {}
    copy = worktree.get("copy")
    return TeardownSettings(
        pre_down=_checked("pre_down", hooks.get("pre_down")),
        post_down=_checked("post_down", hooks.get("post_down")),
        copy=tuple(c for c in copy if isinstance(c, str)) if isinstance(copy, list) else (),
    )


def _checked(name: str, value: Any) -> Hook | None:
    return normalise(name, value) if _valid(value) else None


def _finite_timeout(value: Any) -> bool:
    """As config.py allows: a number of seconds above 0, finite, at most a day."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 86400


def _valid(value: Any) -> bool:
    """The shapes config.py's validation accepts for a hook (a malformed one is skipped)."""

    def commands(v: Any) -> bool:
        return isinstance(v, str) or (isinstance(v, list) and all(isinstance(c, str) for c in v))

    if value is None or commands(value):
        return True
    if isinstance(value, dict):
        undo, timeout = value.get("undo"), value.get("timeout")
        return (
            commands(value.get("run"))
            and (undo is None or isinstance(undo, str))
            and (timeout is None or _finite_timeout(timeout))
        )
    return False
