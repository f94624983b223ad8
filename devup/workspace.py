"""A repository as devup sees it: main checkout, config, state paths, per-session locks and recovery."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devup import __version__, git, journal, state, steps
from devup.errors import BusyError
from devup.paths import CONFIG_NAME, RepoPaths, check_session_name, digest, read_config
from devup.report import Reporter
from devup.undo import Leftover, UndoRecord, unwind_records

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
        from devup import config  # pydantic: only the commands that read devup.toml pay for it

        return config.parse(self.repo.root / CONFIG_NAME, self.config_text)

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
            return (self.repo.root / configured).resolve()
        return self.repo.root.parent / f"{self.repo.root.name}-worktrees"

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold the session's lock: a second run on the same session exits 4 at once."""
        check_session_name(name)
        with state.file_lock(
            self.repo.lock(name),
            blocking=False,
            busy_message=f"session {name} is busy: another devup run holds it",
        ):
            yield

    def record(self, name: str) -> state.SessionRecord | None:
        return state.read_record(self.repo.record(name))

    def recover(self, name: str, reporter: Reporter, *, include_kept: bool = False) -> list[Leftover] | None:
        """Finish an interrupted run of `name` (caller holds the lock); None when there was none."""
        path = self.repo.journal(name)
        found = journal.replay(path)
        if found is None:
            return None
        if found.outcome in ("committed", "rolled_back") or (found.outcome == "kept" and not include_kept):
            if found.outcome != "kept":
                path.unlink(missing_ok=True)
            return None
        reporter.note(f"rolling back the interrupted run of {name}")
        records = [(i, UndoRecord.from_json(r)) for i, r in reversed(found.pending)]
        steps.load_all()  # every inverse a journal may name
        jr = journal.Journal(path)
        leftovers = unwind_records(jr, records, on_undo=reporter.undone)
        if leftovers:
            return leftovers
        if found.begin.get("resumed"):
            mark_failed(self, name)
        path.unlink(missing_ok=True)
        return []


def recover_if_idle(ws: Workspace, name: str, reporter: Reporter) -> None:
    """Finish an interrupted run of `name` unless a run holds it (read-only commands never wait)."""
    found = journal.replay(ws.repo.journal(name))
    if found is None or found.outcome is not None:
        return
    try:
        with ws.locked(name):
            ws.recover(name, reporter)
    except BusyError:
        pass  # a run is in progress: it is not interrupted


def mark_failed(ws: Workspace, name: str) -> None:
    record = ws.record(name)
    if record is not None:
        state.write_record(ws.repo.record(name), record.replace(status="failed", services={}))


def open_workspace(cwd: Path) -> Workspace:
    return Workspace(repo=git.find_repo(cwd))
