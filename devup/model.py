"""Frozen value types shared by the use cases and the steps."""

from __future__ import annotations

from dataclasses import dataclass

from devup.compose import LABEL_GROUP, LABEL_REPO, LABEL_SESSION
from devup.paths import RepoPaths
from devup.processes import TAG_REPO_ID, TAG_SESSION, TAG_UNIT


@dataclass(frozen=True)
class Identity:
    """Who a resource belongs to: one session of one repository."""

    repo: RepoPaths
    session: str
    project: str  # the project's slug

    def compose_project(self, group: str) -> str:
        # The slug and the session name have no '_', so this name parses back unambiguously.
        return f"{self.project}_{self.session}_{group}"

    def labels(self, group: str) -> dict[str, str]:
        return {LABEL_SESSION: self.session, LABEL_REPO: self.repo.repo_id, LABEL_GROUP: group}

    def tags(self, unit: str) -> dict[str, str]:
        return {TAG_SESSION: self.session, TAG_REPO_ID: self.repo.repo_id, TAG_UNIT: unit}
