"""The labels devup and Compose put on engine objects: identity lives in labels, not names."""

LABEL_SESSION = "dev.devup.session"
LABEL_REPO = "dev.devup.repo"
LABEL_GROUP = "dev.devup.group"
LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_VOLUME = "com.docker.compose.volume"
LABEL_COMPOSE_VERSION = "com.docker.compose.version"
LABEL_HELPER = "dev.devup.helper"  # a copy helper container: the volume it writes to


def carries(labels: dict[str, str] | None, wanted: list[str]) -> bool:
    """Whether `labels` has every one of `wanted` (`key=value` or `key`). Podman 4.3 answers a
    volume list filtered by several labels with the volumes carrying *any* of them (Docker: all),
    so every such list is checked here too: `down` of one session removed another's volumes."""
    have = labels or {}
    for want in wanted:
        key, eq, value = want.partition("=")
        if key not in have or (eq and have[key] != value):
            return False
    return True
