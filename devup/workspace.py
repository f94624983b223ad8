"""A repository as devup sees it: main checkout, config, state paths, per-session locks."""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devup import __version__, git
from devup.locks import file_lock
from devup.paths import CONFIG_NAME, RepoPaths, check_session_name, digest, read_config
from devup.records import SessionRecord, read_record

if TYPE_CHECKING:
    from devup.config import Config


@dataclass(frozen=True)
class Workspace:
    repo: RepoPaths

    @functools.cached_property
    def config_text(self) -> str:
        return read_config(self.repo.root)

    @functools.cached_property
    def config(self) -> Config:
        from devup import config

        # Validated (pydantic, ~0.15 s) only when `up` has not validated this very text before.
        return config.cached(self.repo.config_values, self.config_text) or config.parse(
            self.repo.root / CONFIG_NAME, self.config_text
        )

    @functools.cached_property
    def remembered_config(self) -> Config:
        """The config, its values kept for the next command (config.remember): once a process."""
        from devup import config

        config.remember(self.repo.config_values, self.config_text, self.config)
        return self.config

    @property
    def config_digest(self) -> str:
        """What a session records of the config it was brought up with (see session.up); with
        devup's version, because another version may validate the same text differently."""
        return digest(f"devup {__version__}\n{self.config_text}")

    @property
    def project(self) -> str:
        name = self.config.project.name or self.repo.root.name
        return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "project"

    @property
    def worktrees_dir(self) -> Path:
        configured = self.config.project.worktrees
        if configured:
            # `~` is the user's home, as in a shell; anything else is relative to the checkout.
            return (self.repo.root / Path(configured).expanduser()).resolve()
        return self.repo.root.parent / f"{self.repo.root.name}-worktrees"

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the session's lock: a second run on the same session exits 4 at once. Taken
        again by the thread that holds it, it is held once more (the reaper holds a session
        while it judges it and then brings it down through `down`, which takes the lock too:
        flock on a second descriptor would meet the first as busy)."""
        check_session_name(name)
        path = self.repo.lock(name)
        held: dict[Path, int] = _held.__dict__.setdefault("locks", {})
        if held.get(path):
            held[path] += 1
            try:
                yield
            finally:
                held[path] -= 1
            return
        with file_lock(
            path,
            blocking=False,
            busy_message=f"session {name} is busy: another devup run holds it",
        ):
            held[path] = 1
            try:
                yield
            finally:
                del held[path]

    def record(self, name: str) -> SessionRecord | None:
        return read_record(self.repo.record(name))


_held = threading.local()  # the session locks this thread holds: path -> depth


def open_workspace(cwd: Path) -> Workspace:
    return Workspace(repo=git.find_repo(cwd))
