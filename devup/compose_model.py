"""What `docker compose config` says about a group, and the override that makes it per-session.

Pure data in, data out: `compose.load_model` runs compose and `compose.write_override` writes
the file; everything decided in between is here, where it can be tested without an engine.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devup.envvars import port_key

# The one bridge option that fixes a host-wide name: two sessions would fight over it.
_BRIDGE_NAME = "com.docker.network.bridge.name"


@dataclass(frozen=True)
class PortSpec:
    target: int
    protocol: str
    host_ip: str | None
    published: str | None = None  # the file's own host port ("8080"), None when ephemeral
    # Long syntax's metadata, kept as the file says: compose ignores `mode` outside swarm and
    # `name`/`app_protocol` are for readers, but the merged config must not say otherwise.
    mode: str | None = None  # None: compose's default, "ingress"
    name: str | None = None
    app_protocol: str | None = None


@dataclass(frozen=True)
class Refusal:
    """Something of the file that cannot exist once per session (SPEC §3): exit 2 at preflight."""

    where: str  # "service web" | "network front"
    key: str  # the compose key path, e.g. "network_mode"
    value: str
    hint: str


@dataclass(frozen=True)
class EngineGap:
    """A setting an engine's Docker-compatible API accepts and then ignores (SPEC §6): on that
    engine, before `fixed_in`, it is an error at preflight, never a silent difference."""

    where: str  # "service web"
    key: str  # the compose key path
    value: str
    engine: str  # "Podman"
    fixed_in: str | None  # the first version that honours it; None: none does yet
    why: str


@dataclass(frozen=True)
class GroupModel:
    """What `docker compose config` says about a group, reduced to what devup rewrites."""

    services: dict[str, list[PortSpec]]
    volumes: list[str]  # non-external, as named in the files
    networks: list[str]  # non-external
    container_names: dict[str, str] = field(default_factory=dict)  # service -> fixed name
    # service -> the non-external networks it joins (where its fixed name becomes an alias)
    service_networks: dict[str, list[str]] = field(default_factory=dict)
    fixed_networks: dict[str, str] = field(default_factory=dict)  # key -> the file's fixed `name:`
    fixed_volumes: dict[str, str] = field(default_factory=dict)
    # key -> engine name of the `external: true` ones: shared by every session
    external_networks: dict[str, str] = field(default_factory=dict)
    external_volumes: dict[str, str] = field(default_factory=dict)
    refusals: list[Refusal] = field(default_factory=list)
    gaps: list[EngineGap] = field(default_factory=list)  # refused only on the engine they name
    # key -> per-session name: an external one that names another group's fixed-name object
    # of the same session (group A creates `name: temporal-network`, B joins it as external)
    linked_networks: dict[str, str] = field(default_factory=dict)
    linked_volumes: dict[str, str] = field(default_factory=dict)
    binds: dict[str, list[str]] = field(default_factory=dict)  # service -> bind-mounted host paths
    # key -> the engine name compose gives the volume in this session: `<project>_<key>`, also
    # for a fixed `name:` (the override renames it per session); what `up --from` creates ahead
    volume_names: dict[str, str] = field(default_factory=dict)
    # service -> a digest of its resolved config, and "" -> of the group's networks and volumes:
    # what `up` compares to tell a changed service from an unchanged one (SPEC §5.12)
    digests: dict[str, str] = field(default_factory=dict)
    # The profiles the files define, read only when no service is active (`config` leaves out a
    # service whose profiles are all off): what would make one start.
    profiles: list[str] = field(default_factory=list)
    # service -> the host folders it bind-mounts writable from outside the worktree
    outside_binds: dict[str, list[str]] = field(default_factory=dict)
    # key -> the host path a named volume binds through `driver_opts` (host_path): shared by
    # every session, so no session data (SPEC §7), and a path of the engine's machine (§6)
    host_volumes: dict[str, str] = field(default_factory=dict)
    volume_mounts: dict[str, list[str]] = field(default_factory=dict)  # service -> named volumes

    def shared(self) -> list[str]:
        """What every session shares: external objects that are not another group's."""
        nets = [f"network {n}" for k, n in self.external_networks.items() if k not in self.linked_networks]
        vols = [f"volume {n}" for k, n in self.external_volumes.items() if k not in self.linked_volumes]
        return nets + vols

    def shared_binds(self) -> list[str]:
        """What every session writes to in common: host folders bind-mounted writable from
        outside the worktree (jitsi's ~/.jitsi-meet-cfg), as `<path> (service <name>)`."""
        return [f"{src} (service {svc})" for svc, sources in self.outside_binds.items() for src in sources]


