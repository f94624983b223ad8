"""What an engine is (Docker or Podman, version, rootless) and what it lacks for devup, with the
fix: `devup doctor`'s engine check (SPEC §6)."""

from __future__ import annotations

import os
import re
import resource
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devup.engine.client import client, edge, libpod
from devup.engine.http import is_podman
from devup.remote import Engine

# Where Podman looks for its init (containers.conf's init_path), and Debian's catatonit package.
_CATATONIT = ("/usr/libexec/podman/catatonit", "/usr/lib/podman/catatonit", "/usr/bin/catatonit")
_CAP_SYS_RESOURCE = 24


@dataclass(frozen=True)
class Lack:
    what: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {"what": self.what, "fix": self.fix}


@dataclass(frozen=True)
class Facts:
    name: str  # Docker or Podman
    version: str
    rootless: bool
    cgroup_version: str  # "1", "2" or "" when the engine does not say
    lacks: list[Lack] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return f"{self.name} {self.version} ({'rootless' if self.rootless else 'rootful'})"


@edge
def facts(eng: Engine) -> Facts:
    """One look at the engine: /version and /info (and libpod's /info on Podman)."""
    api = client(eng).api
    version: dict[str, Any] = api.version()
    info: dict[str, Any] = api.info()
    cgroup = str(info.get("CgroupVersion") or "")
    if not is_podman(eng):
        rootless = any("rootless" in str(o) for o in info.get("SecurityOptions") or [])
        return Facts("Docker", str(version.get("Version", "?")), rootless, cgroup)
    podman = next(c for c in version.get("Components") or [] if str(c.get("Name", "")).startswith("Podman"))
    host = (libpod(eng, "GET", "/info", timeout=30) or {}).get("host") or {}
    rootless = bool((host.get("security") or {}).get("rootless"))
    cgroup = str(host.get("cgroupVersion") or cgroup).removeprefix("v")
    return Facts(
        "Podman",
        str(podman.get("Version", "?")),
        rootless,
        cgroup,
        podman_lacks(
            local=not eng.remote,
            rootless=rootless,
            cgroup_version=cgroup,
            cgroup_manager=str(host.get("cgroupManager") or ""),
        ),
    )


def podman_lacks(*, local: bool, rootless: bool, cgroup_version: str, cgroup_manager: str) -> list[Lack]:
    """What this Podman lacks for devup's sessions; what can be looked at on this machine only
    (catatonit, rlimits) when the engine is local."""
    found = []
    if cgroup_manager != "systemd" or (local and not Path("/run/systemd/system").is_dir()):
        found.append(
            Lack(
                "no systemd: Podman's healthcheck timers never fire, so devup runs the healthchecks "
                "itself while it waits for containers (`up`, restores); afterwards `status` shows "
                "the last result devup saw",
                "nothing to do for devup; run Podman under systemd for checks that keep running",
            )
        )
    if rootless and cgroup_version == "1":
        found.append(
            Lack(
                "rootless Podman on cgroup v1 cannot pause containers: `snapshot create` of a "
                "running session is refused",
                "boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1), or stop the session first",
            )
        )
    if local and not any(Path(p).is_file() for p in _CATATONIT) and not shutil.which("catatonit"):
        found.append(
            Lack(
                "catatonit missing: every container of a service with `init: true` fails to start",
                "install catatonit (Debian/Ubuntu/Fedora: the `catatonit` package)",
            )
        )
    if local and not rootless and _rlimits_stuck():
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        found.append(
            Lack(
                "this machine cannot raise rlimits (no CAP_SYS_RESOURCE) and containers.conf sets "
                "no default_ulimits: every container start fails with 'error setting rlimit'",
                f'in /etc/containers/containers.conf, [containers] default_ulimits = ["nofile={nofile}:{nofile}", '
                '"nproc=N:N"] with N the hard `ulimit -u` of a podman process (scripts/setup writes it)',
            )
        )
    return found


def _rlimits_stuck() -> bool:
    """No CAP_SYS_RESOURCE here (a container) and no default_ulimits in containers.conf."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    match = re.search(r"^CapEff:\s*([0-9a-f]+)$", status, re.MULTILINE)
    if not match or int(match.group(1), 16) >> _CAP_SYS_RESOURCE & 1:
        return False
    confs = [Path("/etc/containers/containers.conf"), Path("/usr/share/containers/containers.conf")]
    confs += [Path(os.environ.get("CONTAINERS_CONF", "/nonexistent"))]
    for conf in confs:
        try:
            if re.search(r"^\s*default_ulimits\s*=", conf.read_text(), re.MULTILINE):
                return False
        except OSError:
            continue
    return True
