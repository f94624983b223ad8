"""devup.toml's validation, with pydantic: the text -> the values of a Config (config.py), or an
error naming the file, the key path and the line.

Imported only for a text not validated before (config.py keeps what it validated): pydantic and
building these models cost ~0.15 s, more than `up --dry-run` or a no-op `up` take otherwise.
Each model here has its twin in config.py, field for field (tests/test_config.py checks it).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from devup import envvars
from devup.errors import ConfigError

Mode = Literal["container", "hybrid", "host"]
# Compose project names allow [a-z0-9_-]; a name must start with a letter or digit.
UNIT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # always fullmatch: `$` lets a final newline in
# Timeouts are finite and at most a day: `inf` would make `down` wait forever on a service that
# ignores SIGTERM, and the runner cannot even schedule it (OverflowError).
MAX_SECONDS = 86400.0


class _Strict(BaseModel):
    # strict: `port = "yes"` or `http_port = "80"` is exit 2 naming the key, never a guess.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ProjectCfg(_Strict):
    name: str | None = None
    worktrees: str | None = None
    base: str | None = None
    mode: Mode = "container"
    context: str | None = Field(default=None, min_length=1)
    data_from: str | None = Field(default=None, min_length=1)


class PortsCfg(_Strict):
    # A TOML array is a list: the pair is read as one (strict would want a tuple), its ports strictly.
    range: tuple[
        Annotated[int, Field(ge=1024, le=65535, strict=True)],
        Annotated[int, Field(ge=1024, le=65535, strict=True)],
    ] = Field(default=(20000, 39999), strict=False)

    @model_validator(mode="after")
    def _ordered(self) -> PortsCfg:
        if self.range[0] > self.range[1]:
            raise ValueError("range must be [low, high] with low <= high")
        return self


class LimitsCfg(_Strict):
    max_sessions: int | None = Field(default=None, ge=1)
    max_running: int | None = Field(default=None, ge=1)
    evict: Literal["lru", "none"] = "lru"
    idle_stop: str | None = None
    expire: str | None = None

    @field_validator("idle_stop", "expire")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        from devup.usage import parse_duration

        if value is not None:
            parse_duration(value)
        return value


_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


class RoutesCfg(_Strict):
    hostnames: bool | None = None
    domain: str = "localhost"
    https: bool = True
    http_port: int = Field(default=20080, ge=1, le=65535)
    https_port: int = Field(default=20443, ge=1, le=65535)

    @field_validator("domain")
    @classmethod
    def _a_domain(cls, value: str) -> str:
        if len(value) > 180 or not _DOMAIN.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a domain name (lower-case labels of a-z, 0-9 and '-', dot-separated)"
            )
        return value

    @model_validator(mode="after")
    def _two_ports(self) -> RoutesCfg:
        if self.http_port == self.https_port:
            raise ValueError("http_port and https_port must differ")
        return self


class WorktreeCfg(_Strict):
    copy_: list[str] = Field(default_factory=list, alias="copy")

    @field_validator("copy_")
    @classmethod
    def _relative_inside(cls, value: list[str]) -> list[str]:
        # SPEC §5.11: copy never reads or writes outside the main checkout and the worktree.
        for entry in value:
            parts = PurePosixPath(entry).parts
            if not entry.strip() or entry.startswith(("/", "~")) or PureWindowsPath(entry).drive:
                raise ValueError(f"{entry!r} must be a path relative to the main checkout")
            if ".." in parts or ".." in PureWindowsPath(entry).parts:
                raise ValueError(f"{entry!r} must not contain '..': copy stays inside the main checkout")
        return value


class GroupCfg(_Strict):
    files: list[str] = Field(min_length=1)
    modes: list[Mode] = Field(default_factory=lambda: list[Mode](["container", "hybrid"]))
    wait_timeout: float = Field(default=120, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    min_uptime: float = Field(default=2, ge=0, le=MAX_SECONDS, allow_inf_nan=False)
    depends_on: list[str] = Field(default_factory=list)


class ReadyCfg(_Strict):
    http: str | None = None
    tcp: bool | None = None
    cmd: str | None = None
    log: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ReadyCfg:
        given = [k for k in ("http", "tcp", "cmd", "log") if getattr(self, k) not in (None, False)]
        if len(given) != 1:
            raise ValueError("give exactly one of http, tcp, cmd, log")
        if self.log is not None:
            try:
                re.compile(self.log)
            except re.error as exc:
                raise ValueError(f"log is not a valid regex: {exc}") from exc
        return self


class ServiceCfg(_Strict):
    run: str = Field(min_length=1)
    modes: list[Mode] = Field(default_factory=lambda: list[Mode](["host", "hybrid"]))
    port: bool = False
    depends_on: list[str] = Field(default_factory=list)
    ready: ReadyCfg | None = None
    ready_timeout: float = Field(default=60, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    stop_timeout: float = Field(default=10, ge=0, le=MAX_SECONDS, allow_inf_nan=False)


class HookSpec(_Strict):
    run: str | list[str]
    undo: str | None = None
    timeout: float | None = Field(default=None, gt=0, le=MAX_SECONDS, allow_inf_nan=False)


_HookValue = str | list[str] | HookSpec


class HooksCfg(_Strict):
    pre_up: _HookValue | None = None
    post_create: _HookValue | None = None
    pre_spawn: _HookValue | None = None
    post_up: _HookValue | None = None
    pre_down: _HookValue | None = None
    post_down: _HookValue | None = None


class Config(_Strict):
    project: ProjectCfg = Field(default_factory=ProjectCfg)
    ports: PortsCfg = Field(default_factory=PortsCfg)
    limits: LimitsCfg = Field(default_factory=LimitsCfg)
    routes: RoutesCfg = Field(default_factory=RoutesCfg)
    worktree: WorktreeCfg = Field(default_factory=WorktreeCfg)
    env: dict[str, str] = Field(default_factory=dict)
    groups: dict[str, GroupCfg] = Field(default_factory=dict)
    services: dict[str, ServiceCfg] = Field(default_factory=dict)
    hooks: HooksCfg = Field(default_factory=HooksCfg)


def validate(path: Path, text: str) -> dict[str, Any]:
    """The values of the text of `path` (config.build makes the Config); errors name the file,
    the key path and the line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables are nested too deeply to read") from None
    try:
        config = Config.model_validate(raw)
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables are nested too deeply to read") from None
    except ValidationError as exc:
        # For a union (a hook is a string, a list or a table) the deepest error comes from the
        # member that matched the kind of value written: report that one.
        first = max(exc.errors(), key=lambda e: len(e["loc"]))
        loc = tuple(str(p) for p in first["loc"] if not _is_union_tag(p))
        raise ConfigError(_where(path, text, loc) + f": {first['msg']}") from None
    _check_names(path, text, config)
    return config.model_dump()


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the union member's type ("str", "list[str]", "HookSpec") into the location.
    return isinstance(part, str) and (part in {"str", "HookSpec"} or part.startswith("list["))