def _podman_gaps(name: str, svc: dict[str, Any]) -> list[EngineGap]:
    """What Podman's Docker-compatible API (4.3) takes from compose and does not do, found by
    trying (docs/troubleshooting.md): the container starts, without it."""
    gaps = []
    for entry in svc.get("extra_hosts") or []:
        if str(entry).endswith(("=host-gateway", ":host-gateway")):
            gaps.append(
                EngineGap(
                    f"service {name}",
                    "extra_hosts",
                    str(entry),
                    "Podman",
                    "4.7",
                    "Podman before 4.7 writes the word `host-gateway` into /etc/hosts instead of the "
                    "host's address, so the name does not resolve; use host.containers.internal, "
                    "which Podman adds by itself",
                )
            )
    for port in svc.get("ports") or []:
        if port.get("host_ip") == "::1":
            gaps.append(
                EngineGap(
                    f"service {name}",
                    "ports",
                    f"[::1]:{port.get('published', '')}:{port.get('target')}",
                    "Podman",
                    None,
                    "Podman 4.3 does not forward a port published on the IPv6 loopback: the "
                    "container starts and nothing answers there; publish it on 127.0.0.1",
                )
            )
    devices = ((svc.get("deploy") or {}).get("resources") or {}).get("reservations", {}).get("devices")
    for key, value in (("deploy.resources.reservations.devices", devices), ("gpus", svc.get("gpus"))):
        if value:
            gaps.append(
                EngineGap(
                    f"service {name}",
                    key,
                    json.dumps(value),
                    "Podman",
                    None,
                    "Podman's Docker-compatible API ignores device requests (the container starts "
                    "without the GPU); name the CDI device under `devices:` instead "
                    "(e.g. nvidia.com/gpu=all)",
                )
            )
    return gaps


