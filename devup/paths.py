"""Where devup keeps its state: one place that every other module asks."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from devup.errors import ConfigError, UsageError

NAME_RE = re.compile(r"^(?:[a-z0-9]|[a-z0-9][a-z0-9-]{0,38}[a-z0-9])$")
ENV_FILE = ".env.devup"
CONFIG_NAME = "devup.toml"


def check_session_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # `$` alone lets a final newline in
        raise UsageError(
            f"invalid session name {name!r}",
            hint="use 1-40 lower-case letters, digits and '-', not starting or ending with '-'",
        )
    return name


def read_config(repo_root: Path) -> str:
    """The text of the main checkout's devup.toml."""
    path = repo_root / CONFIG_NAME
    try:
        return path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise ConfigError(
            f"{path} is a folder, not a file",
            hint="devup reads its config from the file devup.toml: move that folder away, then `devup init`",
        ) from None
    except FileNotFoundError:
        if path.is_symlink():
            raise ConfigError(
                f"{path} is a symlink to {os.readlink(path)}, which does not exist",
                hint="point the symlink at an existing file, or replace it with `devup init`",
            ) from None
        raise ConfigError(
            f"{CONFIG_NAME} not found in {repo_root}",
            hint="run `devup init` in the main checkout to write a starter devup.toml",
        ) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not valid UTF-8 (byte {exc.start})",
            hint="TOML files are UTF-8: save devup.toml as UTF-8",
        ) from None


def digest(text: str) -> str:
    return _sha256_hex(text.encode())


def state_root() -> Path:
    """`$DEVUP_HOME`, else `$XDG_STATE_HOME/devup`, else `~/.local/state/devup`."""
    if home := os.environ.get("DEVUP_HOME"):
        return Path(home)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "devup"


def ensure_dir(folder: Path) -> None:
    """Create `folder` (and its parents); inside the state root every folder is 0700 whatever
    the umask (SPEC §5.11): journals, records and logs hold the session's environment."""
    folder.mkdir(parents=True, exist_ok=True)
    root = state_root()
    try:
        rel = folder.relative_to(root)
    except ValueError:
        return
    current = root
    for part in ("", *rel.parts):
        current = current / part if part else current
        st = current.lstat()
        if st.st_mode & 0o777 != 0o700 and st.st_uid == os.getuid():
            os.chmod(current, 0o700)


def ports_file() -> Path:
    return state_root() / "ports.json"


def repo_id_of(common_dir: Path) -> str:
    """A stable id of a repository: its git common dir's real path, hashed (sha256)."""
    return _sha256_hex(str(common_dir.resolve()).encode())[:16]


def _sha256_hex(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class RepoPaths:
    """The main checkout and the state that belongs to its sessions."""

    root: Path
    common_dir: Path

    @functools.cached_property
    def repo_id(self) -> str:
        # Every state path derives from it: resolved and hashed once, not on each access.
        return repo_id_of(self.common_dir)

    @property
    def state(self) -> Path:
        return state_root() / "repos" / self.repo_id

    @property
    def config_values(self) -> Path:
        """The values of the devup.toml last validated by `up` (config.remember)."""
        return self.state / "config.json"

    @property
    def sessions_dir(self) -> Path:
        return self.state / "sessions"

    @property
    def journals_dir(self) -> Path:
        return self.state / "journals"

    # Every path derived from a session name checks the name first: `status ../../x` must not
    # read a record from outside the state folder.
    def record(self, name: str) -> Path:
        return self.sessions_dir / f"{check_session_name(name)}.json"

    def journal(self, name: str) -> Path:
        return self.journals_dir / f"{check_session_name(name)}.jsonl"

    def lock(self, name: str) -> Path:
        return self.state / "locks" / f"{check_session_name(name)}.lock"

    def session_dir(self, name: str) -> Path:
        """Overrides and native-service logs of one session."""
        return self.state / "data" / check_session_name(name)

    def log(self, name: str, service: str) -> Path:
        return self.session_dir(name) / "logs" / f"{service}.log"

    def override(self, name: str, group: str) -> Path:
        return self.session_dir(name) / "compose" / f"{group}.override.yaml"