def _check_names(path: Path, text: str, config: Config) -> None:
    def fail(loc: tuple[str, ...], msg: str) -> None:
        raise ConfigError(_where(path, text, loc) + f": {msg}")

    for kind, units in (("groups", config.groups), ("services", config.services)):
        for name in units:
            if not UNIT_NAME.fullmatch(name):
                fail((kind, name), f"name {name!r} must match {UNIT_NAME.pattern}")
    for key in config.env:
        if not envvars.KEY.fullmatch(key):
            fail(("env", key), f"variable name {key!r} must match ^[A-Za-z_][A-Za-z0-9_]*$")
        if key.startswith("DEVUP_") or key == "PORT":
            # devup sets these itself (SPEC §4): one in [env] would shadow it (new-L7).
            fail(
                ("env", key), f"{key} is set by devup itself (DEVUP_* and a service's PORT); use another name"
            )
    for name in set(config.groups) & set(config.services):
        fail(("services", name), f"{name!r} is both a group and a service")
    for name, group in config.groups.items():
        for dep in group.depends_on:
            if dep not in config.groups:
                fail(("groups", name, "depends_on"), f"unknown group {dep!r}")
    for name, service in config.services.items():
        for dep in service.depends_on:
            if dep not in config.groups and dep not in config.services:
                fail(("services", name, "depends_on"), f"unknown group or service {dep!r}")
        if service.ready and (service.ready.http or service.ready.tcp) and not service.port:
            fail(("services", name, "ready"), "an http or tcp probe needs `port = true`")
    graph = {n: list(g.depends_on) for n, g in config.groups.items()}
    graph.update({n: list(s.depends_on) for n, s in config.services.items()})
    cycle = find_cycle(graph)
    if cycle:
        kind = "groups" if cycle[0] in config.groups else "services"
        fail((kind, cycle[0], "depends_on"), "dependency cycle: " + " -> ".join(cycle))
    # Both forms envvars expands, `${A}` and `$A`: a cycle through either would never end.
    env_graph = {
        k: [a or b for a, b in envvars.REF.findall(v) if (a or b) in config.env]
        for k, v in config.env.items()
    }
    cycle = find_cycle(env_graph)
    if cycle:
        fail(("env", cycle[0]), "variables refer to each other in a cycle: " + " -> ".join(cycle))


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """A dependency cycle as a path that returns to its start, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if node not in state and (found := visit(node)):
            return found
    return None


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")


def _split_key(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def _where(path: Path, text: str, loc: tuple[str, ...]) -> str:
    """`file:line: key.path`, the line being the best match for the key path."""
    table: tuple[str, ...] = ()
    best, best_len = 0, 0
    for number, line in enumerate(text.splitlines(), start=1):
        if header := _HEADER.match(line):
            table = _split_key(header.group(1))
            candidate = table
        elif key := _KEY.match(line):
            candidate = table + _split_key(key.group(1))
        else:
            continue
        common = 0
        for a, b in zip(candidate, loc, strict=False):
            if a != b:
                break
            common += 1
        if common == len(candidate) and common > best_len:
            best, best_len = number, common
    where = f"{path}:{best}" if best else str(path)
    return f"{where}: {'.'.join(loc) or '(top level)'}"