def parse(data: dict[str, Any], *, project: str, root: Path | None = None) -> GroupModel:
    """The model of `docker compose -p project config --format json`'s output; `root` is the
    folder compose read the files in (the worktree, or preflight's copy of the branch)."""
    nets: dict[str, Any] = {k: v or {} for k, v in (data.get("networks") or {}).items()}
    vols: dict[str, Any] = {k: v or {} for k, v in (data.get("volumes") or {}).items()}
    internal_nets = [n for n, v in nets.items() if not v.get("external")]
    services: dict[str, list[PortSpec]] = {}
    names: dict[str, str] = {}
    joins: dict[str, list[str]] = {}
    binds: dict[str, list[str]] = {}
    outside: dict[str, list[str]] = {}
    mounts: dict[str, list[str]] = {}
    refusals: list[Refusal] = []
    gaps: list[EngineGap] = []
    for name, svc in (data.get("services") or {}).items():
        services[name] = [
            PortSpec(
                int(p["target"]),
                p.get("protocol", "tcp"),
                p.get("host_ip") or None,
                str(p["published"]) if p.get("published") not in (None, "") else None,
                mode=p["mode"] if p.get("mode") not in (None, "ingress") else None,
                name=p.get("name") or None,
                app_protocol=p.get("app_protocol") or None,
            )
            for p in svc.get("ports") or []
        ]
        if svc.get("container_name"):
            names[name] = str(svc["container_name"])
        sources = [
            str(v["source"]) for v in svc.get("volumes") or [] if v.get("type") == "bind" and v.get("source")
        ]
        if sources:
            binds[name] = sources
        written = [
            str(v["source"])
            for v in svc.get("volumes") or []
            if v.get("type") == "bind" and v.get("source") and not v.get("read_only")
        ]
        if root is not None and (written := [s for s in written if not _inside(s, root)]):
            outside[name] = written
        named = [
            str(v["source"])
            for v in svc.get("volumes") or []
            if v.get("type") == "volume" and v.get("source")
        ]
        if named:
            mounts[name] = named
        gaps += _podman_gaps(name, svc)
        mode = svc.get("network_mode")
        if mode == "host":
            refusals.append(
                Refusal(
                    f"service {name}",
                    "network_mode",
                    "host",
                    "a container on the host's network binds the host's ports itself, so a second "
                    "session's copy cannot start; publish its ports (`ports:`) instead and devup leases them",
                )
            )
        if not mode:
            joined = svc.get("networks") or {}
            joins[name] = [n for n in joined if n in internal_nets]
            for net, opts in joined.items():
                for key in ("ipv4_address", "ipv6_address"):
                    if (opts or {}).get(key):
                        refusals.append(
                            Refusal(
                                f"service {name}",
                                f"networks.{net}.{key}",
                                str(opts[key]),
                                "a fixed address exists once per engine; remove it and reach the "
                                "service by its name (or a network alias)",
                            )
                        )
    for net in internal_nets:
        spec = nets[net]
        for i, pool in enumerate((spec.get("ipam") or {}).get("config") or []):
            if (pool or {}).get("subnet"):
                refusals.append(
                    Refusal(
                        f"network {net}",
                        f"ipam.config[{i}].subnet",
                        str(pool["subnet"]),
                        "a fixed subnet overlaps with the next session's copy of this network "
                        '("Pool overlaps"); remove `ipam` and let the engine pick a subnet',
                    )
                )
        bridge = (spec.get("driver_opts") or {}).get(_BRIDGE_NAME)
        if bridge:
            refusals.append(
                Refusal(
                    f"network {net}",
                    f"driver_opts.{_BRIDGE_NAME}",
                    str(bridge),
                    "a host bridge name exists once per machine; remove the option and let the "
                    "engine name the bridge",
                )
            )
    return GroupModel(
        services=services,
        volumes=[n for n, v in vols.items() if not v.get("external")],
        networks=internal_nets,
        container_names=names,
        service_networks=joins,
        fixed_networks=_fixed(nets, project),
        fixed_volumes=_fixed(vols, project),
        external_networks={n: str(v.get("name") or n) for n, v in nets.items() if v.get("external")},
        external_volumes={n: str(v.get("name") or n) for n, v in vols.items() if v.get("external")},
        refusals=refusals,
        gaps=gaps,
        binds=binds,
        outside_binds=outside,
        volume_names={
            n: session_name(project, n)
            for n, v in vols.items()
            if not v.get("external") and host_path(v.get("driver_opts")) is None
        },
        host_volumes={
            n: path
            for n, v in vols.items()
            if not v.get("external") and (path := host_path(v.get("driver_opts"))) is not None
        },
        volume_mounts=mounts,
        digests={
            **{name: _digest(svc) for name, svc in (data.get("services") or {}).items()},
            "": _digest({"networks": nets, "volumes": vols}),
        },
    )


def _digest(value: Any) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _inside(source: str, root: Path) -> bool:
    """A bind source in `root`'s tree, as written or with symlinks resolved (compose made a
    relative source absolute from the folder it was given, which may be a symlink's path)."""
    for path, base in ((Path(os.path.normpath(source)), root), (Path(source).resolve(), root.resolve())):
        if path == base or base in path.parents:
            return True
    return False


def host_path(driver_opts: Any) -> str | None:
    """The host path a volume's `driver_opts` bind (`o: bind`, or any `device`), else None.

    Such a volume is a bind mount in disguise (hostile-input new-M6): its data is that folder,
    which every session of the repository shares, so it is not a session's data to snapshot,
    clone or restore; and on a remote engine it is a path of the engine's machine."""
    if not isinstance(driver_opts, dict):
        return None
    device = driver_opts.get("device")
    binds = "bind" in [o.strip() for o in str(driver_opts.get("o") or "").split(",")]
    if device or binds:
        return str(device or "(no device)")
    return None


def _fixed(objects: dict[str, Any], project: str) -> dict[str, str]:
    """The compose-created objects whose `name:` is not the project's own `<project>_<key>`."""
    return {
        key: str(spec["name"])
        for key, spec in objects.items()
        if not spec.get("external") and spec.get("name") and spec["name"] != f"{project}_{key}"
    }


