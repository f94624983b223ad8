"""Frozen value types shared by the use cases and the steps."""

from __future__ import annotations

from dataclasses import dataclass

from devup.engine.labels import LABEL_GROUP, LABEL_REPO, LABEL_SESSION
from devup.paths import RepoPaths
from devup.processes import TAG_REPO_ID, TAG_SESSION, TAG_UNIT


@dataclass(frozen=True)
class Identity:
    """Who a resource belongs to: one session of one repository."""

    repo: RepoPaths
    session: str
    project: str  # the project's slug

    def compose_project(self, group: str) -> str:
        """The compose project of a NEW group run: `<slug>-<repo id, 6 hex>_<session>_<group>`.

        The repo id part keeps two clones with the same `[project].name` (or folder name) apart
        (SPEC §5.5); it derives from the clone's git dir, so it is stable across commands and
        devup versions. The slug and the session name have no '_', so the name parses back
        unambiguously. A recorded group keeps the project it was recorded with (`down`,
        `recover`, `gc` and a resume read it from the record or journal, never from here), so
        sessions brought up under the older `<slug>_<session>_<group>` keep working.
        """
        return f"{self.project}-{self.repo.repo_id[:6]}_{self.session}_{group}"

    def labels(self, group: str) -> dict[str, str]:
        return {LABEL_SESSION: self.session, LABEL_REPO: self.repo.repo_id, LABEL_GROUP: group}

    def tags(self, unit: str) -> dict[str, str]:
        return {TAG_SESSION: self.session, TAG_REPO_ID: self.repo.repo_id, TAG_UNIT: unit}
