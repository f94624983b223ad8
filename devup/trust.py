"""`devup trust [--remove]`: the local authority's root, and the trust stores it goes in (SPEC §9).

The authority is caddy's own (`tls internal`), made once per machine in devup's state folder
(router.py; its key 0600, never in a worktree). This machine's stores: the system's
(update-ca-certificates, as root) and the NSS databases Chromium and Firefox read (certutil).
Each is said done, or why not.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devup import router, runner
from devup.errors import DevupError, RouterError

SYSTEM_DIR = Path("/usr/local/share/ca-certificates")
_SYSTEM_PREFIX = "devup-local-authority"


@dataclass(frozen=True)
class Trust:
    root: Path
    pem: str
    done: list[str]  # one line per trust store: what was done there, or why nothing

    def to_json(self) -> dict[str, Any]:
        return {"root": str(self.root), "pem": self.pem, "stores": self.done}


def run(*, remove: bool, ports: tuple[int, int]) -> Trust:
    """Install (or, with `remove`, take out) the authority's root in every store devup can."""
    root = router.ca_root()
    if not root.exists():
        if remove:
            return Trust(root, "", ["no local authority was made on this machine: nothing to remove"])
        router.ensure(ports=ports)  # caddy makes its authority when it starts
        if not root.exists():
            raise RouterError(f"the router started but made no local authority at {root}")
    pem = root.read_text(encoding="ascii")
    fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()[:12]
    done = [_system(root, fingerprint, remove=remove)]
    done += _nss(root, f"devup local authority {fingerprint}", remove=remove)
    return Trust(root, pem, done)


def _system(root: Path, fingerprint: str, *, remove: bool) -> str:
    tool = shutil.which("update-ca-certificates")
    if tool is None or not SYSTEM_DIR.is_dir():
        return f"system store: skipped (no update-ca-certificates and {SYSTEM_DIR}: not Debian-like)"
    if os.geteuid() != 0:
        return f"system store: skipped (needs root: `sudo cp {root} {SYSTEM_DIR}/ && sudo update-ca-certificates`)"
    target = SYSTEM_DIR / f"{_SYSTEM_PREFIX}-{fingerprint}.crt"
    if remove:
        ours = sorted(SYSTEM_DIR.glob(f"{_SYSTEM_PREFIX}-*.crt"))
        if not ours:
            return "system store: not installed there: nothing to remove"
        for path in ours:
            path.unlink()
        runner.run([tool], check=True, what="update-ca-certificates")
        return f"system store: removed {', '.join(str(p) for p in ours)} (update-ca-certificates)"
    if target.exists() and target.read_bytes() == root.read_bytes():
        return f"system store: already installed ({target})"
    shutil.copyfile(root, target)
    os.chmod(target, 0o644)  # a certificate, public: every program of the machine reads it
    runner.run([tool], check=True, what="update-ca-certificates")
    return f"system store: installed as {target} (update-ca-certificates)"


def _nss_dbs() -> list[Path]:
    """The NSS databases of Chromium (~/.pki/nssdb) and of each Firefox profile; Chromium's
    is made when a Chromium is installed and has none yet."""
    home = Path.home()
    found = [
        p
        for p in (home / ".pki/nssdb", home / "snap/chromium/current/.pki/nssdb")
        if (p / "cert9.db").exists()
    ]
    for base in (home / ".mozilla/firefox", home / "snap/firefox/common/.mozilla/firefox"):
        found += sorted(p for p in base.glob("*") if (p / "cert9.db").exists()) if base.is_dir() else []
    return found


def _nss(root: Path, nick: str, *, remove: bool) -> list[str]:
    certutil = shutil.which("certutil")
    dbs = _nss_dbs()
    chromium = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    chromium_db = Path.home() / ".pki/nssdb"
    if certutil is None:
        if dbs or chromium:
            return [
                "NSS databases (Chromium, Firefox): skipped, certutil is not installed (Debian: libnss3-tools)"
            ]
        return ["NSS databases (Chromium, Firefox): none found"]
    if not remove and chromium and chromium_db not in dbs:
        chromium_db.mkdir(parents=True, exist_ok=True)
        runner.run(
            [certutil, "-d", f"sql:{chromium_db}", "-N", "--empty-password"], check=True, what="certutil"
        )
        dbs.insert(0, chromium_db)
    if not dbs:
        return ["NSS databases (Chromium, Firefox): none found"]
    lines = []
    for db in dbs:
        present = runner.run([certutil, "-d", f"sql:{db}", "-L", "-n", nick]).ok
        if remove:
            if present:
                runner.run([certutil, "-d", f"sql:{db}", "-D", "-n", nick], check=True, what="certutil")
            lines.append(f"NSS database {db}: {'removed' if present else 'not installed there'}")
        elif present:
            lines.append(f"NSS database {db}: already installed")
        else:
            args = [certutil, "-d", f"sql:{db}", "-A", "-t", "C,,", "-n", nick, "-i", str(root)]
            try:
                runner.run(args, check=True, what="certutil")
            except DevupError as exc:
                lines.append(f"NSS database {db}: failed: {exc.message.splitlines()[0]}")
                continue
            lines.append(f"NSS database {db}: installed")
    return lines
