"""A second Docker engine in a network namespace this process creates: a "remote" machine.

The namespace is joined to this machine by a veth pair with addresses in 198.18.0.0/15 (the
benchmarking range: nothing else on the machine uses it), so every byte stays on this machine
and goes only to that namespace. The engine has its own data root, exec root, pid file and
bridge, listens on TCP at the namespace's address, and gets the busybox image loaded from the
local engine. A docker context `remote` in a DOCKER_CONFIG folder of its own points at it.

dockerd is started with `nsenter --net=...`, not `ip netns exec`: the latter also remounts /sys,
and dockerd then fails with "Devices cgroup isn't mounted".

Used by tests/test_remote.py (a session fixture) and bench/remote.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CONTEXT = "remote"


class Unavailable(Exception):
    """Network namespaces (or a second dockerd) cannot be made here: the reason says why."""


@dataclass(frozen=True)
class RemoteEngine:
    netns: str
    address: str  # the namespace's end of the veth pair
    host: str  # tcp://address:2375
    config_dir: Path  # DOCKER_CONFIG with the `remote` context
    root: Path

    def docker(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["docker", "-H", self.host, *args], capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker -H {self.host} {' '.join(args)}: {result.stderr}")
        return result.stdout

    def labelled(self, kind: str, *, repo_id: str, session: str | None = None) -> list[str]:
        filters = ["--filter", f"label=dev.devup.repo={repo_id}"]
        if session:
            filters += ["--filter", f"label=dev.devup.session={session}"]
        cmd = {"container": ["ps", "-a"], "network": ["network", "ls"], "volume": ["volume", "ls"]}[kind]
        fmt = "{{.Names}}" if kind == "container" else "{{.Name}}"
        return sorted(filter(None, self.docker(*cmd, *filters, "--format", fmt).splitlines()))

    def running(self, *, repo_id: str, session: str) -> list[str]:
        out = self.docker(
            "ps",
            "--filter",
            f"label=dev.devup.repo={repo_id}",
            "--filter",
            f"label=dev.devup.session={session}",
            "--format",
            "{{.Names}}",
        )
        return sorted(filter(None, out.splitlines()))

    def in_namespace(self, *args: str) -> subprocess.Popen[bytes]:
        """A process started inside the namespace (a listener the engine knows nothing of)."""
        return subprocess.Popen(
            ["nsenter", f"--net=/var/run/netns/{self.netns}", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise Unavailable(f"`{' '.join(args)}` failed: {result.stderr.strip() or result.returncode}")
    return result


def _answers(host: str) -> bool:
    result = subprocess.run(
        ["docker", "-H", host, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.returncode == 0


@contextlib.contextmanager
def remote_engine(image: str) -> Iterator[RemoteEngine]:
    """Start the namespace and its engine; tear everything down afterwards, even on failure."""
    if os.geteuid() != 0:
        raise Unavailable("not root: creating a network namespace and a second dockerd needs root")
    for tool in ("ip", "nsenter", "dockerd", "docker"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} not found")
    tag = secrets.token_hex(3)
    netns, here, there = f"devup-t{tag}", f"dvt{tag}a", f"dvt{tag}b"
    # A /30 of its own in 198.18.0.0/15, so two runs at once do not meet.
    block = random.randrange(0, 2**15 // 4) * 4
    base = (198 << 24) | (18 << 16) | block
    local_ip = ".".join(str((base + 1) >> s & 255) for s in (24, 16, 8, 0))
    ns_ip = ".".join(str((base + 2) >> s & 255) for s in (24, 16, 8, 0))
    root = Path(tempfile.mkdtemp(prefix="dvr-", dir="/tmp"))  # short: unix socket paths < 108
    dockerd: subprocess.Popen[bytes] | None = None
    try:
        _sh("ip", "netns", "add", netns)
        _sh("ip", "link", "add", here, "type", "veth", "peer", "name", there)
        _sh("ip", "link", "set", there, "netns", netns)
        _sh("ip", "addr", "add", f"{local_ip}/30", "dev", here)
        _sh("ip", "link", "set", here, "up")
        inside = ("nsenter", f"--net=/var/run/netns/{netns}")
        _sh(*inside, "ip", "addr", "add", f"{ns_ip}/30", "dev", there)
        _sh(*inside, "ip", "link", "set", there, "up")
        _sh(*inside, "ip", "link", "set", "lo", "up")
        host = f"tcp://{ns_ip}:2375"
        log = open(root / "dockerd.log", "wb")  # noqa: SIM115 (kept open for dockerd's lifetime)
        dockerd = subprocess.Popen(
            [
                *inside,
                "dockerd",
                f"--data-root={root / 'data'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'dockerd.pid'}",
                f"--host={host}",
                f"--host=unix://{root / 'docker.sock'}",
                "--tls=false",  # the namespace is reachable from this machine only
                "--bip=10.231.0.1/24",  # its own bridge network, inside its own namespace
                "--default-address-pool=base=10.232.0.0/16,size=24",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while not _answers(host):
            if dockerd.poll() is not None or time.monotonic() > deadline:
                tail = (root / "dockerd.log").read_text(errors="replace")[-2000:]
                raise Unavailable(f"the second dockerd did not come up:\n{tail}")
            time.sleep(0.2)
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        loaded = subprocess.run(
            ["docker", "-H", host, "load"], stdin=save.stdout, capture_output=True, text=True, timeout=120
        )
        save.wait(timeout=60)
        if loaded.returncode != 0 or save.returncode != 0:
            raise Unavailable(f"cannot load {image} into the second engine: {loaded.stderr}")
        config_dir = root / "docker-config"
        config_dir.mkdir()
        config: dict[str, object] = {}
        real_plugins = Path.home() / ".docker" / "cli-plugins"
        if real_plugins.is_dir():
            config["cliPluginsExtraDirs"] = [str(real_plugins)]
        (config_dir / "config.json").write_text(json.dumps(config))
        subprocess.run(
            ["docker", "context", "create", CONTEXT, "--docker", f"host={host}"],
            env={**os.environ, "DOCKER_CONFIG": str(config_dir)},
            check=True,
            capture_output=True,
        )
        yield RemoteEngine(netns=netns, address=ns_ip, host=host, config_dir=config_dir, root=root)
    finally:
        _teardown(netns=netns, here=here, root=root, dockerd=dockerd)


def _teardown(*, netns: str, here: str, root: Path, dockerd: subprocess.Popen[bytes] | None) -> None:
    if dockerd is not None and dockerd.poll() is None:
        dockerd.send_signal(signal.SIGTERM)  # it stops its containers and its containerd
        try:
            dockerd.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dockerd.kill()
            dockerd.wait(timeout=10)
    # Whatever still runs in the namespace (a shim, a test's listener) goes with it.
    pids = _sh("ip", "netns", "pids", netns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(str(root))]
    for mount in sorted(mounts, key=len, reverse=True):
        _sh("umount", "-l", mount, check=False)
    _sh("ip", "netns", "del", netns, check=False)
    _sh("ip", "link", "del", here, check=False)  # usually gone with the namespace already
    shutil.rmtree(root, ignore_errors=True)


SSH_CONTEXT = "remote-ssh"
SSH_ALIAS = "remote-box"  # a Host alias only the ssh config knows


@dataclass(frozen=True)
class SshEndpoint:
    host: str  # ssh://root@remote-box
    bin_dir: Path  # put first on PATH: an `ssh` that reads the harness's ssh config


@contextlib.contextmanager
def ssh_endpoint(engine: RemoteEngine) -> Iterator[SshEndpoint]:
    """sshd in the engine's namespace (Debian's openssh-server), a key for root, and a docker
    context `remote-ssh` = ssh://root@remote-box, where `remote-box` is an alias of the harness's
    own ssh config for the namespace's address. Sessions run `docker system dial-stdio` there,
    pointed at the second engine's socket."""
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    if sshd is None:
        raise Unavailable("sshd not found (Debian: apt-get install openssh-server)")
    folder = engine.root / "ssh"
    folder.mkdir()
    for key in ("host_key", "id"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)],
            check=True,
            capture_output=True,
        )
    (folder / "authorized_keys").write_text((folder / "id.pub").read_text())
    remote_config = engine.root / "remote-docker-config"
    remote_config.mkdir()
    (folder / "sshd_config").write_text(
        "\n".join(
            [
                f"ListenAddress {engine.address}:22",
                f"HostKey {folder / 'host_key'}",
                f"PidFile {folder / 'sshd.pid'}",
                f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                f"SetEnv DOCKER_HOST=unix://{engine.root / 'docker.sock'} DOCKER_CONFIG={remote_config}",
                "",
            ]
        )
    )
    (folder / "client_config").write_text(
        "\n".join(
            [
                f"Host {SSH_ALIAS}",
                f"  HostName {engine.address}",
                "  User root",
                f"  IdentityFile {folder / 'id'}",
                "  IdentitiesOnly yes",
                "  StrictHostKeyChecking no",
                "  UserKnownHostsFile /dev/null",
                "  BatchMode yes",
                "  LogLevel ERROR",
                "",
            ]
        )
    )
    bin_dir = engine.root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ssh"
    wrapper.write_text(
        f'#!/bin/sh\nexec {shutil.which("ssh") or "/usr/bin/ssh"} -F {folder / "client_config"} "$@"\n'
    )
    wrapper.chmod(0o755)
    made_privsep = not Path("/run/sshd").exists()
    if made_privsep:
        Path("/run/sshd").mkdir(mode=0o755)  # sshd insists on its privilege-separation folder
    proc = subprocess.Popen(
        [
            "nsenter",
            f"--net=/var/run/netns/{engine.netns}",
            sshd,
            "-D",
            "-e",
            "-f",
            str(folder / "sshd_config"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "sshd.log", "wb"),  # noqa: SIM115
        start_new_session=True,
    )
    try:
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "DOCKER_CONFIG": str(engine.config_dir),
        }
        host = f"ssh://root@{SSH_ALIAS}"
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(
                ["ssh", SSH_ALIAS, "true"], env=env, capture_output=True, text=True, timeout=30
            )
            if probe.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise Unavailable(
                    f"sshd in the namespace does not answer: {probe.stderr.strip()} "
                    f"{(folder / 'sshd.log').read_text(errors='replace')[-500:]}"
                )
            time.sleep(0.2)
        subprocess.run(
            ["docker", "context", "create", SSH_CONTEXT, "--docker", f"host={host}"],
            env=env,
            check=True,
            capture_output=True,
        )
        yield SshEndpoint(host=host, bin_dir=bin_dir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if made_privsep:
            with contextlib.suppress(OSError):
                Path("/run/sshd").rmdir()
