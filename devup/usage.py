"""When a session was last used (SPEC §5.13), and `[limits]` read without pydantic.

A devup command naming a session touches a file (`used/NAME`); a commit or a checkout in its
worktree moves the worktree's HEAD reflog. Both are read back with a stat, so `up` can look at
every session of a repository for what is due at the cost of a few system calls each.
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup.paths import RepoPaths, ensure_dir

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


MAX_DURATION = 3650 * 86400.0  # ten years


def parse_duration(text: str) -> float:
    """`30m`, `4h`, `7d` (and `90s`) in seconds; anything else is a ValueError naming the forms."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit, e.g. 90s, 30m, 4h, 7d")
    seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if seconds > MAX_DURATION:  # an expiry must stay a date (`ls`'s column, `--json`'s ISO time)
        raise ValueError(
            f"{text!r} is too long: at most {MAX_DURATION // 86400:.0f}d; leave it out to never expire"
        )
    return seconds


def touch(repo: RepoPaths, name: str) -> None:
    """Session `name` was used now. Best effort: a read-only state folder must not fail the
    command that used the session."""
    path = repo.state / "used" / name
    with contextlib.suppress(OSError):
        try:
            os.utime(path)
        except FileNotFoundError:
            ensure_dir(path.parent)
            path.touch(mode=0o600)


def forget(repo: RepoPaths, name: str) -> None:
    with contextlib.suppress(OSError):
        (repo.state / "used" / name).unlink(missing_ok=True)


def last_used(repo: RepoPaths, name: str, *, worktree: str, since: float) -> float:
    """The latest of `since` (the record's last change), the last devup command naming the
    session, and the last commit or checkout in its worktree."""
    times = [since, _mtime(repo.state / "used" / name)]
    gitdir = _gitdir(Path(worktree))
    if gitdir is not None:
        times += [_mtime(gitdir / "logs" / "HEAD"), _mtime(gitdir / "HEAD")]
    return max(times)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _gitdir(worktree: Path) -> Path | None:
    """A linked worktree's own git folder (`.git` is a file naming it); the main checkout's
    `.git` folder itself."""
    dot = worktree / ".git"
    try:
        if dot.is_dir():
            return dot
        text = dot.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    found = Path(text.removeprefix("gitdir:").strip())
    return found if found.is_absolute() else worktree / found


@dataclass(frozen=True)
class Limits:
    """`[limits]` (SPEC §3, §5.13); None: no such limit."""

    max_sessions: int | None = None
    max_running: int | None = None
    evict: str = "lru"
    idle_stop: float | None = None  # seconds
    expire: float | None = None  # seconds

    @property
    def reaps(self) -> bool:
        return self.idle_stop is not None or self.expire is not None


def limits_of(config_text: str) -> Limits:
    """`[limits]` read without validating the rest (config.py validates it: a bad value is exit 2
    there); what cannot be read here counts as no limit."""
    try:
        table: Any = tomllib.loads(config_text).get("limits", {})
    except tomllib.TOMLDecodeError:
        return Limits()
    if not isinstance(table, dict):
        return Limits()

    def count(key: str) -> int | None:
        value = table.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    def seconds(key: str) -> float | None:
        value = table.get(key)
        try:
            return parse_duration(value) if isinstance(value, str) else None
        except ValueError:
            return None

    evict = table.get("evict")
    return Limits(
        max_sessions=count("max_sessions"),
        max_running=count("max_running"),
        evict=evict if evict in ("lru", "none") else "lru",
        idle_stop=seconds("idle_stop"),
        expire=seconds("expire"),
    )