def spec_keys(service: str, specs: list[PortSpec]) -> list[str]:
    """The lease key of each published port: `<SERVICE>_<TARGET>`, and for the n-th other host
    port of the same target (`8080:80`, `8081:80`) `<SERVICE>_<TARGET>_<n>` (n = 2, 3, ...).

    Entries that differ only in protocol or host IP (`53:53/tcp` + `53:53/udp`, or one port on
    127.0.0.1 and ::1) are one host port in the file, so they share one lease.
    """
    base = port_key(service)
    seen: dict[tuple[int, str], str] = {}
    per_target: dict[int, int] = {}
    keys: list[str] = []
    for index, spec in enumerate(specs):
        ident = (spec.target, spec.published if spec.published is not None else f"#{index}")
        if ident not in seen:
            n = per_target[spec.target] = per_target.get(spec.target, 0) + 1
            seen[ident] = f"{base}_{spec.target}" if n == 1 else f"{base}_{spec.target}_{n}"
        keys.append(seen[ident])
    return keys


def port_keys(service: str, specs: list[PortSpec]) -> list[tuple[str, str]]:
    """SPEC §4's keys as (key, lease key): `<SERVICE>` for the first published port (an alias of
    its lease), then every lease key of the service once."""
    leases = spec_keys(service, specs)
    keys: list[tuple[str, str]] = []
    if leases:
        keys.append((port_key(service), leases[0]))
    for lease in dict.fromkeys(leases):
        keys.append((lease, lease))
    return keys


def session_name(project: str, key: str) -> str:
    """The per-session name of a network or volume: what compose itself would call it."""
    return f"{project}_{key}"


def container_name(project: str, service: str) -> str:
    return f"{project}-{service}"


def override(
    model: GroupModel, *, project: str, ports: dict[str, int], labels: dict[str, str]
) -> dict[str, Any]:
    """The override document, with `("!override", [...])` marking a list that replaces the
    file's own (the writer turns it into the YAML tag)."""
    services: dict[str, Any] = {}
    for name, specs in model.services.items():
        entry: dict[str, Any] = {"labels": dict(labels)}
        if specs:
            entry["ports"] = (
                "!override",
                [_long_port(s, ports[k]) for s, k in zip(specs, spec_keys(name, specs), strict=True)],
            )
        fixed = model.container_names.get(name)
        if fixed:
            entry["container_name"] = container_name(project, name)
            # The stack may reach the service by its fixed name: keep that name on the
            # session's own networks (never on external ones, which other sessions share).
            joined = model.service_networks.get(name) or []
            if joined:
                entry["networks"] = {net: {"aliases": [fixed]} for net in joined}
        services[name] = entry
    doc: dict[str, Any] = {"services": services}
    volumes = {v: _object(v, model.fixed_volumes, project, labels) for v in model.volumes}
    networks = {n: _object(n, model.fixed_networks, project, labels) for n in model.networks}
    # Still external (another group of the session creates and labels it), under its new name.
    volumes |= {k: {"name": name} for k, name in model.linked_volumes.items()}
    networks |= {k: {"name": name} for k, name in model.linked_networks.items()}
    if volumes:
        doc["volumes"] = volumes
    if networks:
        doc["networks"] = networks
    return doc


def link_groups(models: dict[str, GroupModel], projects: dict[str, str]) -> dict[str, GroupModel]:
    """Point external references at the session's own copy when another group of the same
    session creates that fixed-name network or volume."""
    import dataclasses

    nets = {
        name: session_name(projects[g], k) for g, m in models.items() for k, name in m.fixed_networks.items()
    }
    vols = {
        name: session_name(projects[g], k) for g, m in models.items() for k, name in m.fixed_volumes.items()
    }
    return {
        g: dataclasses.replace(
            m,
            linked_networks={k: nets[n] for k, n in m.external_networks.items() if n in nets},
            linked_volumes={k: vols[n] for k, n in m.external_volumes.items() if n in vols},
        )
        for g, m in models.items()
    }


def _object(key: str, fixed: dict[str, str], project: str, labels: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"labels": dict(labels)}
    if key in fixed:
        spec["name"] = session_name(project, key)
    return spec


def _long_port(spec: PortSpec, host_port: int) -> dict[str, Any]:
    """Long syntax: an IPv6 host IP in the short form (`::1:20001:80`) does not read back."""
    entry: dict[str, Any] = {"target": spec.target, "published": str(host_port), "protocol": spec.protocol}
    if spec.host_ip:
        entry["host_ip"] = spec.host_ip
    for key in ("mode", "name", "app_protocol"):
        if getattr(spec, key):
            entry[key] = getattr(spec, key)
    return entry
