"""The labels devup and Compose put on engine objects: identity lives in labels, not names."""

LABEL_SESSION = "dev.devup.session"
LABEL_REPO = "dev.devup.repo"
LABEL_GROUP = "dev.devup.group"
LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_VOLUME = "com.docker.compose.volume"
LABEL_COMPOSE_VERSION = "com.docker.compose.version"
LABEL_HELPER = "dev.devup.helper"  # a copy helper container: the volume it writes to
