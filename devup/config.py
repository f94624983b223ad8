"""devup.toml -> a Config: the values every command reads, and what `up` keeps of them.

The text is validated by config_check.py (pydantic) the first time devup sees it; `up` keeps
the values it validated (`remember`) under a key of the text and of the code that validates it,
so later commands that meet the same text build the Config from those values without importing
pydantic (~0.15 s of every `up`, reconcile and `--dry-run`). Any other text, or another devup,
is validated again. The comments on the fields are here; config_check.py has their rules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from devup import __version__
from devup.hookspec import Hook, normalise
from devup.locks import write_atomic

Mode = Literal["container", "hybrid", "host"]
# What decides how a text validates: a change to any of them is another key.
_VALIDATION = ("config.py", "config_check.py", "envvars.py", "usage.py", "hookspec.py")


@dataclass(frozen=True)
class ProjectCfg:
    name: str | None = None
    worktrees: str | None = None
    base: str | None = None
    mode: Mode = "container"
    context: str | None = None  # docker context of the sessions (§6)
    data_from: str | None = None  # default --from of new sessions (§7)


@dataclass(frozen=True)
class PortsCfg:
    range: tuple[int, int] = (20000, 39999)


@dataclass(frozen=True)
class LimitsCfg:
    """SPEC §5.13; read again by usage.limits_of from the text alone, for `up`'s cheap reaping."""

    max_sessions: int | None = None
    max_running: int | None = None
    evict: Literal["lru", "none"] = "lru"
    idle_stop: str | None = None
    expire: str | None = None


@dataclass(frozen=True)
class RoutesCfg:
    """SPEC §9: a hostname per session and target, through the router (devup/router.py)."""

    # None: on where caddy is installed (off with a note where it is not); true: required.
    hostnames: bool | None = None
    domain: str = "localhost"
    https: bool = True
    # Where the router listens when 80/443 are taken or not allowed (the URLs then carry them).
    http_port: int = 20080
    https_port: int = 20443


@dataclass(frozen=True)
class WorktreeCfg:
    copy_: list[str] = field(default_factory=list)  # `copy` in devup.toml


@dataclass(frozen=True)
class GroupCfg:
    files: list[str]
    modes: list[Mode] = field(default_factory=lambda: list[Mode](["container", "hybrid"]))
    wait_timeout: float = 120
    # SPEC §3: a container without a healthcheck is ready once it has run this long since its
    # last start without exiting or restarting (`--wait` accepts it as soon as it runs).
    min_uptime: float = 2
    depends_on: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReadyCfg:
    http: str | None = None
    tcp: bool | None = None
    cmd: str | None = None
    log: str | None = None


@dataclass(frozen=True)
class ServiceCfg:
    run: str
    modes: list[Mode] = field(default_factory=lambda: list[Mode](["host", "hybrid"]))
    port: bool = False
    depends_on: list[str] = field(default_factory=list)
    ready: ReadyCfg | None = None
    ready_timeout: float = 60
    stop_timeout: float = 10


HookValue = str | list[str] | dict[str, Any]  # a command, an argv, or {run, undo, timeout}


@dataclass(frozen=True)
class HooksCfg:
    pre_up: HookValue | None = None
    post_create: HookValue | None = None
    pre_spawn: HookValue | None = None
    post_up: HookValue | None = None
    pre_down: HookValue | None = None
    post_down: HookValue | None = None

    def get(self, name: str) -> Hook | None:
        return normalise(name, getattr(self, name))


@dataclass(frozen=True)
class Config:
    project: ProjectCfg = field(default_factory=ProjectCfg)
    ports: PortsCfg = field(default_factory=PortsCfg)
    limits: LimitsCfg = field(default_factory=LimitsCfg)
    routes: RoutesCfg = field(default_factory=RoutesCfg)
    worktree: WorktreeCfg = field(default_factory=WorktreeCfg)
    env: dict[str, str] = field(default_factory=dict)
    groups: dict[str, GroupCfg] = field(default_factory=dict)
    services: dict[str, ServiceCfg] = field(default_factory=dict)
    hooks: HooksCfg = field(default_factory=HooksCfg)

    def groups_for(self, mode: Mode) -> dict[str, GroupCfg]:
        return {name: g for name, g in self.groups.items() if mode in g.modes}

    def services_for(self, mode: Mode) -> dict[str, ServiceCfg]:
        return {name: s for name, s in self.services.items() if mode in s.modes}


def load(repo_root: Path) -> Config:
    """Read and validate `devup.toml` at the main checkout's root."""
    from devup.paths import CONFIG_NAME, read_config

    return parse(repo_root / CONFIG_NAME, read_config(repo_root))


def parse(path: Path, text: str) -> Config:
    """Validate the text of `path`; errors name the file, the key path and the line."""
    from devup import config_check

    return build(config_check.validate(path, text))


def build(values: dict[str, Any]) -> Config:
    """The Config of validated values (config_check.validate's, or `dump`'s)."""
    services = {
        name: ServiceCfg(**{**s, "ready": ReadyCfg(**s["ready"]) if s.get("ready") else None})
        for name, s in values["services"].items()
    }
    return Config(
        project=ProjectCfg(**values["project"]),
        ports=PortsCfg(range=(values["ports"]["range"][0], values["ports"]["range"][1])),
        limits=LimitsCfg(**values["limits"]),
        routes=RoutesCfg(**values["routes"]),
        worktree=WorktreeCfg(**values["worktree"]),
        env=dict(values["env"]),
        groups={name: GroupCfg(**g) for name, g in values["groups"].items()},
        services=services,
        hooks=HooksCfg(**values["hooks"]),
    )


def dump(cfg: Any) -> dict[str, Any]:
    """A config (or a part of one) as plain values: what `build` reads, and what drift digests."""
    return dataclasses.asdict(cfg)


@functools.lru_cache(maxsize=4)
def key(text: str) -> str:
    """Names the values of `text` as this devup validates it."""
    h = hashlib.sha256(f"devup {__version__}\n".encode())
    here = Path(__file__).parent
    for name in _VALIDATION:
        h.update((here / name).read_bytes())
    h.update(text.encode())
    return h.hexdigest()


def cached(path: Path, text: str) -> Config | None:
    """The Config `remember` kept at `path` for this very text and devup, or None."""
    try:
        kept = json.loads(path.read_text())
        if kept.get("key") != key(text):
            return None
        return build(kept["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none kept, or unreadable: validated again


def remember(path: Path, text: str, cfg: Config) -> None:
    """Keep the values of `cfg`, validated from `text`, for the next command (see `cached`).
    A cache: a disk that is full or read-only, or sources that cannot be read, only cost time."""
    with contextlib.suppress(OSError):
        named = key(text)
        with contextlib.suppress(ValueError, AttributeError, OSError):  # none kept yet, or unreadable
            if json.loads(path.read_text()).get("key") == named:
                return
        write_atomic(path, json.dumps({"key": named, "config": dump(cfg)}))
