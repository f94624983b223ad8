#!/usr/bin/env python3
"""bench/data.py on copy-on-write storage: a second Docker engine whose data root is a
loop-mounted XFS made with reflink, in a network namespace of its own (its networks never meet
the main engine's). There `cp -a --reflink=auto` shares blocks instead of copying them.

    .venv/bin/python bench/data_xfs.py                      # ~1 GB, 3 rounds
    .venv/bin/python bench/data_xfs.py --rows 400000 --rounds 1

Needs root, mkfs.xfs (xfsprogs; MKFS_XFS names another binary), ip, nsenter, mount, dockerd,
and devup-local/postgres:15 on the main engine (loaded into the second one). Arguments after
the options are passed to bench/data.py (which runs with --copy-only: the seed-hook comparison
needs the database on this machine's loopback). Removes the engine, the mount, the namespace
and the image file at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POSTGRES = os.environ.get("DEVUP_BENCH_POSTGRES", "devup-local/postgres:15")


def sh(*args: str, **kw: object) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise SystemExit(f"bench: `{' '.join(args)}` exited {done.returncode}: {done.stderr[-1500:]}")
    return str(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gb", type=int, default=12, help="size of the XFS image file (sparse)")
    args, rest = parser.parse_known_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: needs root (a loop mount, a network namespace, a second dockerd)")
    mkfs = os.environ.get("MKFS_XFS") or shutil.which("mkfs.xfs")
    if not mkfs:
        raise SystemExit("bench: mkfs.xfs not found (install xfsprogs, or set MKFS_XFS)")
    root = Path(tempfile.mkdtemp(prefix="dvx-", dir="/tmp"))  # short: unix socket paths < 108
    mnt, netns = root / "mnt", f"devup-x{secrets.token_hex(3)}"
    sock = f"unix://{root / 'docker.sock'}"
    dockerd: subprocess.Popen[bytes] | None = None
    mounted = made_ns = False
    try:
        image = root / "xfs.img"
        with open(image, "wb") as f:
            f.truncate(args.size_gb * 2**30)
        sh(mkfs, "-q", "-m", "reflink=1", str(image))
        mnt.mkdir()
        sh("mount", "-o", "loop", str(image), str(mnt))
        mounted = True
        sh("ip", "netns", "add", netns)
        made_ns = True
        inside = ("nsenter", f"--net=/var/run/netns/{netns}")
        sh(*inside, "ip", "link", "set", "lo", "up")
        log = open(root / "dockerd.log", "wb")  # noqa: SIM115 (open for dockerd's lifetime)
        dockerd = subprocess.Popen(
            [
                *inside,
                "dockerd",
                f"--data-root={mnt / 'docker'}",
                f"--exec-root={root / 'exec'}",
                f"--pidfile={root / 'dockerd.pid'}",
                f"--host={sock}",
                "--bip=10.241.0.1/24",
                "--default-address-pool=base=10.242.0.0/16,size=24",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while subprocess.run(["docker", "-H", sock, "version"], capture_output=True).returncode != 0:
            if dockerd.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    "bench: the XFS engine did not start:\n" + (root / "dockerd.log").read_text()[-2000:]
                )
            time.sleep(0.3)
        info = sh("docker", "-H", sock, "info", "--format", "{{.DockerRootDir}} {{.Driver}}").strip()
        print(f"bench: second engine on XFS (reflink=1): {info}", file=sys.stderr)
        save = subprocess.Popen(["docker", "save", POSTGRES], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "-H", sock, "load", "-q"], stdin=save.stdout, check=True, capture_output=True
        )
        save.wait()
        bench = Path(__file__).resolve().parent / "data.py"
        env = {**os.environ, "DOCKER_HOST": sock}
        env.pop("DOCKER_CONTEXT", None)
        return subprocess.run([sys.executable, str(bench), "--copy-only", *rest], env=env).returncode
    finally:
        if dockerd is not None and dockerd.poll() is None:
            dockerd.send_signal(signal.SIGTERM)
            try:
                dockerd.wait(timeout=60)
            except subprocess.TimeoutExpired:
                dockerd.kill()
                dockerd.wait(timeout=10)
        if mounted:
            subprocess.run(["umount", str(mnt)], capture_output=True)
        if made_ns:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
